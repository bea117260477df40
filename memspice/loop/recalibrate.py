"""Recalibration from the circuit's own operating points, one strategy per calibration mode.

- ``coupled``: re-run the 2-D inverter-current sweep on a finer grid and re-tabulate it finely
  inside the (V_in, V_out) box the circuit actually visits (coarse grid points outside it);
  the in-situ current residual is measured before and after.
- ``static``: refit the one tanh per stage to the in-situ (column → outn) and (column → outp)
  pairs of every layer, pooled (a static model has one curve for every neuron).
- ``load-aware``: shift the constant term of each load polynomial (``c1``, ``ln|c2|``, ``c3``,
  ``ln c4``) so the model at each neuron's own load fits the in-situ pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, FitError, SimError
from memspice.fit.calibration import (
    Calibration,
    InverterCurrentModel,
    LoadAwareActivation,
    LoadAwareNeuron,
    NeuronActivation,
    TanhActivation,
)
from memspice.loop.operating_points import LayerPoints, current_residual, inverter_points
from memspice.sim import SimOptions
from memspice.tech.technology import Technology

#: Step (V) of the finer current sweep; the refined table keeps every other point in the box.
REFINE_STEP_V = 0.003125


def _axis(fine: np.ndarray, box: tuple[float, float], coarse_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``fine`` kept in the table, and the held-out ones inside the box."""
    index = np.arange(fine.size)
    inside = (fine >= box[0]) & (fine <= box[1])
    keep = (inside & (index % 2 == 0)) | (~inside & (index % coarse_every == 0))
    keep[[0, -1]] = True
    return np.flatnonzero(keep), np.flatnonzero(inside & ~keep)


def refine_current_model(tech: Technology, sizing: InverterSizing, model: InverterCurrentModel,
                         layers: Sequence[LayerPoints], *, step_v: float = REFINE_STEP_V,
                         margin_v: float = 0.01, options: SimOptions = SimOptions()
                         ) -> tuple[InverterCurrentModel, dict[str, float]]:
    """A current table refined where the circuit operates.

    One ngspice run sweeps the inverter on a ``step_v`` grid over both rails; the new table
    keeps every other point inside the visited box (widened by ``margin_v``) and the old
    table's spacing outside it. The held-out sweep points inside the box measure the
    interpolation error.

    Args:
        tech: technology (rails, corner) the network is simulated in.
        sizing: inverter sizes (m).
        model: the current table in use.
        layers: operating points of every layer (:func:`circuit_operating_points`).
        step_v: fine sweep step (V); the table step inside the box is twice this.
        margin_v: widening of the visited box (V).
        options: simulation options.

    Returns:
        The refined model and a dict with the sweep size and the box.

    Raises:
        ConfigError: a step that does not divide the rail span. SimError: ngspice failed.
    """
    from memspice.characterize.decks import current_deck
    from memspice.sim import simulate_many

    rails = tech.rails
    n = int(round((rails.vdd - rails.vss) / step_v))
    if n < 8 or abs(n * step_v - (rails.vdd - rails.vss)) > 1e-9:
        raise ConfigError(f"refine step {step_v} V must divide the rail span into at least 8 intervals")
    n += n % 2
    fine_step = (rails.vdd - rails.vss) / n
    (result,) = simulate_many([current_deck(tech, sizing, step_in_v=fine_step, step_out_v=fine_step)], options)
    if isinstance(result, SimError):
        raise result
    table = np.asarray(result.plots[0]["i(vout)"]).reshape(n + 1, n + 1).T  # [v_in, v_out]
    grid = rails.vss + fine_step * np.arange(n + 1)
    old_step = float(np.median(np.diff(model.v_in)))
    coarse_every = max(2, 2 * int(round(old_step / (2 * fine_step))))
    points = inverter_points(layers)
    box_in, box_out = points.box(margin_v)
    keep_in, held_in = _axis(grid, box_in, coarse_every)
    keep_out, held_out = _axis(grid, box_out, coarse_every)
    coarse = table[np.ix_(keep_in, keep_out)]
    refined = InverterCurrentModel(tuple(float(v) for v in grid[keep_in]), tuple(float(v) for v in grid[keep_out]),
                                   tuple(tuple(float(c) for c in row) for row in coarse), 0.0, 0.0)
    spline = refined.interpolant()
    inside_in = np.concatenate([keep_in[(grid[keep_in] >= box_in[0]) & (grid[keep_in] <= box_in[1])], held_in])
    inside_out = np.concatenate([keep_out[(grid[keep_out] >= box_out[0]) & (grid[keep_out] <= box_out[1])], held_out])
    ii, jj = np.meshgrid(inside_in, inside_out, indexing="ij")
    held = ~(np.isin(ii, keep_in) & np.isin(jj, keep_out))
    if not held.any():
        raise FitError("the visited box is too small to hold out any sweep point")
    err = spline.ev(grid[ii[held]], grid[jj[held]]) - table[ii[held], jj[held]]
    refined = dataclasses.replace(refined, interp_rms_a=float(np.sqrt(np.mean(err**2))),
                                  interp_max_a=float(np.max(np.abs(err))))
    info = {"sweep_step_v": fine_step, "table_points_in": len(keep_in), "table_points_out": len(keep_out),
            "box_v_in_lo": box_in[0], "box_v_in_hi": box_in[1], "box_v_out_lo": box_out[0],
            "box_v_out_hi": box_out[1]}
    return refined, info


def _fit_tanh_points(start: TanhActivation, v_in: np.ndarray, v_out: np.ndarray) -> TanhActivation:
    """Least-squares tanh through scattered in-situ pairs, starting from ``start``."""
    from scipy.optimize import least_squares

    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] + p[1] * np.tanh(p[3] * (v_in - p[2])) - v_out

    p0 = np.array([start.c1, start.c2, start.c3, start.c4])
    sign = np.sign(start.c2)
    lower = [-np.inf, -np.inf if sign < 0 else 1e-6, -np.inf, 1e-3]
    upper = [np.inf, -1e-6 if sign < 0 else np.inf, np.inf, 1e5]
    result = least_squares(residual, p0, bounds=(lower, upper), x_scale="jac")
    if not result.success:
        raise FitError(f"in-situ tanh fit did not converge: {result.message}")
    return TanhActivation(*(float(v) for v in result.x))


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def refit_static(calibration: Calibration, layers: Sequence[LayerPoints]) -> tuple[Calibration, dict[str, float]]:
    """Refit both static tanh activations to every layer's in-situ (column → output) pairs.

    Returns:
        The new calibration and the activation RMS error (V) over the pairs before and after.
    """
    column = np.concatenate([lp.column.ravel() for lp in layers])
    outn = np.concatenate([lp.outn.ravel() for lp in layers])
    outp = np.concatenate([lp.outp.ravel() for lp in layers])
    act = calibration.activation
    inverting = _fit_tanh_points(act.inverting, column, outn)
    noninverting = _fit_tanh_points(act.noninverting, column, outp)
    before = _rms(np.concatenate([act.inverting(column) - outn, act.noninverting(column) - outp]))
    after = _rms(np.concatenate([inverting(column) - outn, noninverting(column) - outp]))
    new = dataclasses.replace(calibration, activation=NeuronActivation(inverting, noninverting),
                              source={**calibration.source, "recalibrated": "static: in-situ tanh refit"})
    return new, {"activation_rms_v_before": before, "activation_rms_v_after": after}


def _shift_constant(model: LoadAwareActivation, delta: np.ndarray) -> LoadAwareActivation:
    changes = {}
    for name, d in zip(("c1", "log_abs_c2", "c3", "log_c4"), delta):
        coeffs = getattr(model, name)
        changes[name] = (coeffs[0] + float(d), *coeffs[1:])
    return dataclasses.replace(model, **changes)


def _load_aware_outputs(model: LoadAwareActivation, columns: Sequence[np.ndarray], loads: Sequence[np.ndarray]) -> np.ndarray:
    from memspice.train.load_aware import activation_parameters

    parts = []
    for column, g_load in zip(columns, loads):
        c1, c2, c3, c4 = activation_parameters(model, g_load)[0]
        parts.append((c1 + c2 * np.tanh(c4 * (column - c3))).ravel())
    return np.concatenate(parts)


def refit_load_aware(calibration: Calibration, layers: Sequence[LayerPoints],
                     conductances: Sequence[np.ndarray]) -> tuple[Calibration, dict[str, float]]:
    """Shift the load-aware polynomials' constant terms to fit the in-situ pairs at each load.

    Returns:
        The new calibration and the activation RMS error (V) before and after.

    Raises:
        ConfigError: the calibration has no load-aware model.
    """
    from scipy.optimize import least_squares

    from memspice.train.load_aware import LoadAwareEvaluator

    if calibration.load_aware is None:
        raise ConfigError("load-aware recalibration needs a calibration with a load-aware model")
    evaluator = LoadAwareEvaluator(calibration)
    loads = [evaluator.loads(conductances, index) for index in range(len(layers))]
    columns = [lp.column for lp in layers]
    fitted, before, after = {}, [], []
    for name, which, target in (("inverting", 0, "outn"), ("noninverting", 1, "outp")):
        model = getattr(calibration.load_aware, name)
        g = [pair[which] for pair in loads]
        y = np.concatenate([getattr(lp, target).ravel() for lp in layers])

        def residual(delta: np.ndarray, model: LoadAwareActivation = model, g: list = g, y: np.ndarray = y) -> np.ndarray:
            return _load_aware_outputs(_shift_constant(model, delta), columns, g) - y

        result = least_squares(residual, np.zeros(4), x_scale="jac")
        if not result.success:
            raise FitError(f"in-situ load-aware fit did not converge: {result.message}")
        fitted[name] = _shift_constant(model, result.x)
        before.append(residual(np.zeros(4)))
        after.append(result.fun)
    new = dataclasses.replace(calibration, load_aware=LoadAwareNeuron(**fitted),
                              source={**calibration.source, "recalibrated": "load-aware: in-situ offset refit"})
    return new, {"activation_rms_v_before": _rms(np.concatenate(before)),
                 "activation_rms_v_after": _rms(np.concatenate(after))}


def recalibrate(mode: str, calibration: Calibration, layers: Sequence[LayerPoints],
                conductances: Sequence[np.ndarray], tech: Technology, sizing: InverterSizing, *,
                refine_step_v: float = REFINE_STEP_V, options: SimOptions = SimOptions()
                ) -> tuple[Calibration, dict[str, Any]]:
    """Recalibrate for ``mode`` from the circuit's operating points.

    Returns:
        The new calibration and a JSON-safe record: ``action`` plus the before/after residuals
        (``current_*`` in A for the coupled mode, ``activation_rms_v_*`` in V otherwise).

    Raises:
        ConfigError: unknown mode or a calibration lacking the mode's model.
    """
    if mode == "coupled":
        if calibration.inverter_current is None:
            raise ConfigError("coupled recalibration needs a calibration with an inverter current model")
        points = inverter_points(layers)
        before = current_residual(calibration.inverter_current, points)
        refined, info = refine_current_model(tech, sizing, calibration.inverter_current, layers,
                                             step_v=refine_step_v, options=options)
        after = current_residual(refined, points)
        new = dataclasses.replace(calibration, inverter_current=refined,
                                  source={**calibration.source, "recalibrated": "coupled: refined current table"})
        record: dict[str, Any] = {"action": f"refine current table ({info['table_points_in']}x"
                                            f"{info['table_points_out']} pts, {1e3 * info['sweep_step_v']:.3g} mV sweep)",
                                  **{f"current_{k}_before": v for k, v in before.items()},
                                  **{f"current_{k}_after": v for k, v in after.items()}, **info}
        return new, record
    if mode == "static":
        new, fit = refit_static(calibration, layers)
        return new, {"action": "refit static tanh to in-situ pairs", **fit}
    if mode == "load-aware":
        new, fit = refit_load_aware(calibration, layers, conductances)
        return new, {"action": "refit load-aware offsets to in-situ pairs", **fit}
    raise ConfigError(f"unknown calibration mode {mode!r}; choose static, load-aware or coupled")
