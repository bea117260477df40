"""The run report: Markdown and HTML with the plots that tell the story, plus summary.json."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from memspice.safe_io import dumps_strict, json_safe, write_text_atomic

#: Plots the report shows when their stage wrote them (relative to the run directory).
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("characterize", "characterize/loads_vtc.png", "VTC family of the inverter and the neuron under the load grid"),
    ("characterize", "characterize/loads_gain.png", "Gain under the load grid"),
    ("characterize", "characterize/loads_metrics.png", "Switching threshold, gain and noise margins vs load"),
    ("calibrate", "calibrate/activation_fit.png", "Static (PHAX) tanh fits and their residuals"),
    ("train", "train/constrained/history.png", "Training curves of the constrained network"),
    ("train", "train/kernels.png", "First conv layer: kernel conductances (positive and negative device, µS)"),
    ("validate", "validate/scatter.png", "SPICE vs model, every neuron output, per layer"),
    ("validate", "validate/error_histograms.png", "SPICE − model output-voltage error"),
    ("validate", "validate/confusion.png", "Confusion matrix of the SPICE circuit"),
    ("validate", "validate/transient.png", "Transient: last-layer outputs, rail and input-driver power as samples change"),
    ("loop", "loop/rounds/rounds.png", "Closed loop: model–SPICE error and agreement per round"),
)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def _num(value: Any, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value) * scale:.{digits}g}{unit}"


def headline(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The numbers a reader wants first, flat and JSON-safe."""
    cal = summaries.get("calibrate", {})
    tr = summaries.get("train", {})
    va = summaries.get("validate", {})
    loop = summaries.get("loop", {})
    layer_rms = {f"layer {e['layer']} {e.get('output', '')}": e.get("rms_v") for e in va.get("layer_errors", [])}
    power = va.get("static_power_w", {})
    transient = va.get("transient", {})
    return {
        "technology": va.get("technology", {}).get("technology"),
        "corner": va.get("technology", {}).get("corner"),
        "topology": tr.get("topology"),
        "neuron_gain": cal.get("neuron_gain"),
        "neuron_fit_rms_v": cal.get("residuals_v", {}).get("noninverting_rms"),
        "float_baseline_test_accuracy": tr.get("float_baseline_test_accuracy"),
        "model_test_accuracy": tr.get("model_test_accuracy"),
        "spice_accuracy": va.get("spice_accuracy"),
        "model_accuracy_on_validated": va.get("model_accuracy"),
        "agreement": va.get("agreement"),
        "output_rms_error_v": layer_rms,
        "static_power_mean_w": power.get("mean"),
        "input_drive_power_mean_w": va.get("input_drive_power_w", {}).get("mean"),
        "energy_per_inference_j": transient.get("energy_to_settle_j_mean"),
        "energy_per_inference_total_j": transient.get("total_energy_to_settle_j_mean"),
        "energy_per_period_j": transient.get("energy_j_mean"),
        "transient_period_s": transient.get("period_s"),
        "transient_settled": f"{transient.get('settled')}/{transient.get('samples')}" if transient else None,
        "delay_mean_s": transient.get("delay_s_mean"),
        "validation_samples_per_s": va.get("samples_per_s"),
        "loop_final_rms_v": loop.get("final_rms_v"),
        "loop_final_agreement": loop.get("final_agreement"),
    }


def _network_lines(train: dict[str, Any]) -> list[str]:
    """For a ``[network]`` with conv or pooling layers: its size and training mode."""
    if "network" not in train:
        return []
    return [f"Layered network ({train.get('mode')} model): {train.get('devices', 0):,} devices in "
            f"{train.get('columns', 0):,} columns (every conv output position is a column with its own copy of "
            f"its kernel), {train.get('thetas', 0):,} trainable θ.", ""]


def markdown_report(run_dir: Path, summaries: dict[str, dict[str, Any]], config_toml: str) -> str:
    """The Markdown report text (image links relative to ``run_dir``)."""
    h = headline(summaries)
    lines = [
        "# memspice run report", "",
        f"Technology **{h['technology']}** ({h['corner']}), topology {h['topology']}.", "",
        *_network_lines(summaries.get("train", {})),
        "## Headline numbers", "",
        "| quantity | value |", "|---|---|",
        f"| neuron gain (two inverters, fitted) | {_num(h['neuron_gain'], ' V/V')} |",
        f"| neuron tanh-fit RMS residual | {_num(h['neuron_fit_rms_v'], ' mV', 1e3)} |",
        f"| float tanh-{'CNN' if 'network' in summaries.get('train', {}) else 'MLP'} baseline, test accuracy | "
        f"{_pct(h['float_baseline_test_accuracy'])} |",
        f"| constrained model, test accuracy | {_pct(h['model_test_accuracy'])} |",
        f"| SPICE circuit accuracy | {_pct(h['spice_accuracy'])} |",
        f"| model accuracy on the same samples | {_pct(h['model_accuracy_on_validated'])} |",
        f"| classification agreement model vs SPICE | {_pct(h['agreement'])} |",
        f"| static power per inference from the rails (mean) | {_num(h['static_power_mean_w'], ' µW', 1e6)} |",
        f"| static power per inference from the input drivers (mean) | "
        f"{_num(h['input_drive_power_mean_w'], ' µW', 1e6)} |",
        f"| energy per inference from the rails (until the outputs settle) | "
        f"{_num(h['energy_per_inference_j'], ' pJ', 1e12)} |",
        f"| energy per inference, rails and input drivers | {_num(h['energy_per_inference_total_j'], ' pJ', 1e12)} |",
        f"| settling delay to the DC point (mean, 10 % band) | {_num(h['delay_mean_s'], ' ns', 1e9)} "
        f"({h['transient_settled']} samples settled within {_num(h['transient_period_s'], ' ns', 1e9, 4)}) |",
        f"| SPICE validation throughput | {_num(h['validation_samples_per_s'], ' samples/s')} |",
    ]
    for name, rms in h["output_rms_error_v"].items():
        lines.append(f"| RMS error model vs SPICE, {name} | {_num(rms, ' mV', 1e3)} |")
    if h["loop_final_rms_v"] is not None:
        lines.append(f"| closed loop: final output RMS error | {_num(h['loop_final_rms_v'], ' mV', 1e3)} |")
    loop = summaries.get("loop", {})
    if loop.get("enabled"):
        n_loop = next((r.get("n_samples") for r in loop.get("table", []) if r.get("n_samples")), None)
        lines += ["", f"## Closed loop ({loop['mode']} mode)", "",
                  f"{loop['rounds']} round(s), {'converged' if loop['converged'] else 'did not converge'} "
                  "(targets: worst-layer RMS and agreement, see the configuration). Each round simulates "
                  f"{'the first ' + str(n_loop) if n_loop else 'some'} *training* samples, so the accuracies in this "
                  "table are on training samples, not the test set (test accuracy: see above).", "",
                  "| round | action | SPICE acc. (train samples) | model acc. (train samples) | agreement | output RMS "
                  "| worst-layer RMS |",
                  "|---|---|---|---|---|---|---|"]
        for r in loop.get("table", []):
            lines.append(f"| {r.get('round')} | {r.get('action')} | {_pct(r.get('spice_accuracy'))} | "
                         f"{_pct(r.get('model_accuracy'))} | {_pct(r.get('agreement'))} | "
                         f"{_num(r.get('output_rms_v'), ' mV', 1e3)} | {_num(r.get('worst_rms_v'), ' mV', 1e3)} |")
    modes = summaries.get("validate", {}).get("modes", [])
    if modes:
        lines += ["", "## How well each calibration mode predicts the circuit", "",
                  "Same trained conductances, same SPICE run; only the model differs.", "",
                  "| mode | output RMS error | output max error | worst hidden-layer RMS | agreement with SPICE |",
                  "|---|---|---|---|---|"]
        for m in modes:
            if "error" in m:
                lines.append(f"| {m['mode']} | unavailable: {m['error']} | | | |")
                continue
            lines.append(f"| {m['mode']} | {_num(m['output_rms_v'], ' mV', 1e3)} | {_num(m['output_max_v'], ' mV', 1e3)} "
                         f"| {_num(m['hidden_rms_v'], ' mV', 1e3)} | {_pct(m['agreement'])} |")
    lines += ["", "## Stages", "", "| stage | time (s) |", "|---|---|"]
    for stage, summary in summaries.items():
        lines.append(f"| {stage} | {summary.get('elapsed_s', 'n/a')} |")
    for stage, rel, caption in FIGURES:
        if (run_dir / rel).is_file():
            lines += ["", f"### {caption}", "", f"![{caption}]({rel})"]
    lines += ["", "## Details", "", "Every stage's own summary (also in `summary.json`):", "", "```json",
              json.dumps(json_safe(summaries), indent=1, default=str)[:20000], "```", "",
              "## Configuration", "", "```toml", config_toml.rstrip(), "```", ""]
    return "\n".join(lines)


def html_body(text: str) -> str:
    """``text`` (Markdown) as HTML; without the optional Markdown package, the text as it is and
    a line saying how to get the formatted report."""
    try:
        import markdown
    except ImportError:
        return ("<p><em>This is the plain text of report.md. For a formatted report install the "
                "Markdown package (<code>pip install 'memspice[html]'</code>) and run "
                "<code>memspice run</code> again (finished stages are not repeated).</em></p>\n"
                "<pre>" + html.escape(text) + "</pre>")
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def write_report(run_dir: Path, summaries: dict[str, dict[str, Any]], config_toml: str) -> dict[str, Path]:
    """Write report.md, report.html and summary.json into ``run_dir`` (atomically)."""
    text = markdown_report(run_dir, summaries, config_toml)
    body = html_body(text)
    html = ("<!doctype html>\n<html><head><meta charset='utf-8'><title>memspice run report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.2em .6em}img{max-width:100%}pre{background:#f6f6f6;"
            "overflow:auto;max-height:30em}</style></head><body>\n" + body + "\n</body></html>\n")
    summary = {"headline": headline(summaries), "stages": summaries}
    return {
        "report_md": write_text_atomic(run_dir / "report.md", text),
        "report_html": write_text_atomic(run_dir / "report.html", html),
        "summary_json": write_text_atomic(run_dir / "summary.json", dumps_strict(summary, indent=2, default=str) + "\n"),
    }
