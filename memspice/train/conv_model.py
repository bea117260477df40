"""Trainable models on a :class:`~memspice.network.NetworkSpec`: PHAX crossbars and a float
baseline, for dense and convolutional stacks alike.

:class:`CrossbarNetwork` is the PHAX-constrained network (``σ = g_min + span·sigmoid(θ)``,
``w = σ/Σσ``) evaluated with the static model (rows as ideal sources, one tanh fit per inverter
output). A conv layer's θ is ``(C_out, 2K + 2)``, shared by every output position: the forward
pass reads all positions at once through im2col, and the backward pass sums the gradient over
positions, which is the exact gradient of the replicated kernels. Pools in front of a layer
are applied to its sources (:func:`~memspice.train.conv_ops.layer_taps`); the folded circuit
of :mod:`memspice.network.wiring` computes the same column voltages, and
:meth:`CrossbarNetwork.device_columns` evaluates that circuit device by device to prove it.
With ``evaluator="coupled"`` the same θ drive :mod:`memspice.train.conv_coupled` instead:
that circuit, device by device, with every neuron loaded by the devices it drives.

:class:`TanhConvNet` is the float baseline of the same topology through the same window
operations: unconstrained weights and biases, ``tanh`` neurons, average pooling.

Both follow the interface of :mod:`memspice.train.model` (``init_params``, ``loss_and_grad``,
``predict``, ``predict_logits``, ``output_range``) and take flat inputs ``(B, C·H·W)`` in C
order, so :func:`memspice.train.trainer.train` trains them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, TanhActivation
from memspice.network.spec import DEFAULT_MEMORY_LIMIT_BYTES, NetworkSpec
from memspice.network.wiring import CrossbarWiring, network_wiring
from memspice.train.conv_coupled import DeviceTrace, LayeredCoupledEvaluator
from memspice.train.conv_load_aware import LayeredLoadAwareEvaluator
from memspice.train.conv_ops import (
    columns_to_positions,
    layer_taps,
    layer_taps_backward,
    positions_to_columns,
)
from memspice.train.hardware import HardwareConfig, realize_conductances
from memspice.train.losses import Loss
from memspice.train.model import glorot_params
from memspice.train.mapping import (
    ConductanceWindow,
    theta_to_conductance,
    theta_to_conductance_vjp,
)


@dataclass(frozen=True, slots=True)
class CrossbarState:
    """Voltages of one crossbar layer for a batch (V).

    Attributes:
        rows: ``(B, positions, 2K + 2)`` row voltages each column reads, wiring order
            ``[ip taps, in taps, VDD, VSS]`` (after pooling).
        column: ``(B, n_columns)`` column voltages, physical column order ``(c, row, col)``.
        outn: ``(B, n_columns)`` inverted outputs.
        outp: ``(B, n_columns)`` non-inverted outputs.
    """

    rows: np.ndarray
    column: np.ndarray
    outn: np.ndarray
    outp: np.ndarray


@dataclass(frozen=True, slots=True)
class CrossbarTrace:
    """Per-layer voltages and the conductances (σ, 0 where masked) that produced them."""

    layers: tuple[CrossbarState, ...]
    conductances: tuple[np.ndarray, ...]

    @property
    def output(self) -> np.ndarray:
        """Last layer's ``outp`` (V), ``(B, n_classes)``."""
        return self.layers[-1].outp


def _slope(act: TanhActivation, out: np.ndarray) -> np.ndarray:
    t = (out - act.c1) / act.c2
    return (act.c2 * act.c4) * (1.0 - t * t)


class CrossbarNetwork:
    """A PHAX crossbar network of any :class:`NetworkSpec`, trained through ``θ → σ → w``.

    Args:
        calibration: rails, activation fits and device window.
        spec: the network (``NetworkSpec.dense(topology)`` for today's MLPs).
        hardware: quantization (per θ, straight-through). Device variation is per physical
            device and so is refused for layers whose θ feed several devices (conv, pooled).
        evaluator: ``"static"``, ``"load-aware"`` (each neuron's tanh at the load of the
            devices it drives: :mod:`memspice.train.conv_load_aware`; needs a calibration with
            a load-aware activation), or ``"coupled"`` (every neuron loaded by the devices it
            drives, solved by Newton: :mod:`memspice.train.conv_coupled`; needs a calibration
            with an inverter current model).
        init_std: standard deviation of the initial θ.
        init_mean: mean of the initial θ.
        batch_size: the batch the memory check assumes (samples).
        memory_limit_bytes: refuse networks whose estimate exceeds this (bytes).

    Raises:
        ConfigError: an evaluator or hardware setting these layers do not support yet, or a
            per-device mask (only θ masks keep the weight sharing the trainer relies on).
        NetworkError: the network is too large (the message quotes the estimate).
    """

    def __init__(self, calibration: Calibration, spec: NetworkSpec,
                 hardware: HardwareConfig = HardwareConfig(), evaluator: str = "static",
                 init_std: float = 1.0, init_mean: float = 0.0, batch_size: int = 64,
                 memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES) -> None:
        if evaluator not in ("static", "coupled", "load-aware"):
            raise ConfigError(f"the {evaluator!r} evaluator does not take layer-described "
                              f"networks yet; use 'static', 'load-aware' or 'coupled'")
        spec.check_size(batch_size, memory_limit_bytes)
        shared = any(p.positions > 1 or p.fold > 1 for p in spec.plans)
        if hardware.variation_sigma > 0 and shared:
            raise ConfigError("device variation for conv or pooled layers needs the per-device "
                              "evaluator, which is not built yet")
        if any(m is not None and m.device is not None for m in spec.masks):
            raise ConfigError("per-device masks are not trainable yet (use θ masks)")
        self.calibration = calibration
        self.spec = spec
        self.plans = spec.plans
        self.hardware = hardware
        self.window = ConductanceWindow(calibration.device.g_min_siemens,
                                        calibration.device.g_max_siemens)
        self._theta_masks = [None if m is None else m.theta.astype(np.float64)
                             if m.theta is not None else None
                             for m in (spec.masks or (None,) * len(spec.plans))]
        self._inv = calibration.activation.inverting
        self._non = calibration.activation.noninverting
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss
        self.init_std = float(init_std)
        self.init_mean = float(init_mean)
        self.evaluator = evaluator
        self._coupled: LayeredCoupledEvaluator | LayeredLoadAwareEvaluator | None = None
        if evaluator == "coupled":
            self._coupled = LayeredCoupledEvaluator(calibration, network_wiring(spec))
        elif evaluator == "load-aware":
            self._coupled = LayeredLoadAwareEvaluator(calibration, network_wiring(spec))

    @property
    def output_range(self) -> tuple[float, float]:
        """``(vss, vdd)`` (V)."""
        return self._vss, self._vdd

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random θ per crossbar layer, each ``plan.theta_shape``."""
        return [self.init_mean + self.init_std * rng.standard_normal(p.theta_shape)
                for p in self.plans]

    # ---- conductances ------------------------------------------------------------------

    def conductances(self, params: Sequence[np.ndarray], rng: np.random.Generator | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """σ per layer after quantization (and dense variation), 0 where masked (S), and the
        straight-through slopes ``∂G/∂σ``."""
        config = self.hardware
        if rng is None and config.variation_sigma > 0:
            config = HardwareConfig(levels=config.levels)
        sigmas = [theta_to_conductance(theta, self.window) for theta in params]
        g, slopes = realize_conductances(sigmas, self.window, config, None, rng)
        masked, masked_slopes = [], []
        for gi, slope, mask in zip(g, slopes, self._theta_masks):
            if mask is not None:
                gi = gi * mask
                slope = mask if slope is None else slope * mask
            masked.append(gi)
            masked_slopes.append(slope)
        return masked, masked_slopes

    # ---- static evaluator --------------------------------------------------------------

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray
                ) -> CrossbarTrace | DeviceTrace:
        """All layer voltages for flat input voltages ``x`` ``(B, n_inputs)`` (V), with the
        model's evaluator (``conductances``: σ per θ, S)."""
        if self._coupled is not None:
            return self._coupled.forward(conductances, np.asarray(x, dtype=np.float64))
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.spec.n_inputs:
            raise ConfigError(f"network takes {self.spec.n_inputs} inputs per sample, got "
                              f"an array of shape {x.shape}")
        batch = x.shape[0]
        v_pos, v_neg = x, -x
        layers = []
        for plan, g in zip(self.plans, conductances):
            taps = layer_taps(plan, np.concatenate([v_pos, v_neg]))
            rows = np.empty((batch, plan.positions, 2 * plan.taps + 2))
            rows[..., : plan.taps] = taps[:batch]
            rows[..., plan.taps : 2 * plan.taps] = taps[batch:]
            rows[..., -2] = self._vdd
            rows[..., -1] = self._vss
            weights = g / g.sum(axis=1, keepdims=True)
            column = positions_to_columns(rows @ weights.T)
            outn = self._inv(column)
            outp = self._non(column)
            layers.append(CrossbarState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return CrossbarTrace(tuple(layers), tuple(conductances))

    def backward(self, trace: CrossbarTrace | DeviceTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂σ`` per layer (1/S), summed over positions (weight sharing)."""
        if isinstance(trace, DeviceTrace):
            if self._coupled is None:
                raise ConfigError("a per-device trace needs the coupled or load-aware evaluator")
            return self._coupled.backward(trace, grad_output, grad_column)
        grads: list[np.ndarray] = [np.empty(0)] * len(trace.layers)
        grad_outp = grad_output
        grad_outn: np.ndarray | None = None
        for index in range(len(trace.layers) - 1, -1, -1):
            plan, state, g = self.plans[index], trace.layers[index], trace.conductances[index]
            delta = grad_outp * _slope(self._non, state.outp)
            if grad_outn is not None:
                delta = delta + grad_outn * _slope(self._inv, state.outn)
            elif grad_column is not None:
                delta = delta + grad_column
            total = g.sum(axis=1)
            width = state.rows.shape[-1]
            rows = state.rows.reshape(-1, width)
            delta_p = columns_to_positions(delta, plan.channels).reshape(-1, plan.channels)
            column_p = columns_to_positions(state.column, plan.channels).reshape(-1, plan.channels)
            # V = Σ_k G_k R_k / S  ⇒  ∂V/∂G_k = (R_k − V)/S, summed over every position.
            grads[index] = (delta_p.T @ rows
                            - (delta_p * column_p).sum(axis=0)[:, None]) / total[:, None]
            if index > 0:
                batch = delta.shape[0]
                grad_rows = (delta_p @ (g / total[:, None])).reshape(batch, plan.positions, width)
                k = plan.taps
                both = layer_taps_backward(
                    plan, np.concatenate([grad_rows[..., :k], grad_rows[..., k : 2 * k]]))
                grad_outp, grad_outn = both[:batch], both[batch:]
        return grads

    def trace(self, params: Sequence[np.ndarray], x: np.ndarray,
              rng: np.random.Generator | None = None) -> CrossbarTrace | DeviceTrace:
        """All layer voltages for θ ``params`` (V)."""
        return self.forward(self.conductances(params, rng)[0], x)

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        return self.trace(params, x, rng).output

    @property
    def logit_gain(self) -> float:
        """``2·c4·sign(c2)`` of the output neuron's static fit (1/V)."""
        return 2.0 * self._non.c4 * float(np.sign(self._non.c2))

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """Output logits ``2·c4·sign(c2)·(column − c3)`` (as :class:`PhaxNetwork`)."""
        column = self.trace(params, x, rng).layers[-1].column
        return self.logit_gain * (column - self._non.c3)

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray,
                      loss: Loss, rng: np.random.Generator | None = None
                      ) -> tuple[float, list[np.ndarray]]:
        """Loss and exact ``∂loss/∂θ`` per layer (straight-through for quantization)."""
        g, slopes = self.conductances(params, rng)
        trace = self.forward(g, x)
        if loss.link == "logit":
            logits = self.logit_gain * (trace.layers[-1].column - self._non.c3)
            value, grad_z = loss.logit_value_and_grad(logits, labels)
            grad_g = self.backward(trace, np.zeros_like(trace.output),
                                   grad_column=grad_z * self.logit_gain)
        else:
            value, grad_out = loss.value_and_grad(trace.output, labels, *self.output_range)
            grad_g = self.backward(trace, grad_out)
        grads = []
        for theta, grad, slope in zip(params, grad_g, slopes):
            grad_sigma = grad if slope is None else grad * slope
            grads.append(theta_to_conductance_vjp(theta, self.window, grad_sigma))
        return value, grads

    # ---- the folded circuit, device by device ------------------------------------------

    def wiring(self) -> tuple[CrossbarWiring, ...]:
        """Per-device wiring of every crossbar layer (with the spec's masks)."""
        return network_wiring(self.spec)

    def device_columns(self, conductances: Sequence[np.ndarray], x: np.ndarray,
                       device_conductances: Sequence[np.ndarray] | None = None
                       ) -> list[np.ndarray]:
        """Column voltages of every layer evaluated on the physical circuit (V).

        Each column is the conductance-weighted mean over its own devices, pooling folded in
        as :mod:`memspice.network.wiring` describes; rows are ideal sources and neurons the
        static fits. With ``device_conductances`` (per-device arrays, e.g. after variation)
        replicas may differ; otherwise every device is its θ's σ times its scale.
        """
        x = np.asarray(x, dtype=np.float64)
        v_pos, v_neg = x, -x
        columns = []
        for index, wiring in enumerate(self.wiring()):
            g = (wiring.conductances(conductances[index]) if device_conductances is None
                 else np.asarray(device_conductances[index]))
            column = wiring.column_voltages(g, v_pos, v_neg, self._vdd, self._vss)
            columns.append(column)
            v_pos, v_neg = self._non(column), self._inv(column)
        return columns


class TanhConvNet:
    """Float baseline of a :class:`NetworkSpec`: tanh neurons, free weights and biases.

    Inputs are rescaled from ``[input_lo, input_hi]`` to ``[−1, 1]``; each crossbar layer is
    ``tanh(W·taps + b)`` with ``W`` ``(channels, K)`` shared over positions, pools are
    averages, exactly the window operations of :class:`CrossbarNetwork`.

    Args:
        spec: the network.
        input_lo: input value mapped to −1.
        input_hi: input value mapped to +1.
        batch_size: the batch the memory check assumes (samples).
        memory_limit_bytes: refuse networks whose estimate exceeds this (bytes).
    """

    def __init__(self, spec: NetworkSpec, input_lo: float = -1.0, input_hi: float = 1.0,
                 batch_size: int = 64,
                 memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES) -> None:
        spec.check_size(batch_size, memory_limit_bytes)
        if not input_hi > input_lo:
            raise ConfigError(f"input range needs hi > lo, got [{input_lo}, {input_hi}]")
        if any(m is not None for m in spec.masks):
            raise ConfigError("the float baseline takes no masks")
        self.spec = spec
        self.plans = spec.plans
        self._mid = 0.5 * (input_hi + input_lo)
        self._half = 0.5 * (input_hi - input_lo)

    @property
    def output_range(self) -> tuple[float, float]:
        """``(−1, 1)``."""
        return -1.0, 1.0

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Glorot-uniform ``W`` (fan-in K, fan-out channels) and zero ``b``: ``[W0, b0, …]``."""
        return glorot_params(rng, [(plan.channels, plan.taps) for plan in self.plans])

    def _forward(self, params: Sequence[np.ndarray], x: np.ndarray
                 ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        h = (np.asarray(x, dtype=np.float64) - self._mid) / self._half
        if h.ndim != 2 or h.shape[1] != self.spec.n_inputs:
            raise ConfigError(f"network takes {self.spec.n_inputs} inputs per sample, got "
                              f"an array of shape {h.shape}")
        activations, taps_seen = [h], []
        pre = h
        for index, plan in enumerate(self.plans):
            taps = layer_taps(plan, h)
            taps_seen.append(taps)
            pre = positions_to_columns(taps @ params[2 * index].T + params[2 * index + 1])
            h = np.tanh(pre)
            activations.append(h)
        return activations, taps_seen, pre

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """Outputs in (−1, 1), ``(B, n_classes)``."""
        return self._forward(params, x)[0][-1]

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """``z = 2a`` of the last pre-activation ``a``."""
        return 2.0 * self._forward(params, x)[2]

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray,
                      loss: Loss, rng: np.random.Generator | None = None
                      ) -> tuple[float, list[np.ndarray]]:
        """Loss and exact gradients w.r.t. every weight and bias (summed over positions)."""
        acts, taps_seen, pre = self._forward(params, x)
        if loss.link == "logit":
            value, grad_z = loss.logit_value_and_grad(2.0 * pre, labels)
            delta = 2.0 * grad_z
        else:
            value, grad = loss.value_and_grad(acts[-1], labels, *self.output_range)
            delta = grad * (1.0 - acts[-1] * acts[-1])
        grads: list[np.ndarray] = [np.empty(0)] * len(params)
        for index in range(len(self.plans) - 1, -1, -1):
            plan = self.plans[index]
            if index < len(self.plans) - 1:
                out = acts[index + 1]
                delta = grad * (1.0 - out * out)
            delta_p = columns_to_positions(delta, plan.channels)  # (B, positions, channels)
            taps = taps_seen[index]
            grads[2 * index] = np.einsum("bpc,bpk->ck", delta_p, taps)
            grads[2 * index + 1] = delta_p.sum(axis=(0, 1))
            if index > 0:
                grad = layer_taps_backward(plan, delta_p @ params[2 * index])
        return value, grads
