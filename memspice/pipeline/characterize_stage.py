"""Pipeline stage: inverter and neuron VTCs under the load grid, metrics, plots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from memspice.characterize.study import Study, run_study
from memspice.circuit.wiring import Rails
from memspice.pipeline import data
from memspice.pipeline.stages import StageContext
from memspice.tech import Technology


def load_grid(ctx: StageContext) -> list[float]:
    """The configured load grid (Ω), geometric, plus the representative load of the static fit."""
    c = ctx.config.characterize
    grid = {float(v) for v in np.geomspace(c.load_min_ohm, c.load_max_ohm, c.load_points)}
    return sorted(grid | {float(c.load_ohm)})


def run_characterize(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    out = ctx.stage_dir("characterize")

    def make_tech(corner: str, rails: Rails, temperature_c: float) -> Technology:
        return data.technology(cfg).with_conditions(rails=rails, temperature_c=temperature_c)

    t = cfg.technology
    step = (t.vdd - t.vss) / (cfg.characterize.sweep_points - 1)
    study = Study(make_tech=make_tech, base_corner=t.corner, rails=Rails(t.vdd, t.vss), temperature_c=t.temperature_c,
                  sizings=(data.sizing(cfg),), loads_ohm=tuple(load_grid(ctx)), load_ohm=cfg.characterize.load_ohm,
                  step_v=step)
    run_study(study, out)
    metrics = pd.read_csv(out / "loads_metrics.csv")
    nominal = metrics[np.isclose(metrics["load_ohm"], cfg.characterize.load_ohm)]
    rows = {str(r["stage"]): {k: float(r[k]) for k in ("v_m", "peak_gain", "nm_l", "nm_h", "swing", "power_mean_w")}
            for _, r in nominal.iterrows()}
    return {"loads": len(load_grid(ctx)), "at_representative_load": rows}
