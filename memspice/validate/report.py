"""Validation artifacts: per-sample table, neuron errors, summary JSON, Markdown report, plots.

Every file is written atomically. matplotlib is imported only here, with the Agg backend, and
only when plots are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from memspice.io import write_atomic, write_text_atomic
from memspice.validate.compare import sample_table
from memspice.safe_io import dumps_strict

if TYPE_CHECKING:
    from memspice.validate.api import ValidationReport


def _write_table(frame: pd.DataFrame, path_stem: Path) -> Path:
    """Parquet when pyarrow is installed, else CSV."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path = path_stem.with_suffix(".csv")
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    path = path_stem.with_suffix(".parquet")
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_outputs(report: ValidationReport, out_dir: Path) -> dict[str, Path]:
    """Write every artifact of ``report`` into ``out_dir``; return their paths by name."""
    out_dir = Path(out_dir)
    files: dict[str, Path] = {}
    comparison = report.comparison
    if comparison is not None:
        extra: dict[str, np.ndarray] = {"static_power_w": report.power_w}
        if report.input_power_w.size:
            extra["input_drive_power_w"] = report.input_power_w
        if report.transient:
            where = {s: i for i, s in enumerate(report.sample_index)}
            rows = [(k, where[int(s)]) for k, s in enumerate(report.transient["sample"]) if int(s) in where]
            for name in ("delay_s", "energy_j", "energy_to_settle_j", "input_energy_j", "input_energy_to_settle_j"):
                if name not in report.transient:
                    continue
                column = np.full(len(report.sample_index), np.nan)
                for k, i in rows:
                    column[i] = report.transient[name][k]
                extra[name] = column
        table = sample_table(report.spice, report.model, report.labels, report.sample_index, extra)
        files["samples"] = _write_table(table, out_dir / "samples")
        files["neuron_errors"] = write_atomic(out_dir / "neuron_errors.csv",
                                              lambda tmp: comparison.neuron_errors.to_csv(tmp, index=False))
        files["disagreements"] = write_atomic(out_dir / "disagreements.csv",
                                              lambda tmp: comparison.disagreements.to_csv(tmp, index=False))
        files.update(write_plots(report, out_dir))
    files["summary"] = write_text_atomic(out_dir / "summary.json",
                                         dumps_strict(report.summary, indent=2, sort_keys=True, default=_json_default) + "\n")
    files["report"] = write_text_atomic(out_dir / "report.md", markdown(report, files))
    return files


def write_plots(report: ValidationReport, out_dir: Path) -> dict[str, Path]:
    """SPICE-vs-model scatter per layer, error histograms and the confusion matrix (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, Path] = {}
    n_layers = len(report.spice)
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 4), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        for pol, color in (("n", "tab:blue"), ("p", "tab:orange")):
            s = getattr(report.spice[layer], f"out{pol}").ravel()
            m = getattr(report.model[layer], f"out{pol}").ravel()
            ax.scatter(m, s, s=3, alpha=0.4, color=color, label=f"out{pol}")
        lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(title=f"layer {layer}", xlabel="model output (V)", ylabel="SPICE output (V)")
        ax.legend(loc="upper left", fontsize=8)
    files["scatter_png"] = save_figure(fig, out_dir / "scatter.png", plt)

    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3.5), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        err = np.concatenate([(report.spice[layer].outn - report.model[layer].outn).ravel(),
                              (report.spice[layer].outp - report.model[layer].outp).ravel()])
        ax.hist(err * 1e3, bins=60, color="tab:gray")
        ax.set(title=f"layer {layer}", xlabel="SPICE − model (mV)", ylabel="count")
    files["errors_png"] = save_figure(fig, out_dir / "error_histograms.png", plt)

    assert report.comparison is not None
    matrix = report.comparison.confusion_spice
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax.set(title="confusion (SPICE)", xlabel="predicted class", ylabel="true class")
    files["confusion_png"] = save_figure(fig, out_dir / "confusion.png", plt)
    if report.transient_waves:
        files["transient_png"] = save_figure(transient_figure(report.transient_waves, plt), out_dir / "transient.png", plt)
    if report.feature_maps:
        fig = feature_map_figure(report.feature_maps, plt)
        files["feature_maps_png"] = write_atomic(out_dir / "feature_maps.png",
                                                 lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
        plt.close(fig)
    return files


def feature_map_figure(maps: dict[str, Any], plt: Any) -> Any:
    """One image and the ``outp`` maps of every conv layer: per layer a row of SPICE maps, a row
    of the model's (one colour scale in V for both) and a row of SPICE − model (mV, or µV when
    below 0.1 mV), one column
    per channel (see :func:`memspice.validate.layered.feature_maps`)."""
    layers = maps["layers"]
    columns = max(2, max(m["spice"].shape[0] for m in layers))
    fig, axes = plt.subplots(1 + 3 * len(layers), columns, figsize=(1.7 * columns + 1.2, 1.6 * (1 + 3 * len(layers))),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_axis_off()
    image = np.asarray(maps["input"])
    for c in range(min(image.shape[0], columns)):
        shown = axes[0, c].imshow(image[c], cmap="gray")
        axes[0, c].set_title(f"input ch {c}", fontsize=7)
    fig.colorbar(shown, ax=list(axes[0]), label="V", shrink=0.8)
    for k, layer in enumerate(layers):
        spice, model = np.asarray(layer["spice"]), np.asarray(layer["model"])
        diff_v = spice - model
        small = float(np.abs(diff_v).max()) < 1e-4  # below 0.1 mV: µV reads better
        unit, diff = ("µV", 1e6 * diff_v) if small else ("mV", 1e3 * diff_v)
        lo, hi = float(min(spice.min(), model.min())), float(max(spice.max(), model.max()))
        span = float(np.abs(diff).max()) or 1e-3
        for r, (name, values, cmap, limits) in enumerate((("SPICE", spice, "viridis", (lo, hi)),
                                                          ("model", model, "viridis", (lo, hi)),
                                                          ("SPICE − model", diff, "coolwarm", (-span, span)))):
            row = axes[1 + 3 * k + r]
            for c in range(values.shape[0]):
                shown = row[c].imshow(values[c], cmap=cmap, vmin=limits[0], vmax=limits[1])
                row[c].set_title(f"L{layer['layer']} {name} ch {c}", fontsize=7)
            fig.colorbar(shown, ax=list(row), label=unit if r == 2 else "V", shrink=0.8)
    fig.suptitle(f"feature maps (outp) of sample {maps['sample']} (label {maps['label']})", fontsize=9)
    return fig


def transient_figure(waves: dict[str, np.ndarray], plt: Any) -> Any:
    """Last-layer outputs and the power of the rails and of the input drivers against time for the
    first transient deck.

    Dashed lines mark where each sample's inputs change, dotted lines where its outputs settled.
    """
    t_us = 1e6 * np.asarray(waves["time_s"])
    period_us = 1e6 * float(waves["period_s"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(2, 1))
    outp = np.asarray(waves["outp"])
    for j in range(outp.shape[1]):
        top.plot(t_us, outp[:, j], lw=0.9, label=f"class {j}")
    rails = 1e6 * np.asarray(waves["power_w"])
    bottom.plot(t_us, rails, color="tab:red", lw=0.9, label="rails (inverters)")
    if "input_power_w" in waves:
        drivers = 1e6 * np.asarray(waves["input_power_w"])
        bottom.plot(t_us, drivers, color="tab:blue", lw=0.9, label="input drivers (first crossbar)")
        bottom.plot(t_us, rails + drivers, color="k", lw=0.7, alpha=0.6, label="total")
        bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for k, (sample, delay) in enumerate(zip(waves["sample"], waves["delay_s"])):
        start = (k + 1) * period_us
        for ax in (top, bottom):
            ax.axvline(start, color="k", ls="--", lw=0.6)
            if np.isfinite(delay) and delay > 0:
                ax.axvline(start + 1e6 * float(delay), color="k", ls=":", lw=0.8)
        top.annotate(f"sample {int(sample)}", (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                     xytext=(2, -10), textcoords="offset points")
    lo, hi = float(np.min(outp)), float(np.max(outp))
    if hi - lo < 0.05:  # nearly flat outputs: a 50 mV window, not an offset axis in 10 µV steps
        top.set_ylim((lo + hi) / 2 - 0.025, (lo + hi) / 2 + 0.025)
    top.ticklabel_format(axis="y", useOffset=False)
    top.set(ylabel="last-layer outp (V)", title="transient: inputs change at dashed lines, outputs settled at dotted")
    top.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom.set(xlabel="time (µs)", ylabel="static power (µW)")
    return fig


def save_figure(fig: Any, path: Path, plt: Any) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG (atomically) and close it."""
    fig.tight_layout()
    written = write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return written


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def markdown(report: ValidationReport, files: dict[str, Path]) -> str:
    """The human-readable report."""
    s = report.summary
    shape = (f"topology {s.get('topology')}" if s.get("network") is None else
             f"network {s.get('network')} ({s.get('neurons')} neurons, {s.get('devices')} devices; model: "
             f"{s.get('model_evaluator')} evaluator)")
    lines = ["# memspice validation", "",
             f"Status: **{s.get('status')}** — {shape}, technology "
             f"{s.get('technology', {}).get('technology')} ({s.get('technology', {}).get('corner')}), "
             f"non-idealities {s.get('nonideal')}.", ""]
    for failure in s.get("failed_batches", []):
        lines.append(f"- **failed batch {failure['batch']}**: {failure['error']}")
    if report.comparison is not None:
        c = report.comparison
        lines += ["", "## Classification", "",
                  "| samples | SPICE accuracy | model accuracy | agreement | disagreements |", "|---|---|---|---|---|",
                  f"| {c.n_samples} | {_fmt_pct(c.spice_accuracy)} | {_fmt_pct(c.model_accuracy)} | "
                  f"{_fmt_pct(c.agreement)} | {len(c.disagreements)} |", "",
                  "## Output-voltage error (SPICE − model)", ""]
        kinds = s.get("layer_kinds")
        if kinds:
            lines += ["| layer | kind, output shape | output | RMS (mV) | max (mV) | mean (mV) |", "|---|---|---|---|---|---|"]
        else:
            lines += ["| layer | output | RMS (mV) | max (mV) | mean (mV) |", "|---|---|---|---|---|"]
        for row in c.layer_errors.itertuples():
            kind = f" {kinds[row.layer]} |" if kinds else ""
            lines.append(f"| {row.layer} |{kind} {row.output} | {1e3 * row.rms_v:.3f} | {1e3 * row.max_v:.3f} | "
                         f"{1e3 * row.mean_v:.3f} |")
        drawn = s.get("drawn_devices_model")
        if drawn:
            lines += nonideal_lines(s, c, drawn)
        worst = c.neuron_errors.sort_values("rms_v", ascending=False).head(5)
        lines += ["", "Worst neurons by RMS error: " + ", ".join(
            f"L{r.layer} #{r.neuron} {r.output} {1e3 * r.rms_v:.2f} mV" for r in worst.itertuples()), ""]
        lines += ["## Power and delay", "", *power_lines(s)]
        tran = s.get("transient")
        if tran:
            lines.append(transient_sentence(tran))
        if len(c.disagreements):
            lines += ["", "## Samples where SPICE and the model disagree", "",
                      "| sample | label | SPICE | model | SPICE margin (mV) |", "|---|---|---|---|---|"]
            for r in c.disagreements.head(50).itertuples():
                lines.append(f"| {r.sample} | {r.label} | {r.spice_class} | {r.model_class} | {1e3 * r.spice_margin_v:.2f} |")
        if report.feature_maps:
            lines += feature_map_lines(report.feature_maps)
        lines += ["", "## Plots", ""]
        for key in ("feature_maps_png", "scatter_png", "errors_png", "confusion_png", "transient_png"):
            if key in files:
                lines.append(f"![{key}]({files[key].name})")
    speed = s.get("samples_per_s")
    lines += ["", f"Batches: {s.get('batches_simulated')} simulated, {s.get('batches_reused')} reused; "
              + (f"{speed:.0f} samples/s." if speed else "no new samples simulated."), ""]
    return "\n".join(lines)


def feature_map_lines(maps: dict[str, Any]) -> list[str]:
    """The report's section on one image's conv feature maps: per layer, SPICE − model on it."""
    lines = ["", f"## Feature maps of sample {maps['sample']} (label {maps['label']})", "",
             "Every conv layer's `outp` for this image, SPICE beside the model (feature_maps.png):", "",
             "| layer | kind, output shape | SPICE range (V) | RMS SPICE − model (mV) | max (mV) |", "|---|---|---|---|---|"]
    for layer in maps["layers"]:
        spice, diff = np.asarray(layer["spice"]), np.asarray(layer["spice"]) - np.asarray(layer["model"])
        lines.append(f"| {layer['layer']} | {layer['kind']} | {spice.min():.3f} … {spice.max():.3f} | "
                     f"{1e3 * float(np.sqrt(np.mean(diff ** 2))):.3f} | {1e3 * float(np.abs(diff).max()):.3f} |")
    return lines


def transient_sentence(tran: dict[str, Any]) -> str:
    """The report's line on the transient samples (``summary["transient"]``)."""
    how = f"{tran['samples']} samples, {1e9 * tran['period_s']:.0f} ns each"
    if tran.get("points_per_period"):
        how += f", time step ≤ period/{tran['points_per_period']}"
    if tran.get("elapsed_s") is not None:
        how += f", simulated in {tran['elapsed_s']:.1f} s"
    if tran["delay_s_mean"] is None:
        delay = "no sample settled within the period (try a longer --period)"
    else:
        delay = (f"settling delay (every last-layer output within 10 % of its step) mean "
                 f"{1e9 * tran['delay_s_mean']:.1f} ns, max {1e9 * tran['delay_s_max']:.1f} ns, "
                 f"{tran['settled']} of {tran['samples']} settled")
    return f"Transient ({how}): {delay}; {_energy_words(tran)}."


def _energy_words(tran: dict[str, Any]) -> str:
    """Energy per inference and per period: rails, and with the input drivers when known."""
    def pj(value: float) -> str:
        return f"{1e12 * value:.3f} pJ"

    drivers = tran.get("input_energy_j_mean") is not None
    rails = "from the rails " if drivers else ""
    period = f"energy per period {rails}{pj(tran['energy_j_mean'])}"
    if drivers:
        period += f" + input drivers {pj(tran['input_energy_j_mean'])} = {pj(tran['total_energy_j_mean'])}"
    settle = tran.get("energy_to_settle_j_mean")
    if settle is None:
        return period
    inference = f"energy per inference (until settled) {rails}{pj(settle)}"
    if drivers and tran.get("total_energy_to_settle_j_mean") is not None:
        inference += (f" + input drivers {pj(tran['input_energy_to_settle_j_mean'])} = "
                      f"{pj(tran['total_energy_to_settle_j_mean'])}")
    return f"{inference}; {period}"


def _last_outp_rms(layer_errors: Any) -> float:
    rows = [r for r in layer_errors if r["output"] == "outp"]
    return float(rows[-1]["rms_v"])


def nonideal_lines(s: dict[str, Any], c: Any, drawn: dict[str, Any]) -> list[str]:
    """The report's table of the trained model, the model on the drawn devices, and SPICE."""
    return ["", "## Non-ideal devices", "",
            f"SPICE ran with the drawn devices ({s.get('nonideal')}; {s.get('stuck_devices', 0)} stuck). "
            "The trained model assumes ideal devices; the same model run on the drawn conductances "
            "separates what the devices cost from the model's own error (wire resistance is not in the model).", "",
            "| | accuracy | agreement with SPICE | last-layer outp RMS error vs SPICE (mV) |", "|---|---|---|---|",
            f"| trained model (ideal devices) | {_fmt_pct(c.model_accuracy)} | {_fmt_pct(c.agreement)} | "
            f"{1e3 * _last_outp_rms(c.layer_errors.to_dict(orient='records')):.3f} |",
            f"| model on the drawn devices | {_fmt_pct(drawn['model_accuracy'])} | {_fmt_pct(drawn['agreement'])} | "
            f"{1e3 * _last_outp_rms(drawn['layer_errors']):.3f} |",
            f"| SPICE | {_fmt_pct(c.spice_accuracy)} | | |", "", *fault_map_lines(s.get("fault_map"))]


def fault_map_lines(record: dict[str, Any] | None) -> list[str]:
    """The report's sentence on a known fault map: its rates, seed and stuck devices."""
    if not record:
        return []
    rates = [r for r in (record.get("rate_high"), record.get("rate_low")) if r is not None]
    rate = f"drawn at rate {sum(rates):g} ({record.get('rate_high'):g} at g_max, {record.get('rate_low'):g} at g_min)" \
        if len(rates) == 2 else "measured (no draw rate)"
    seed = "" if record.get("seed") is None else f" with seed {record['seed']}"
    return [f"Known fault map {rate}{seed}: {record.get('stuck_high', 0) + record.get('stuck_low', 0)} of "
            f"{record.get('devices')} devices stuck, built in SPICE and in the model on the drawn devices.", ""]


def power_lines(s: dict[str, Any]) -> list[str]:
    """The report's static power table: rails, input drivers, total (µW per inference)."""
    rows = [("both rails (inverters, and the crossbars they drive)", s.get("static_power_w")),
            ("input drivers (the first crossbar)", s.get("input_drive_power_w")),
            ("total", s.get("total_static_power_w"))]
    lines = ["Static power per inference, from the sources' currents at each operating point:", "",
             "| supplied by | mean (µW) | min (µW) | max (µW) |", "|---|---|---|---|"]
    for name, spread in rows:
        if spread:
            lines.append(f"| {name} | {1e6 * spread['mean']:.3f} | {1e6 * spread['min']:.3f} | {1e6 * spread['max']:.3f} |")
    return [*lines, ""]
