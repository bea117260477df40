"""PNG plots of characterization tables (matplotlib imported lazily, Agg backend).

Each function takes tables from :mod:`memspice.characterize.sweeps` and writes one PNG
atomically; nothing here simulates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.io import write_atomic


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
    return Path(path)


#: Swept quantities: axis label and the factor from the table's SI value to the label's unit.
AXES: dict[str, tuple[str, float]] = {
    "load_ohm": ("load resistance (MΩ)", 1e-6),
    "temperature_c": ("temperature (°C)", 1.0),
    "vdd": ("half-supply V_DD (V)", 1.0),
    "sample": ("Monte Carlo sample", 1.0),
    "corner": ("process corner", 1.0),
}

#: Metric columns: panel title, axis label and the factor from SI to the label's unit.
METRICS: dict[str, tuple[str, str, float]] = {
    "v_m": ("switching threshold V_M", "V_M (mV)", 1e3),
    "peak_gain": ("peak gain", "max |dV_out/dV_in| (V/V)", 1.0),
    "nm_l": ("low noise margin", "NM_L = V_IL − V_OL (mV)", 1e3),
    "nm_h": ("high noise margin", "NM_H = V_OH − V_IH (mV)", 1e3),
    "swing": ("output swing", "V_OH − V_OL (mV)", 1e3),
    "c4": ("tanh fit slope c4", "c4 (1/V)", 1.0),
    "rms_v": ("tanh fit RMS error", "RMS error (mV)", 1e3),
    "power_mean_w": ("mean static power", "power from V_DD (nW)", 1e9),
}


def _numeric_key(by: str, keys: list[Any]) -> bool:
    return by in AXES and by != "corner" and all(isinstance(k, (int, float, np.number)) for k in keys)


def vtc_family(curves: pd.DataFrame, by: str, path: Path, title: str, gain: bool = False) -> Path:
    """Output (or ``|dV_out/dV_in|`` with ``gain``) vs input, one line per value of ``by``,
    one panel per stage.

    A numeric ``by`` (load, temperature, supply, sample) is coloured on a scale with a colour bar
    in its unit (logarithmic for loads; an unloaded curve is drawn black and dashed); others get
    a legend.
    """
    plt = _pyplot()
    from matplotlib import colors as mcolors

    stages = list(dict.fromkeys(curves["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages) + 1.2, 4.2), squeeze=False,
                             layout="constrained")
    keys = list(dict.fromkeys(curves[by]))
    numeric = _numeric_key(by, keys)
    label, factor = AXES.get(by, (by, 1.0))
    finite = [float(k) * factor for k in keys if numeric and np.isfinite(k)]
    if numeric and finite:
        lo, hi = min(finite), max(finite)
        hi = hi if hi > lo else lo + 1.0
        norm = mcolors.LogNorm(lo, hi) if by == "load_ohm" and lo > 0 else mcolors.Normalize(lo, hi)
        cmap = plt.get_cmap("viridis")
        color_of = {k: (cmap(norm(float(k) * factor)) if np.isfinite(k) else "black") for k in keys}
    else:
        palette = plt.cm.viridis(np.linspace(0, 1, max(len(keys), 2)))
        color_of = dict(zip(keys, palette))
    for ax, stage in zip(axes[0], stages):
        part = curves[curves["stage"] == stage]
        for key in keys:
            one = part[part[by] == key]
            if one.empty:
                continue
            x, y = one["v_in"].to_numpy(), one["v_out"].to_numpy()
            unloaded = numeric and not np.isfinite(key)
            ax.plot(x, np.abs(np.gradient(y, x)) if gain else y, color=color_of[key], lw=1,
                    ls="--" if unloaded else "-",
                    label=_label(by, key) if unloaded or (not numeric and len(keys) <= 12) else None)
        ax.set_xlabel("input voltage V_in (V)")
        ax.set_ylabel("gain |dV_out/dV_in| (V/V)" if gain else "output voltage V_out (V)")
        ax.set_title(stage)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if numeric and finite:
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label=label, pad=0.02)
        _plain_numbers(bar.ax.yaxis)
    fig.suptitle(title + (f" ({len(keys)} curves)" if len(keys) > 12 else ""))
    return _save(fig, path)


def _plain_numbers(axis: Any) -> None:
    """Tick labels 0.1, 1, 2 instead of 10⁻¹, 10⁰ on a logarithmic axis."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _label(by: str, key: object) -> str:
    if by == "load_ohm" and isinstance(key, float):
        return "no load" if not np.isfinite(key) else f"{key / 1e6:.3g} MΩ"
    if by == "temperature_c":
        return f"{key:g} °C"
    if by == "vdd":
        return f"±{key:g} V"
    return f"{by}={key}"


def metrics_vs(metrics: pd.DataFrame, x: str, path: Path, title: str,
               columns: tuple[str, ...] = ("v_m", "peak_gain", "nm_l", "nm_h", "c4", "power_mean_w")) -> Path:
    """Metric columns vs ``x`` (one panel per metric, three to a row; one line per stage),
    each in its unit (:data:`METRICS`)."""
    plt = _pyplot()
    present = [c for c in columns if c in metrics.columns]
    n_cols = min(3, len(present))
    n_rows = -(-len(present) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.8 * n_cols, 3.0 * n_rows + 0.5), squeeze=False,
                             layout="constrained")
    numeric_x = pd.api.types.is_numeric_dtype(metrics[x])
    x_label, x_factor = AXES.get(x, (x, 1.0))
    for ax, column in zip(axes.ravel(), present):
        name, unit, factor = METRICS.get(column, (column, column, 1.0))
        for stage, part in metrics.groupby("stage", sort=False):
            part = part.sort_values(x) if numeric_x else part
            xs = part[x].to_numpy()
            ax.plot(xs * x_factor if numeric_x else np.arange(len(xs)), part[column].to_numpy() * factor,
                    "o-", ms=3, label=str(stage))
            if not numeric_x:
                ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
        if x == "load_ohm":
            ax.set_xscale("log")
            _plain_numbers(ax.xaxis)
        ax.set_xlabel(x_label)
        ax.set_ylabel(unit)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def histograms(metrics: pd.DataFrame, path: Path, title: str, columns: tuple[str, ...] = ("v_m", "peak_gain", "c4")) -> Path:
    """Monte Carlo histograms of metric columns, one colour per stage."""
    plt = _pyplot()
    present = [c for c in columns if c in metrics.columns]
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.4), squeeze=False)
    for ax, column in zip(axes[0], present):
        name, unit, factor = METRICS.get(column, (column, column, 1.0))
        for stage, part in metrics.groupby("stage", sort=False):
            ax.hist(part[column].dropna().to_numpy() * factor, bins=20, alpha=0.6, label=str(stage))
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(unit)
        ax.set_ylabel("samples")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def memristor_plots(hysteresis: pd.DataFrame, pulses: pd.DataFrame, path: Path) -> Path:
    """Pinched I–V loop and conductance vs pulse number."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(hysteresis["v"], hysteresis["i_a"] * 1e6, lw=1)
    a.set_xlabel("V (V)")
    a.set_ylabel("I (µA)")
    a.set_title("sinusoidal drive: pinched hysteresis")
    a.grid(alpha=0.3)
    n = np.arange(len(pulses))
    b.plot(n, pulses["g_siemens"] * 1e6, "o-", ms=2)
    b.set_xlabel("read index (set pulses, then reset pulses)")
    b.set_ylabel("G (µS)")
    b.set_title("conductance vs pulse number")
    b.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def size_load_maps(table: pd.DataFrame, column: str, path: Path, title: str, unit: str, *,
                   quantity: str | None = None, scale: float = 1.0, labels: dict[int, str] | None = None,
                   chosen: int | None = None, diverging: bool = False) -> Path:
    """Heat maps of ``<stage>_<column>`` over size (rows) × load (columns), one panel per stage,
    each with a colour bar in ``unit`` (values multiplied by ``scale``).

    Args:
        labels: tick label of each size index (thinned when there are many).
        quantity: colour-bar name of the quantity (default ``column``).
        chosen: size index to outline in red.
        diverging: centre a red-blue colour map on zero (for V_M).
    """
    plt = _pyplot()
    sizes = sorted(table["sizing"].unique())
    loads = np.sort(table["load_ohm"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(12, min(max(3.5, 0.22 * len(sizes) + 1.6), 9.0)), squeeze=False)
    if loads.size > 1:  # cell edges halfway (geometrically) between the loads
        mid = np.sqrt(loads[:-1] * loads[1:])
        edges = np.concatenate([[loads[0] ** 2 / mid[0]], mid, [loads[-1] ** 2 / mid[-1]]])
    else:
        edges = np.array([loads[0] / 1.2, loads[0] * 1.2])
    for ax, stage in zip(axes[0], ("inverter", "neuron")):
        grid = (table.pivot_table(index="sizing", columns="load_ohm", values=f"{stage}_{column}", aggfunc="first")
                .reindex(index=sizes, columns=loads).to_numpy(dtype=np.float64) * scale)
        if diverging:
            finite = np.abs(grid[np.isfinite(grid)])
            lim = float(finite.max()) if finite.size else 1.0
            mesh = ax.pcolormesh(edges / 1e6, np.arange(len(sizes) + 1) - 0.5, grid, cmap="RdBu_r",
                                 vmin=-lim, vmax=lim, shading="flat")
        else:
            mesh = ax.pcolormesh(edges / 1e6, np.arange(len(sizes) + 1) - 0.5, grid, cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label=f"{stage} {quantity or column} ({unit})")
        ax.set_xscale("log")
        ax.set_xlabel("load to mid-rail on each stage output (MΩ)")
        ax.set_ylabel("size: n, p W/L in µm (×m parallel)" if labels else "size index")
        step = max(1, len(sizes) // 30)
        ticks = sizes[::step]
        ax.set_yticks(range(0, len(sizes), step), [labels.get(k, str(k)) if labels else str(k) for k in ticks],
                      fontsize=6 if labels else 8)
        if chosen is not None and chosen in sizes:
            row = sizes.index(chosen)
            for y in (row - 0.5, row + 0.5):
                ax.axhline(y, color="red", lw=1.2)
            if row % step == 0:
                ax.get_yticklabels()[row // step].set_color("red")
        ax.set_title(stage)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
