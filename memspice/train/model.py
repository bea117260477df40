"""Trainable models: the PHAX-constrained crossbar network and its float tanh baseline.

Both expose the same small interface the optimizers and the trainer use:

- ``init_params(rng) -> list[np.ndarray]``
- ``loss_and_grad(params, x, labels, loss, rng) -> (loss, grads)`` (one training step's work)
- ``predict(params, x, rng=None) -> outputs``
- ``predict_logits(params, x) -> logits`` (what losses with the ``logit`` link see)
- ``output_range -> (lo, hi)`` (what the losses rescale to [0, 1])

Computation is float64 throughout: the gradients are checked against finite differences to
1e-6 and the column voltages differ by millivolts, so single precision would buy little speed
(the batches are small and per-call overhead dominates) at a real cost in accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memspice.circuit.wiring import LayerShape, layer_shapes
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.train.forward import ForwardTrace, NetworkEvaluator, make_evaluator
from memspice.train.drive_power import input_drive_power_and_grad
from memspice.train.hardware import FaultMap, HardwareConfig, realize_conductances
from memspice.train.losses import Loss
from memspice.train.mapping import (
    ConductanceWindow,
    theta_to_conductance,
    theta_to_conductance_vjp,
)


class PhaxNetwork:
    """A PHAX crossbar network trained through ``θ → σ → w``.

    Args:
        calibration: rails, activation fits and device window.
        topology: layer sizes, e.g. ``(196, 100, 10)``; any number of hidden layers.
        hardware: quantization and variation applied in the forward pass.
        faults: stuck devices fixed in the forward pass (fault-aware training), or None.
        evaluator: name of the network evaluator (``"static"``).
        init_std: standard deviation of the initial θ (dimensionless).
        init_mean: mean of the initial θ; negative values start most devices near g_min, so
            the few that grow dominate their column's normalization and the column reaches a
            useful voltage swing sooner.
        drive_power_weight_per_w: 0 (off) or the weight (1/W) of the input drivers' mean static
            power (:func:`~memspice.train.drive_power.input_drive_power`, on the training
            inputs) added to every training step's loss; it pushes the first crossbar's
            conductances down. ``predict`` and validation losses do not see it.
    """

    def __init__(
        self,
        calibration: Calibration,
        topology: Sequence[int],
        hardware: HardwareConfig = HardwareConfig(),
        faults: FaultMap | None = None,
        evaluator: str = "static",
        init_std: float = 1.0,
        init_mean: float = 0.0,
        drive_power_weight_per_w: float = 0.0,
    ) -> None:
        if not (np.isfinite(drive_power_weight_per_w) and drive_power_weight_per_w >= 0):
            raise ConfigError(f"drive_power_weight_per_w must be 0 (off) or positive, got {drive_power_weight_per_w}")
        self.drive_power_weight_per_w = float(drive_power_weight_per_w)
        self.calibration = calibration
        self.shapes: tuple[LayerShape, ...] = layer_shapes(topology)
        self.topology = (self.shapes[0].n_inputs, *(s.n_outputs for s in self.shapes))
        self.window = ConductanceWindow(
            calibration.device.g_min_siemens, calibration.device.g_max_siemens
        )
        self.hardware = hardware
        if faults is not None:
            got = [m.shape for m in faults.stuck_high]
            want = [s.matrix_shape for s in self.shapes]
            if got != want:
                raise ConfigError(f"fault map shapes {got} do not match the network's {want}")
        self.faults = faults
        self.evaluator: NetworkEvaluator = make_evaluator(evaluator, calibration)
        self.init_std = float(init_std)
        self.init_mean = float(init_mean)

    @property
    def output_range(self) -> tuple[float, float]:
        """``(vss, vdd)``: outputs are rescaled as ``(outp − vss)/(vdd − vss)`` (V)."""
        return self.calibration.rails.vss, self.calibration.rails.vdd

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random θ per layer, each shaped ``(M, 2N+2)``."""
        return [self.init_mean + self.init_std * rng.standard_normal(s.matrix_shape)
                for s in self.shapes]

    def conductances(
        self,
        params: Sequence[np.ndarray],
        rng: np.random.Generator | None = None,
        hardware: HardwareConfig | None = None,
        faults: FaultMap | None = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Crossbar conductances (S) and ``∂G/∂σ`` for the given θ.

        Args:
            params: θ per layer.
            rng: generator for variation draws (variation is skipped when None).
            hardware: overrides the model's hardware settings (e.g. for Monte Carlo).
            faults: overrides the model's fault map.
        """
        config = self.hardware if hardware is None else hardware
        if rng is None and config.variation_sigma > 0:
            config = HardwareConfig(levels=config.levels)
        fault_map = self.faults if faults is None else faults
        sigmas = [theta_to_conductance(theta, self.window) for theta in params]
        return realize_conductances(sigmas, self.window, config, fault_map, rng)

    def trace(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        rng: np.random.Generator | None = None,
        hardware: HardwareConfig | None = None,
        faults: FaultMap | None = None,
    ) -> ForwardTrace:
        """All layer voltages for input voltages ``x`` of shape ``(B, n_inputs)`` (V)."""
        g, _ = self.conductances(params, rng, hardware, faults)
        return self.evaluator.forward(g, x)

    def predict(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        rng: np.random.Generator | None = None,
        hardware: HardwareConfig | None = None,
        faults: FaultMap | None = None,
    ) -> np.ndarray:
        """Network output voltages ``(B, n_classes)`` (V)."""
        return self.trace(params, x, rng, hardware, faults).output

    @property
    def logit_gain(self) -> float:
        """``2·c4·sign(c2)`` of the output neuron's static fit (1/V): logit per column volt."""
        act = self.calibration.activation.noninverting
        return 2.0 * act.c4 * float(np.sign(act.c2))

    def logits_of(self, trace: ForwardTrace) -> np.ndarray:
        """Output logits ``z = 2·c4·sign(c2)·(column − c3)`` of the last layer (dimensionless).

        Defined with the calibration's static output fit for every evaluator, so the loss means
        the same under each; ``z`` increases with the output voltage.
        """
        act = self.calibration.activation.noninverting
        return self.logit_gain * (trace.layers[-1].column - act.c3)

    def predict_logits(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        rng: np.random.Generator | None = None,
        hardware: HardwareConfig | None = None,
        faults: FaultMap | None = None,
    ) -> np.ndarray:
        """Output logits ``(B, n_classes)`` (see :meth:`logits_of`)."""
        return self.logits_of(self.trace(params, x, rng, hardware, faults))

    def training_conductances(
        self, params: Sequence[np.ndarray], rng: np.random.Generator | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """The conductances a training step sees (S) and ``∂G/∂σ`` per layer (None: 1):
        levels, faults and, with ``rng``, programming variation."""
        sigmas = [theta_to_conductance(theta, self.window) for theta in params]
        config = self.hardware
        if rng is None and config.variation_sigma > 0:
            config = HardwareConfig(levels=config.levels)
        return realize_conductances(sigmas, self.window, config, self.faults, rng)

    def loss_and_grad(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        labels: np.ndarray,
        loss: Loss,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, list[np.ndarray]]:
        """Loss and exact ``∂loss/∂θ`` per layer (straight-through for quantization); with
        ``drive_power_weight_per_w`` the loss includes that weight times the input drivers'
        mean static power on ``x`` (W)."""
        g, slopes = self.training_conductances(params, rng)
        trace = self.evaluator.forward(g, x)
        if loss.link == "logit":
            value, grad_z = loss.logit_value_and_grad(self.logits_of(trace), labels)
            grad_g = self.evaluator.backward(
                trace, np.zeros_like(trace.output), grad_column=grad_z * self.logit_gain
            )
        else:
            value, grad_out = loss.value_and_grad(trace.output, labels, *self.output_range)
            grad_g = self.evaluator.backward(trace, grad_out)
        if self.drive_power_weight_per_w:
            rails = self.calibration.rails
            power, grad_power = input_drive_power_and_grad(g[0], x, rails.vdd, rails.vss)
            value = value + self.drive_power_weight_per_w * float(np.mean(power))
            grad_g = [grad_g[0] + self.drive_power_weight_per_w * grad_power, *grad_g[1:]]
        grads = []
        for theta, grad, slope in zip(params, grad_g, slopes):
            grad_sigma = grad if slope is None else grad * slope
            grads.append(theta_to_conductance_vjp(theta, self.window, grad_sigma))
        return value, grads


def glorot_params(rng: np.random.Generator, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Glorot-uniform ``(fan_out, fan_in)`` weights, each followed by zero biases: ``[W0, b0, …]``."""
    params: list[np.ndarray] = []
    for fan_out, fan_in in shapes:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-limit, limit, (fan_out, fan_in)))
        params.append(np.zeros(fan_out))
    return params


class TanhMLP:
    """Float baseline: a tanh MLP with unconstrained weights and biases, same topology.

    It takes the same input voltages as the circuit and rescales them to [−1, 1] with the
    rails, so both models see identical data.

    Args:
        topology: layer sizes.
        input_lo: input value mapped to −1 (V, the circuit's vss).
        input_hi: input value mapped to +1 (V, the circuit's vdd).
    """

    def __init__(self, topology: Sequence[int], input_lo: float = -1.0, input_hi: float = 1.0):
        self.shapes = layer_shapes(topology)
        self.topology = (self.shapes[0].n_inputs, *(s.n_outputs for s in self.shapes))
        if not input_hi > input_lo:
            raise ConfigError(f"input range needs hi > lo, got [{input_lo}, {input_hi}]")
        self._mid = 0.5 * (input_hi + input_lo)
        self._half = 0.5 * (input_hi - input_lo)

    @property
    def output_range(self) -> tuple[float, float]:
        """``(−1, 1)``: the tanh range."""
        return -1.0, 1.0

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Glorot-uniform weights and zero biases: ``[W0, b0, W1, b1, …]``."""
        return glorot_params(rng, [(s.n_outputs, s.n_inputs) for s in self.shapes])

    def _forward(
        self, params: Sequence[np.ndarray], x: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Activations of every layer (input first) and the last layer's pre-activation."""
        h = (x - self._mid) / self._half
        activations = [h]
        pre = h
        for index in range(len(self.shapes)):
            pre = h @ params[2 * index].T + params[2 * index + 1]
            h = np.tanh(pre)
            activations.append(h)
        return activations, pre

    def predict(
        self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Outputs in (−1, 1), shape ``(B, n_classes)``."""
        return self._forward(params, x)[0][-1]

    def predict_logits(
        self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Output logits ``z = 2a`` (``a`` the last pre-activation): ``sigmoid(z) = (1 + tanh a)/2``."""
        return 2.0 * self._forward(params, x)[1]

    def loss_and_grad(
        self,
        params: Sequence[np.ndarray],
        x: np.ndarray,
        labels: np.ndarray,
        loss: Loss,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, list[np.ndarray]]:
        """Loss and exact gradients w.r.t. every weight and bias."""
        acts, pre = self._forward(params, x)
        if loss.link == "logit":
            value, grad_z = loss.logit_value_and_grad(2.0 * pre, labels)
            delta = 2.0 * grad_z
        else:
            value, grad = loss.value_and_grad(acts[-1], labels, *self.output_range)
            delta = grad * (1.0 - acts[-1] * acts[-1])
        grads: list[np.ndarray] = [np.empty(0)] * len(params)
        for index in range(len(self.shapes) - 1, -1, -1):
            if index < len(self.shapes) - 1:
                out = acts[index + 1]
                delta = grad * (1.0 - out * out)
            grads[2 * index] = delta.T @ acts[index]
            grads[2 * index + 1] = delta.sum(axis=0)
            if index > 0:
                grad = delta @ params[2 * index]
        return value, grads
