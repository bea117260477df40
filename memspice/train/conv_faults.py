"""Fault-aware training of layer-described networks (conv, pooled, dense): stuck devices known
device by device.

A conv kernel's θ is shared by every output position, but each position is a separate
physical device (:mod:`memspice.network.wiring`). A stuck device is one such replica held at a
fixed conductance: the top or the bottom of *its* window (``scale`` times the calibration's,
so a folded pool's device sticks at ``g/P²``). It breaks the weight sharing at that position
only: the other replicas still follow θ.

:class:`FaultAwareCrossbarNetwork` is :class:`~memspice.train.conv_model.CrossbarNetwork` with
a per-device :class:`~memspice.train.hardware.FaultMap` (one ``(n_columns, D)`` pair of masks
per crossbar layer, as :func:`~memspice.train.layered_devices.seeded_device_faults` draws and
:func:`~memspice.train.layered_devices.draw_devices` builds). Its forward pass places every θ's
σ (after quantization) on its devices, overwrites the stuck ones, and runs a per-device
evaluator: :class:`StaticDeviceEvaluator` (rows ideal, one static tanh fit per inverter), the
``load-aware`` one (:mod:`memspice.train.conv_load_aware`) or the ``coupled`` one
(:mod:`memspice.train.conv_coupled`). Its backward pass takes that evaluator's per-device
gradient ``∂L/∂G``, zeroes it on stuck devices (their conductance does not depend on θ) and
sums the rest over each θ's healthy replicas
(:func:`~memspice.network.wiring.theta_gradient`): the exact gradient of the faulty circuit's
model. Stuck devices still load the neurons that drive them and still count in their
column's ``Σ G``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.spec import NetworkSpec
from memspice.network.wiring import CrossbarWiring, network_wiring, theta_gradient
from memspice.train.conv_coupled import (
    DeviceLayerState,
    DeviceTrace,
    _column_vjp,
    device_matrices,
)
from memspice.train.conv_model import CrossbarNetwork, _slope
from memspice.train.fault_map import check_layer_faults
from memspice.train.hardware import FaultMap, HardwareConfig
from memspice.train.mapping import ConductanceWindow, conductance_to_theta, theta_to_conductance

if TYPE_CHECKING:
    from memspice.train.conv_io import TrainedCrossbarNetwork


def stuck_conductances(wirings: Sequence[CrossbarWiring], faults: FaultMap,
                       window: ConductanceWindow) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per layer ``(stuck, value)``: which present devices are stuck, ``(n_columns, D)`` bool,
    and the conductance they are stuck at (S): ``scale·g_max`` or ``scale·g_min``."""
    out = []
    for wiring, high, low in zip(wirings, faults.stuck_high, faults.stuck_low):
        high = np.asarray(high, dtype=bool) & wiring.present
        low = np.asarray(low, dtype=bool) & wiring.present
        value = wiring.scale * np.where(high, window.g_max_siemens, window.g_min_siemens)
        out.append((high | low, np.where(high | low, value, 0.0)))
    return tuple(out)


class StaticDeviceEvaluator:
    """Rows as ideal sources, one static tanh fit per inverter, device by device.

    The static model of :class:`~memspice.train.conv_model.CrossbarNetwork` on per-device
    conductances, so replicas of one θ may differ (stuck devices).

    Args:
        calibration: rails and the static activation fits.
        wirings: per crossbar layer, its wiring.
    """

    name = "static"

    def __init__(self, calibration: Calibration, wirings: Sequence[CrossbarWiring]) -> None:
        self.wirings = tuple(wirings)
        self._inv = calibration.activation.inverting
        self._non = calibration.activation.noninverting
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss

    def forward_devices(self, devices: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """Every layer's voltages for per-device conductances (S) and inputs ``(B, S₀)`` (V).

        Raises:
            ConfigError: wrong number of layers or inputs.
        """
        x, matrices = device_matrices(self.wirings, devices, x)
        v_pos, v_neg = x, -x
        layers = []
        for wiring, matrix in zip(self.wirings, matrices):
            rows = wiring.row_source_voltages(v_pos, v_neg, self._vdd, self._vss)
            column = rows @ (matrix / matrix.sum(axis=1, keepdims=True)).T
            outn, outp = self._inv(column), self._non(column)
            layers.append(DeviceLayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return DeviceTrace(tuple(layers), tuple(np.asarray(g) for g in devices), matrices)

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
        grad_p = np.asarray(grad_output, dtype=np.float64)
        grad_n: np.ndarray | None = None
        out: list[np.ndarray] = [np.empty(0)] * len(matrices)
        for index in range(last, -1, -1):
            state = trace.layers[index]
            grad_col = grad_p * _slope(self._non, state.outp)
            if grad_n is not None:
                grad_col = grad_col + grad_n * _slope(self._inv, state.outn)
            if index == last and grad_column is not None:
                grad_col = grad_col + grad_column
            grad_g, grad_rows = _column_vjp(matrices[index], state.rows, state.column, grad_col)
            wiring = self.wirings[index]
            per_device = np.take_along_axis(grad_g, wiring.source, axis=1)
            out[index] = np.where(wiring.present, per_device, 0.0)
            s = wiring.plan.n_sources
            grad_p, grad_n = grad_rows[:, :s], grad_rows[:, s : 2 * s]
        return out


class FaultAwareCrossbarNetwork(CrossbarNetwork):
    """A :class:`CrossbarNetwork` whose devices include known stuck ones, trained around them.

    Args:
        calibration: rails, activation fits and device window.
        spec: the network.
        faults: per-device stuck masks, one ``(n_columns, D)`` pair per crossbar layer
            (:func:`~memspice.train.layered_devices.seeded_device_faults`).
        hardware: quantization (per θ, straight-through); no variation for shared layers.
        evaluator: ``"static"``, ``"load-aware"`` or ``"coupled"`` (as
            :class:`CrossbarNetwork`), each run device by device.
        **kwargs: ``init_std``, ``init_mean``, ``batch_size``, ``memory_limit_bytes``.

    Raises:
        ConfigError: a map that does not fit the network (naming the layer), or what
            :class:`CrossbarNetwork` refuses.
    """

    def __init__(self, calibration: Calibration, spec: NetworkSpec, faults: FaultMap,
                 hardware: HardwareConfig = HardwareConfig(), evaluator: str = "static",
                 **kwargs: float | int) -> None:
        super().__init__(calibration, spec, hardware, evaluator, **kwargs)  # type: ignore[arg-type]
        check_layer_faults(faults, spec)
        self.faults = faults
        self._wirings = network_wiring(spec)
        self._stuck = stuck_conductances(self._wirings, faults, self.window)
        self._devices = (self._coupled if self._coupled is not None
                         else StaticDeviceEvaluator(calibration, self._wirings))

    def device_conductances(self, conductances: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-device conductances ``(n_columns, D)`` (S; 0 = absent) for σ per θ: every
        replica at its θ's σ times its scale, stuck devices at their stuck value."""
        return [np.where(stuck, value, wiring.conductances(sigma))
                for wiring, sigma, (stuck, value) in zip(self._wirings, conductances, self._stuck)]

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """All layer voltages for σ per θ (S) and flat inputs ``(B, n_inputs)`` (V), with the
        map's devices stuck."""
        return self._devices.forward_devices(self.device_conductances(conductances),
                                             np.asarray(x, dtype=np.float64))

    def backward(self, trace: DeviceTrace, grad_output: np.ndarray,  # type: ignore[override]
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂σ`` per θ (1/S), summed over the θ's healthy replicas only."""
        grads = self._devices.backward_devices(trace, grad_output, grad_column)
        return [theta_gradient(wiring, np.where(stuck, 0.0, grad))
                for wiring, grad, (stuck, _) in zip(self._wirings, grads, self._stuck)]


def replica_thetas(wirings: Sequence[CrossbarWiring], conductances: Sequence[np.ndarray],
                   window: ConductanceWindow, clip: float = 40.0) -> list[np.ndarray]:
    """Per-device θ ``(n_columns, D)`` of every layer from σ per θ (S): every replica starts at
    its kernel entry's θ (clipped to ``±clip``: a σ exactly on a window edge has no finite θ)."""
    out = []
    for wiring, sigma in zip(wirings, conductances):
        theta = np.clip(conductance_to_theta(np.asarray(sigma, dtype=np.float64), window), -clip, clip)
        out.append(theta.ravel()[wiring.theta_index].copy())
    return out


class ReplicaFaultAwareNetwork(FaultAwareCrossbarNetwork):
    """Fault-aware training with every physical device programmed on its own.

    A kernel's replicas are separate memristors, each programmed to its own conductance; only
    the training of :class:`FaultAwareCrossbarNetwork` ties them to one θ. With a known map the
    replicas next to a stuck device can be programmed differently from the others, so the
    column they share with it compensates it. Here θ is per device: one ``(n_columns, D)``
    array per crossbar layer, device ``G = scale·(g_min + span·sigmoid(θ))`` (the device's own
    window: ``scale`` is ``1/P²`` for a folded pool's device), stuck devices at their stuck
    value, absent devices 0 S. The gradient of a device's θ is the evaluator's ``∂L/∂G`` of
    that device times ``scale·∂σ/∂θ``; stuck and absent devices get none.

    The trained network is a set of device conductances (:meth:`devices`), validated with
    ``device_conductances`` (:func:`memspice.validate.api.validate_network`); start it from a
    shared-θ network with :func:`replica_thetas`.

    Args:
        calibration: rails, activation fits and device window.
        spec: the network.
        faults: per-device stuck masks, one ``(n_columns, D)`` pair per crossbar layer.
        evaluator: ``"static"``, ``"load-aware"`` or ``"coupled"``, run device by device.
        **kwargs: ``init_std``, ``init_mean``, ``batch_size``, ``memory_limit_bytes``.

    Raises:
        ConfigError: a map that does not fit the network, or what :class:`CrossbarNetwork`
            refuses.
    """

    def __init__(self, calibration: Calibration, spec: NetworkSpec, faults: FaultMap,
                 evaluator: str = "static", **kwargs: float | int) -> None:
        super().__init__(calibration, spec, faults, HardwareConfig(), evaluator, **kwargs)
        self._healthy = [wiring.present & ~stuck for wiring, (stuck, _) in zip(self._wirings, self._stuck)]

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random θ per device, ``(n_columns, D)`` per layer."""
        return [self.init_mean + self.init_std * rng.standard_normal(w.present.shape) for w in self._wirings]

    def conductances(self, params: Sequence[np.ndarray], rng: np.random.Generator | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """σ of every device's θ (S, before its scale; no quantization), and no slopes."""
        self._check(params)
        return [theta_to_conductance(np.asarray(t, dtype=np.float64), self.window) for t in params], \
            [None] * len(params)

    def device_conductances(self, conductances: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-device conductances ``(n_columns, D)`` (S; 0 = absent) for σ per device: each
        device at ``scale·σ``, stuck devices at their stuck value."""
        return [np.where(stuck, value, np.where(wiring.present, wiring.scale * sigma, 0.0))
                for wiring, sigma, (stuck, value) in zip(self._wirings, conductances, self._stuck)]

    def backward(self, trace: DeviceTrace, grad_output: np.ndarray,  # type: ignore[override]
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂σ`` per device (1/S), 0 on stuck and absent devices."""
        grads = self._devices.backward_devices(trace, grad_output, grad_column)
        return [np.where(healthy, wiring.scale * grad, 0.0)
                for wiring, grad, healthy in zip(self._wirings, grads, self._healthy)]

    def devices(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The conductances to build (S; 0 = absent), stuck devices at their stuck value."""
        return self.device_conductances(self.conductances(params)[0])

    def programmed(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The conductance programmed into every device, ``(n_columns, D)`` per layer (S; 0 =
        absent): ``scale·σ(θ)``, stuck devices included (they never reach it: the map holds
        them at their stuck value, :meth:`devices`)."""
        return [np.where(wiring.present, wiring.scale * sigma, 0.0)
                for wiring, sigma in zip(self._wirings, self.conductances(params)[0])]

    def trained_network(self, params: Sequence[np.ndarray], start: Sequence[np.ndarray],
                        metadata: dict | None = None) -> "TrainedCrossbarNetwork":
        """The network to save (format version 3): the programmed devices, the fault map and,
        per θ, the mean σ of its healthy replicas (``start``, σ per θ in S, where it has none).

        Args:
            params: per-device θ.
            start: σ per θ (S) the training started from, ``plan.theta_shape`` per layer.
            metadata: JSON-safe training summary.
        """
        from memspice.train.conv_io import TrainedCrossbarNetwork

        programmed = self.programmed(params)
        means = []
        for wiring, g, healthy, fallback in zip(self._wirings, programmed, self._healthy, start):
            index = wiring.theta_index[healthy]
            size = int(np.prod(wiring.plan.theta_shape))
            total = np.bincount(index, weights=(g / wiring.scale)[healthy], minlength=size)
            count = np.bincount(index, minlength=size)
            fallback = np.asarray(fallback, dtype=np.float64).ravel()
            mean = np.where(count > 0, total / np.maximum(count, 1), fallback)
            means.append(mean.reshape(wiring.plan.theta_shape))
        return TrainedCrossbarNetwork(self.spec, tuple(means), self.calibration, self.evaluator, self.faults,
                                      dict(metadata or {}), tuple(programmed))

    def _check(self, params: Sequence[np.ndarray]) -> None:
        want = [w.present.shape for w in self._wirings]
        got = [np.shape(p) for p in params]
        if got != want:
            raise ConfigError(f"per-device θ shapes {got} do not match the layers' devices {want}")
