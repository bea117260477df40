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


def vtc_family(curves: pd.DataFrame, by: str, path: Path, title: str, gain: bool = False) -> Path:
    """Output (or ``|dV_out/dV_in|`` with ``gain``) vs input, one line per value of ``by``,
    one panel per stage."""
    plt = _pyplot()
    stages = list(dict.fromkeys(curves["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    keys = list(dict.fromkeys(curves[by]))
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(keys), 2)))
    for ax, stage in zip(axes[0], stages):
        part = curves[curves["stage"] == stage]
        for color, key in zip(colors, keys):
            one = part[part[by] == key]
            if one.empty:
                continue
            x, y = one["v_in"].to_numpy(), one["v_out"].to_numpy()
            ax.plot(x, np.abs(np.gradient(y, x)) if gain else y, color=color, lw=1,
                    label=_label(by, key) if len(keys) <= 12 else None)
        ax.set_xlabel("V_in (V)")
        ax.set_ylabel("|dV_out/dV_in| (V/V)" if gain else "V_out (V)")
        ax.set_title(f"{stage}")
        ax.grid(alpha=0.3)
        if len(keys) <= 12:
            ax.legend(fontsize=7)
    fig.suptitle(title + (f" ({len(keys)} curves; colour = {by})" if len(keys) > 12 else ""))
    fig.tight_layout()
    return _save(fig, path)


def _label(by: str, key: object) -> str:
    if by == "load_ohm" and isinstance(key, float):
        return "no load" if not np.isfinite(key) else f"{key / 1e6:.3g} MΩ"
    return f"{by}={key}"


def metrics_vs(metrics: pd.DataFrame, x: str, path: Path, title: str,
               columns: tuple[str, ...] = ("v_m", "peak_gain", "c4", "swing", "rms_v", "power_mean_w")) -> Path:
    """Metric columns vs ``x`` (one panel per metric, one line per stage)."""
    plt = _pyplot()
    present = [c for c in columns if c in metrics.columns]
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3.4), squeeze=False)
    numeric_x = pd.api.types.is_numeric_dtype(metrics[x])
    for ax, column in zip(axes[0], present):
        for stage, part in metrics.groupby("stage", sort=False):
            part = part.sort_values(x) if numeric_x else part
            xs = part[x].to_numpy()
            ax.plot(xs if numeric_x else np.arange(len(xs)), part[column].to_numpy(), "o-", ms=3, label=str(stage))
            if not numeric_x:
                ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs])
        if x == "load_ohm":
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_title(column, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def histograms(metrics: pd.DataFrame, path: Path, title: str, columns: tuple[str, ...] = ("v_m", "peak_gain", "c4")) -> Path:
    """Monte Carlo histograms of metric columns, one colour per stage."""
    plt = _pyplot()
    present = [c for c in columns if c in metrics.columns]
    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.4), squeeze=False)
    for ax, column in zip(axes[0], present):
        for stage, part in metrics.groupby("stage", sort=False):
            ax.hist(part[column].dropna().to_numpy(), bins=20, alpha=0.6, label=str(stage))
        ax.set_title(column, fontsize=9)
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
