"""``load-aware`` evaluator (LATIM/ERIM idea): each neuron's tanh follows its actual load.

Rows are still ideal sources and columns the conductance-weighted mean of their rows, as in the
static model; what changes is the activation. Neuron ``j`` of a hidden layer drives row
``in_j`` of every next column with ``outn`` and row ``ip_j`` with ``outp``, so its loads are

    g_n,j = Σ_m G_next[m, in_j]      g_p,j = Σ_m G_next[m, ip_j]      (S)

and its outputs are ``outn = f₁(c; g_n,j)``, ``outp = f₂(c; g_p,j)`` with the calibration's
load-aware tanh parameters (polynomials in ``ln g``). Output-layer neurons drive nothing.

Approximations (documented, measured against SPICE by ``scripts/bench_modes.py``):

- The load returns to the next columns, not to a fixed mid-rail node as in characterization;
  the columns sit near mid-rail but move with the data, which this model ignores.
- ``f₂`` was characterized with *both* stages loaded by the same ``g``; here inverter 1 is
  really loaded by ``g_n`` while ``outp`` is evaluated at ``g_p``.
- Loads are clamped into the characterized range ``[g_load_min, g_load_max]`` (a polynomial in
  ``ln g`` extrapolates badly). An unloaded output neuron uses ``g_load_min``, the lightest
  characterized load; characterize with a light enough minimum load (e.g. 2 MΩ or more).

The gradient is exact for this model, including ``∂L/∂G_next`` through the loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memspice.circuit.wiring import input_rows, row_voltages
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, LoadAwareActivation
from memspice.train.coupled import column_vjp, column_voltages
from memspice.train.forward import ForwardTrace, LayerState



def _parameter_polynomials(model: LoadAwareActivation) -> list[tuple[tuple[float, ...], bool, float]]:
    """``(coefficients, exponentiated, sign)`` of ``c1..c4`` as polynomials in ``u = ln(G/g_scale)``.

    Reads both layouts of :class:`LoadAwareActivation`: plain polynomials for ``c1..c4``, or
    ``c2 = c2_sign·exp(P(u))`` and ``c4 = exp(P(u))`` (``log_abs_c2``, ``log_c4``), which keep
    their signs on wide load grids.
    """
    if hasattr(model, "log_c4"):
        return [(model.c1, False, 1.0), (model.log_abs_c2, True, float(model.c2_sign)),
                (model.c3, False, 1.0), (model.log_c4, True, 1.0)]
    return [(getattr(model, name), False, 1.0) for name in ("c1", "c2", "c3", "c4")]


def activation_parameters(model: LoadAwareActivation, g_load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tanh parameters at each load and their derivatives w.r.t. the load.

    Args:
        model: the load-aware activation.
        g_load: ``(M,)`` load conductances (S); clamped into the characterized range.

    Returns:
        ``(params, dparams)``, each ``(4, M)``: ``c1..c4`` (V, V, V, 1/V) and ``∂c_i/∂g``
        (per S; zero where the load was clamped).
    """
    g = np.asarray(g_load, dtype=np.float64)
    clamped = np.clip(g, model.g_load_min_siemens, model.g_load_max_siemens)
    u = np.log(clamped / model.g_scale_siemens)
    inside = (g >= model.g_load_min_siemens) & (g <= model.g_load_max_siemens)
    poly = np.polynomial.polynomial
    values, slopes = [], []
    for coeffs, exponentiated, sign in _parameter_polynomials(model):
        coeffs = np.asarray(coeffs, dtype=np.float64)
        p = poly.polyval(u, coeffs)
        dp = poly.polyval(u, poly.polyder(coeffs)) if coeffs.size > 1 else np.zeros_like(u)
        if exponentiated:
            p = sign * np.exp(p)
            dp = p * dp
        values.append(p)
        slopes.append(dp)
    return np.stack(values), np.where(inside, np.stack(slopes) / clamped, 0.0)


def _tanh(params: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output ``c1 + c2·tanh(c4·(v − c3))`` and the tanh value, per neuron (``params`` ``(4, M)``)."""
    c1, c2, c3, c4 = params
    t = np.tanh(c4 * (column - c3))
    return c1 + c2 * t, t


def _tanh_vjp(params: np.ndarray, column: np.ndarray, t: np.ndarray, grad_out: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(∂L/∂column (B, M), ∂L/∂params (4, M))`` of :func:`_tanh`."""
    _, c2, c3, c4 = params
    sech2 = 1.0 - t * t
    grad_column = grad_out * (c2 * c4 * sech2)
    grad_params = np.stack([
        grad_out.sum(axis=0),
        (grad_out * t).sum(axis=0),
        -grad_column.sum(axis=0),
        (grad_out * c2 * sech2 * (column - c3)).sum(axis=0),
    ])
    return grad_column, grad_params


class LoadAwareEvaluator:
    """Ideal row sources, activations at each neuron's own load (see the module notes).

    Args:
        calibration: needs ``load_aware``.

    Raises:
        ConfigError: the calibration has no load-aware model.
    """

    name = "load-aware"

    def __init__(self, calibration: Calibration) -> None:
        if calibration.load_aware is None:
            raise ConfigError(
                "the load-aware evaluator needs a calibration with a load-aware activation "
                "(memspice.characterize.calibrate.calibrate produces one)"
            )
        self.calibration = calibration
        self._inv = calibration.load_aware.inverting
        self._non = calibration.load_aware.noninverting
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss

    def loads(self, conductances: Sequence[np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
        """Load conductances ``(g_n, g_p)`` (S), each ``(M,)``, of layer ``index``'s outputs.

        The output layer gets the lightest characterized load of each stage.
        """
        m = conductances[index].shape[0]
        if index + 1 >= len(conductances):
            return np.full(m, self._inv.g_load_min_siemens), np.full(m, self._non.g_load_min_siemens)
        totals = np.asarray(conductances[index + 1], dtype=np.float64).sum(axis=0)
        return totals[m : 2 * m], totals[:m]

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> ForwardTrace:
        """Evaluate on input voltages ``x`` ``(B, n_inputs)`` (V)."""
        v_pos, v_neg = input_rows(np.asarray(x, dtype=np.float64))
        layers = []
        for index, g in enumerate(conductances):
            rows = row_voltages(v_pos, v_neg, self._vdd, self._vss)
            column = column_voltages(g, rows)
            g_n, g_p = self.loads(conductances, index)
            outn, _ = _tanh(activation_parameters(self._inv, g_n)[0], column)
            outp, _ = _tanh(activation_parameters(self._non, g_p)[0], column)
            layers.append(LayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return ForwardTrace(tuple(layers), tuple(conductances))

    def backward(self, trace: ForwardTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂G`` per layer (loss units per S), given ``∂L/∂outp`` of the last layer (1/V).

        ``grad_column`` is a further ``∂L/∂column`` of the last layer (1/V), or None.
        """
        last = len(trace.conductances) - 1
        conductances = trace.conductances
        grads = [np.zeros_like(np.asarray(g, dtype=np.float64)) for g in conductances]
        grad_p = np.asarray(grad_output, dtype=np.float64)
        grad_n = np.zeros_like(grad_p)
        for index in range(len(conductances) - 1, -1, -1):
            state = trace.layers[index]
            g_n, g_p = self.loads(conductances, index)
            grad_col = np.zeros_like(state.column)
            if index == last and grad_column is not None:
                grad_col += grad_column
            grad_loads = []
            for model, g_load, grad in ((self._inv, g_n, grad_n), (self._non, g_p, grad_p)):
                params, slopes = activation_parameters(model, g_load)
                _, t = _tanh(params, state.column)
                d_column, d_params = _tanh_vjp(params, state.column, t, grad)
                grad_col += d_column
                grad_loads.append((d_params * slopes).sum(axis=0))
            if index + 1 < len(conductances):
                m = state.column.shape[1]
                grads[index + 1][:, m : 2 * m] += grad_loads[0][None, :]
                grads[index + 1][:, :m] += grad_loads[1][None, :]
            grad_g, grad_rows = column_vjp(conductances[index], state.rows, state.column, grad_col)
            grads[index] += grad_g
            n = (grad_rows.shape[1] - 2) // 2
            grad_p, grad_n = grad_rows[:, :n], grad_rows[:, n : 2 * n]
        return grads
