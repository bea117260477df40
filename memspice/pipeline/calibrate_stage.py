"""Pipeline stage: fit the neuron activation, load-aware and current models from SPICE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from memspice.characterize.calibrate import calibrate
from memspice.fit.calibration import Calibration, DeviceWindow, save_calibration
from memspice.safe_io import write_atomic
from memspice.pipeline import data
from memspice.pipeline.characterize_stage import load_grid
from memspice.pipeline.stages import StageContext
from memspice.pipeline.train_stage import CALIBRATION_FILE


def run_calibrate(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    tech = data.technology(cfg)
    device = DeviceWindow(cfg.device.g_min_us * 1e-6, cfg.device.g_max_us * 1e-6, cfg.device.levels)
    calibration = calibrate(tech, data.sizing(cfg), load_ohm=cfg.characterize.load_ohm, loads_ohm=load_grid(ctx),
                            degree=cfg.characterize.load_degree, current_step_v=cfg.characterize.current_step_mv * 1e-3,
                            device=device, command="memspice run (calibrate stage)")
    out = ctx.stage_dir("calibrate")
    save_calibration(calibration, out / CALIBRATION_FILE)
    plot_fit(ctx.run_dir / "characterize" / "loads_curves.csv", cfg.characterize.load_ohm, calibration,
             out / "activation_fit.png")
    act = calibration.activation
    return {
        "inverting": {"c1": act.inverting.c1, "c2": act.inverting.c2, "c3": act.inverting.c3, "c4": act.inverting.c4},
        "noninverting": {"c1": act.noninverting.c1, "c2": act.noninverting.c2, "c3": act.noninverting.c3,
                         "c4": act.noninverting.c4},
        "neuron_gain": act.noninverting.gain,
        "residuals_v": dict(calibration.residuals),
        "digest": calibration.digest(),
    }


def plot_fit(curves_csv: Path, load_ohm: float, calibration: Calibration, path: Path) -> Path | None:
    """SPICE VTCs at the representative load with the static tanh fits and their residuals."""
    if not curves_csv.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    curves = pd.read_csv(curves_csv)
    curves = curves[np.isclose(curves["load_ohm"], load_ohm)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fits = {"inverter": calibration.activation.inverting, "neuron": calibration.activation.noninverting}
    for (stage, act), color in zip(fits.items(), ("tab:blue", "tab:orange")):
        part = curves[curves["stage"] == stage]
        if part.empty:
            continue
        v_in, v_out = part["v_in"].to_numpy(), part["v_out"].to_numpy()
        top.plot(v_in, v_out, color=color, lw=2, alpha=0.5, label=f"{stage} (SPICE)")
        top.plot(v_in, act(v_in), "--", color=color, lw=1, label=f"{stage} tanh fit, c4 = {act.c4:.3g}/V")
        bottom.plot(v_in, 1e3 * (v_out - act(v_in)), color=color, lw=1)
    top.set(ylabel="output (V)", title=f"static activation fits at {load_ohm / 1e3:.0f} kΩ load")
    top.legend(fontsize=8)
    bottom.set(xlabel="input (V)", ylabel="residual (mV)")
    fig.tight_layout()
    written = write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return written
