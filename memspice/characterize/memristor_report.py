"""Memristor characterization written to a directory: tables, plot, JSON and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from memspice.characterize import memristor
from memspice.errors import ConfigError
from memspice.io import write_atomic, write_text_atomic
from memspice.sim import SimOptions
from memspice.safe_io import dumps_strict


def memristor_study(out_dir: Path, *, amplitude_v: float = 1.3, width_s: float = 20e-9, n_pulses: int = 100,
                    read_v: float = 0.25, sigma_siemens: float = 0.05e-6, make_plots: bool = True,
                    options: SimOptions = SimOptions()) -> dict[str, Any]:
    """Run hysteresis, pulse-train and read-sweep simulations and fit the device.

    Returns:
        Summary: window (S), levels, pulse nonlinearity per polarity, read nonlinearity,
        hysteresis pinch and lobe area.
    """
    if not sigma_siemens > 0:
        raise ConfigError("programming noise sigma must be positive (siemens)")
    out_dir = Path(out_dir)
    hyst = memristor.hysteresis(options=options)
    train = memristor.pulse_train(amplitude_v, width_s, n_pulses, read_v, options=options)
    reads = memristor.read_sweep(read_v=read_v, options=options)
    window = memristor.device_window(train, sigma_siemens)
    v, i = hyst["v"].to_numpy(), hyst["i_a"].to_numpy()
    near_zero = np.abs(v) < 1e-3 * np.max(np.abs(v))
    summary = {
        "g_min_siemens": window.g_min_siemens,
        "g_max_siemens": window.g_max_siemens,
        "levels": window.levels,
        "sigma_siemens": sigma_siemens,
        "pulse": {"amplitude_v": amplitude_v, "width_s": width_s, "n_pulses": n_pulses},
        "potentiation": {"nu_pulses": train.potentiation.nu_pulses, "nonlinearity": train.potentiation.nonlinearity,
                         "rms_siemens": train.potentiation.rms_siemens},
        "depression": {"nu_pulses": train.depression.nu_pulses, "nonlinearity": train.depression.nonlinearity,
                       "rms_siemens": train.depression.rms_siemens},
        "read_v": read_v,
        "read_nonlinearity_max": float(reads["nonlinearity"].max()),
        "hysteresis_pinch_max_current_a": float(np.max(np.abs(i[near_zero]))) if near_zero.any() else float("nan"),
        "hysteresis_loop_area_w": float(abs(np.sum(0.5 * (i[1:] + i[:-1]) * np.diff(v)))),
    }
    for name, frame in (("memristor_hysteresis", hyst), ("memristor_pulses", train.table), ("memristor_reads", reads)):
        write_atomic(out_dir / f"{name}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False))
    if make_plots:
        from memspice.characterize.plots import memristor_plots

        memristor_plots(hyst, train.table, out_dir / "memristor.png")
    write_text_atomic(out_dir / "memristor.json", dumps_strict(summary, indent=2) + "\n")
    lines = ["# memspice memristor characterization (yakopcic_phax)", ""]
    lines += [f"- window: {window.g_min_siemens * 1e6:.4g} µS … {window.g_max_siemens * 1e6:.4g} µS, "
              f"{window.levels} levels at σ = {sigma_siemens * 1e9:.3g} nS",
              f"- pulses {amplitude_v:g} V × {width_s * 1e9:g} ns: potentiation nonlinearity "
              f"{train.potentiation.nonlinearity:.3g}, depression {train.depression.nonlinearity:.3g}",
              f"- read nonlinearity at ±{read_v:g} V: {summary['read_nonlinearity_max']:.3g}", ""]
    write_text_atomic(out_dir / "memristor.md", "\n".join(lines))
    return summary
