"""``calibrate``: SPICE → static, load-aware and current models → one :class:`Calibration`.

Two ngspice processes (run in parallel): a family deck with the chain under every load of the
grid (one shared ``.dc`` input sweep), and a nested ``.dc`` over the input and output voltage
of one inverter whose output is held by a source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from memspice.characterize.decks import ChainCopy, current_deck, family_deck, stage_node
from memspice.characterize.sweeps import check_loads
from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, SimError
from memspice.fit.calibration import (
    PHAX_WINDOW,
    Calibration,
    DeviceWindow,
    LoadAwareNeuron,
    NeuronActivation,
)
from memspice.fit.load_models import fit_current_model, fit_load_aware
from memspice.fit.tanh_fit import TanhFit, fit_tanh
from memspice.sim import SimOptions, simulate_many
from memspice.tech.technology import Technology

#: Default load grid (Ω): 0.1 MΩ to 2 MΩ, geometric.
DEFAULT_LOADS_OHM: tuple[float, ...] = tuple(float(v) for v in np.geomspace(1e5, 2e6, 9))


def calibrate(
    tech: Technology,
    sizing: InverterSizing = InverterSizing(),
    *,
    load_ohm: float = 0.9e6,
    loads_ohm: Sequence[float] = DEFAULT_LOADS_OHM,
    step_v: float = 0.5e-3,
    current_step_v: float = 0.0125,
    degree: int = 3,
    device: DeviceWindow = PHAX_WINDOW,
    options: SimOptions = SimOptions(),
    command: str = "memspice.characterize.calibrate",
) -> Calibration:
    """Characterize a technology and sizing and return the calibration the trainer consumes.

    Args:
        tech: technology at its rails, temperature and corner.
        sizing: inverter transistor sizes (m).
        load_ohm: representative load of the static fit (Ω) — each stage output loaded by it.
        loads_ohm: load grid of the load-aware fit (Ω), ≥ ``degree + 1`` values.
        step_v: VTC input step (V).
        current_step_v: grid step of the inverter-current sweep (V); the table keeps every
            other point, the rest measure the interpolation error.
        degree: polynomial degree of the load-aware model in the load conductance.
        device: memristor window (default PHAX's; use :mod:`memspice.characterize.memristor`
            to derive one from the Yakopcic model).
        options: simulation options.
        command: provenance string.

    Raises:
        ConfigError: bad load grid or steps. FitError: a curve that cannot be fitted.
        SimError: ngspice failed.
    """
    grid = [float(v) for v in check_loads(loads_ohm) if v is not None]
    check_loads([load_ohm])
    if len(set(grid)) < degree + 1:
        raise ConfigError(f"the load grid needs at least {degree + 1} distinct loads for degree {degree}")
    if not current_step_v > 0 or not step_v > 0:
        raise ConfigError("sweep steps must be positive")
    rails = tech.rails
    n_out = int(round((rails.vdd - rails.vss) / current_step_v))
    if n_out < 8:
        raise ConfigError(f"current step {current_step_v} V gives fewer than 8 grid intervals")
    if n_out % 2:
        n_out += 1
    fine_step = (rails.vdd - rails.vss) / n_out
    copies = [ChainCopy(sizing, load_ohm)] + [ChainCopy(sizing, r) for r in grid]
    decks = [family_deck(tech, copies, step_v=step_v, title="calibration vtc family"),
             current_deck(tech, sizing, step_in_v=fine_step, step_out_v=fine_step)]
    vtc_result, current_result = simulate_many(decks, options)
    for result in (vtc_result, current_result):
        if isinstance(result, SimError):
            raise result
    plot = vtc_result.plots[0]
    v_in = np.asarray(plot["in"])
    static = {stage: fit_tanh(v_in, plot[stage_node(0, stage)], midpoint=rails.mid) for stage in (1, 2)}
    load_aware = {}
    for stage in (1, 2):
        curves = [np.asarray(plot[stage_node(k + 1, stage)]) for k in range(len(grid))]
        fits = [fit_tanh(v_in, c, midpoint=rails.mid) for c in curves]
        load_aware[stage] = fit_load_aware([1.0 / r for r in grid], fits, v_in, curves, degree=degree)
    cplot = current_result.plots[0]
    n_in = n_out + 1
    table = np.asarray(cplot["i(vout)"]).reshape(n_out + 1, n_in)  # outer (Vout) major
    v_grid = rails.vss + fine_step * np.arange(n_in)
    current = fit_current_model(v_grid, v_grid, table.T)
    source = {
        **tech.describe(),
        "wn_m": repr(sizing.wn_m), "wp_m": repr(sizing.wp_m), "ln_m": repr(sizing.ln_m), "lp_m": repr(sizing.lp_m),
        # parallel devices only when used, so single-device calibrations read as before
        **({"mn": repr(sizing.mn), "mp": repr(sizing.mp)} if (sizing.mn, sizing.mp) != (1, 1) else {}),
        "load_ohm": repr(load_ohm),
        "load_grid_ohm": ",".join(f"{r:.6g}" for r in grid),
        "vtc_step_v": repr(step_v),
        "current_step_v": repr(fine_step),
        "command": command,
        "device_window": "PHAX Yakopcic window" if device == PHAX_WINDOW else "given by the caller",
    }
    residuals = {
        **_residuals("inverting", static[1]),
        **_residuals("noninverting", static[2]),
        "load_aware_inverting_rms": load_aware[1].rms_v,
        "load_aware_inverting_max": load_aware[1].max_abs_v,
        "load_aware_noninverting_rms": load_aware[2].rms_v,
        "load_aware_noninverting_max": load_aware[2].max_abs_v,
        "inverter_current_interp_rms_a": current.interp_rms_a,
        "inverter_current_interp_max_a": current.interp_max_a,
    }
    return Calibration(
        rails=rails,
        activation=NeuronActivation(inverting=static[1].activation, noninverting=static[2].activation),
        device=device,
        source=source,
        residuals={k: float(v) for k, v in residuals.items() if math.isfinite(v)},
        load_aware=LoadAwareNeuron(inverting=load_aware[1], noninverting=load_aware[2]),
        inverter_current=current,
    )


def _residuals(name: str, fit: TanhFit) -> dict[str, float]:
    return {f"{name}_rms": fit.rms_v, f"{name}_max": fit.max_abs_v}
