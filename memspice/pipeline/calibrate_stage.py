"""Pipeline stage: fit the neuron activation, load-aware and current models from SPICE."""

from __future__ import annotations

from typing import Any

import numpy as np

from memspice.characterize.calibrate import calibrate
from memspice.fit.calibration import DeviceWindow, save_calibration
from memspice.pipeline import data
from memspice.pipeline.stages import StageContext
from memspice.pipeline.train_stage import CALIBRATION_FILE


def load_grid(ctx: StageContext) -> list[float]:
    """The configured load grid (Ω), geometric."""
    c = ctx.config.characterize
    return [float(v) for v in np.geomspace(c.load_min_ohm, c.load_max_ohm, c.load_points)]


def run_calibrate(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    tech = data.technology(cfg)
    device = DeviceWindow(cfg.device.g_min_us * 1e-6, cfg.device.g_max_us * 1e-6, cfg.device.levels)
    calibration = calibrate(tech, data.sizing(cfg), load_ohm=cfg.characterize.load_ohm, loads_ohm=load_grid(ctx),
                            device=device, command="memspice run (calibrate stage)")
    save_calibration(calibration, ctx.stage_dir("calibrate") / CALIBRATION_FILE)
    act = calibration.activation
    return {
        "inverting": {"c1": act.inverting.c1, "c2": act.inverting.c2, "c3": act.inverting.c3, "c4": act.inverting.c4},
        "noninverting": {"c1": act.noninverting.c1, "c2": act.noninverting.c2, "c3": act.noninverting.c3,
                         "c4": act.noninverting.c4},
        "neuron_gain": act.noninverting.gain,
        "residuals_v": dict(calibration.residuals),
        "digest": calibration.digest(),
    }
