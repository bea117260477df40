"""``load-aware`` evaluator for layer-described networks (dense, conv, pooled, θ-masked).

The LATIM/ERIM idea of :mod:`memspice.train.load_aware` on the per-device circuit of
:mod:`memspice.network.wiring`: rows are ideal sources and every column the
conductance-weighted mean of its own devices' rows (pools folded, zero padding a device to a
0 V row), as in the static model; each neuron's two inverters follow the calibration's
load-aware tanh at that neuron's own load. Neuron ``j`` of a hidden layer drives its ``n`` row
and its ``p`` row in every next column that reads it, so its loads are the summed
conductances of those devices,

    g_n,j = Σ G_next[:, n_j]      g_p,j = Σ G_next[:, p_j]      (S)

over the next layer's row-column matrix
(:func:`~memspice.train.conv_coupled.row_column_matrix`): ``k²·C_out`` taps' worth for a conv
map (fewer at its edges), each a device of ``σ/P²`` through a folded pool. Zero-padding
devices load no neuron; masked devices are absent. Output-layer neurons drive nothing and use
the lightest characterized load (as the dense evaluator does).

The approximations are the dense evaluator's (its module notes): the load returns to a fixed
node, not to the next columns; ``outp`` is evaluated at ``g_p`` although inverter 1 is loaded
by ``g_n``; loads are clamped into the characterized range.

Gradients are exact for this model: through the column (implicit in the row-column matrix),
through the load of every device on the neuron it reads (``∂g/∂G = 1`` for its row), then per
device and, by :func:`~memspice.network.wiring.theta_gradient`, per shared θ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.wiring import CrossbarWiring, theta_gradient
from memspice.train.conv_coupled import (
    DeviceLayerState,
    DeviceTrace,
    _column_vjp,
    device_matrices,
)
from memspice.train.load_aware import _tanh, _tanh_vjp, activation_parameters


@dataclass(frozen=True, slots=True)
class NeuronLoads:
    """The load on each output of one layer (S), ``(M,)`` each."""

    g_n: np.ndarray
    g_p: np.ndarray


class LayeredLoadAwareEvaluator:
    """Ideal row sources, each conv position's and dense neuron's tanh at its own load.

    Args:
        calibration: needs ``load_aware``.
        wirings: per crossbar layer, its :class:`~memspice.network.wiring.CrossbarWiring`.

    Raises:
        ConfigError: the calibration has no load-aware model.
    """

    name = "load-aware"

    def __init__(self, calibration: Calibration, wirings: Sequence[CrossbarWiring]) -> None:
        if calibration.load_aware is None:
            raise ConfigError(
                "the 'load-aware' evaluator needs a calibration with a load-aware activation "
                "(memspice.characterize.calibrate.calibrate produces one)"
            )
        self.calibration = calibration
        self.wirings = tuple(wirings)
        self._inv = calibration.load_aware.inverting
        self._non = calibration.load_aware.noninverting
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss

    def loads(self, matrices: Sequence[np.ndarray], index: int) -> NeuronLoads:
        """Loads on layer ``index``'s outputs from the next layer's row-column matrix (S)."""
        m = self.wirings[index].plan.n_columns
        if index + 1 >= len(matrices):
            return NeuronLoads(np.full(m, self._inv.g_load_min_siemens),
                               np.full(m, self._non.g_load_min_siemens))
        per_row = matrices[index + 1].sum(axis=0)  # rows [p…, n…, VDD, VSS, 0 V]
        return NeuronLoads(per_row[m : 2 * m], per_row[:m])

    def forward(self, sigmas: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """Every layer's voltages for σ per θ (``plan.theta_shape``, S) and flat inputs (V)."""
        devices = [w.conductances(s) for w, s in zip(self.wirings, sigmas)]
        return self.forward_devices(devices, x)

    def forward_devices(self, devices: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """Every layer's voltages for per-device conductances (S) and inputs ``(B, S₀)`` (V).

        Raises:
            ConfigError: wrong number of layers or inputs.
        """
        x, matrices = device_matrices(self.wirings, devices, x)
        v_pos, v_neg = x, -x
        layers = []
        for index, (wiring, matrix) in enumerate(zip(self.wirings, matrices)):
            rows = wiring.row_source_voltages(v_pos, v_neg, self._vdd, self._vss)
            column = rows @ (matrix / matrix.sum(axis=1, keepdims=True)).T
            loads = self.loads(matrices, index)
            outn, _ = _tanh(activation_parameters(self._inv, loads.g_n)[0], column)
            outp, _ = _tanh(activation_parameters(self._non, loads.g_p)[0], column)
            layers.append(DeviceLayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return DeviceTrace(tuple(layers), tuple(np.asarray(g) for g in devices), matrices)

    def backward(self, trace: DeviceTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂σ`` per θ (1/S): summed over positions (shared kernels) and folded devices."""
        grads = self.backward_devices(trace, grad_output, grad_column)
        return [theta_gradient(w, g) for w, g in zip(self.wirings, grads)]

    def backward_devices(self, trace: DeviceTrace, grad_output: np.ndarray,
                         grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂G`` per device ``(n_columns, D)`` (1/S; 0 on absent devices).

        Args:
            trace: a forward trace of this evaluator.
            grad_output: ``∂L/∂outp`` of the last layer, ``(B, n_classes)`` (1/V).
            grad_column: further ``∂L/∂column`` of the last layer (1/V), or None.
        """
        matrices = trace.matrices
        last = len(matrices) - 1
        grads = [np.zeros_like(m) for m in matrices]
        grad_p = np.asarray(grad_output, dtype=np.float64)
        grad_n = np.zeros_like(grad_p)
        for index in range(last, -1, -1):
            state = trace.layers[index]
            loads = self.loads(matrices, index)
            grad_col = np.zeros_like(state.column)
            if index == last and grad_column is not None:
                grad_col += grad_column
            grad_loads = []
            for model, g_load, grad in ((self._inv, loads.g_n, grad_n),
                                        (self._non, loads.g_p, grad_p)):
                params, slopes = activation_parameters(model, g_load)
                _, t = _tanh(params, state.column)
                d_column, d_params = _tanh_vjp(params, state.column, t, grad)
                grad_col += d_column
                grad_loads.append((d_params * slopes).sum(axis=0))
            if index < last:
                m = state.column.shape[1]
                # every entry of a row adds to that row's load: ∂g/∂G = 1
                grads[index + 1][:, m : 2 * m] += grad_loads[0][None, :]
                grads[index + 1][:, :m] += grad_loads[1][None, :]
            grad_g, grad_rows = _column_vjp(matrices[index], state.rows, state.column, grad_col)
            grads[index] += grad_g
            s = self.wirings[index].plan.n_sources
            grad_p, grad_n = grad_rows[:, :s], grad_rows[:, s : 2 * s]
        # A device's conductance enters only through its row-column entry.
        out = []
        for wiring, grad in zip(self.wirings, grads):
            per_device = np.take_along_axis(grad, wiring.source, axis=1)
            out.append(np.where(wiring.present, per_device, 0.0))
        return out
