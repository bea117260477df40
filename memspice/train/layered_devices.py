"""Per-device non-idealities of a layered network (dense, conv, pooled, masked).

A trained :class:`~memspice.train.conv_io.TrainedCrossbarNetwork` shares one θ between every
position of a conv kernel and every folded device of a pool, but the circuit has a separate
memristor for each (:mod:`memspice.network.wiring`). Programming it is drawn here device by
device, as the hardware would realize it:

1. **levels**: each θ's target σ is rounded to one of ``levels`` uniform conductance levels of
   the device window (:func:`~memspice.train.mapping.quantize_conductance`, the dense code's
   quantizer); two devices of ``levels`` levels (the ``ip``/``in`` rows of a tap) give
   ``2·levels − 1`` signed weight levels;
2. **programming variation**: every physical device gets its own lognormal factor
   (:func:`~memspice.validate.nonideal.programming_variation`, the dense validation's draw),
   clipped into its window, so replicas of one kernel entry differ;
3. **stuck-at faults**: drawn per device (:func:`~memspice.validate.nonideal.stuck_at_draw`)
   or given as a per-device :class:`~memspice.train.hardware.FaultMap`; a stuck device sits
   at exactly the top or bottom of its window.

A device's window is its wiring ``scale`` times the calibration's window: a folded pool's
``P²`` devices are each built ``P²`` times smaller (``σ/P²``), so its levels, clipping and
stuck values are those of the device that is actually there. Absent (masked) devices stay at
0 S and are never stuck. The result is the per-device ``(n_columns, D)`` conductances that
:func:`memspice.train.conv_circuit.crossbar_devices` netlists and :func:`device_trace` models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError
from memspice.network.spec import NetworkSpec
from memspice.network.wiring import CrossbarWiring, network_wiring
from memspice.train.conv_coupled import DeviceLayerState, DeviceTrace, LayeredCoupledEvaluator
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.fault_map import FAULT_STREAM, check_layer_faults
from memspice.train.hardware import FaultMap
from memspice.train.mapping import ConductanceWindow, quantize_conductance
from memspice.train.device_draws import DeviceDraw, programming_variation, stuck_at_draw

#: Second element of the generator seed ``[seed, VARIATION_STREAM]`` of the variation draw
#: (faults use :data:`~memspice.train.fault_map.FAULT_STREAM`), so the two draws are
#: independent and each reproducible on its own.
VARIATION_STREAM = 7


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """How the devices of a network are programmed.

    Attributes:
        levels: conductance levels per device, uniform in conductance over the device window
            inclusive (0 = continuous). 8 levels per device give 15 signed levels per tap.
        variation_sigma: lognormal sigma of the per-device programming variation
            (dimensionless, e.g. 0.05 ≈ 5 %); 0 disables it.
        fault_rate: fraction of present devices drawn stuck (half at the top of their window,
            half at the bottom), in [0, 1].
        seed: seed of the variation and fault draws.
    """

    levels: int = 0
    variation_sigma: float = 0.0
    fault_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.levels, bool) or not isinstance(self.levels, (int, np.integer)) \
                or self.levels < 0 or self.levels == 1:
            raise ConfigError(f"levels must be 0 (continuous) or at least 2, got {self.levels!r}")
        if not (np.isfinite(self.variation_sigma) and self.variation_sigma >= 0):
            raise ConfigError(f"device variation must be a non-negative number, got "
                              f"{self.variation_sigma!r}")
        if not (np.isfinite(self.fault_rate) and 0 <= self.fault_rate <= 1):
            raise ConfigError(f"fault rate must be in [0, 1], got {self.fault_rate!r}")

    def as_dict(self) -> dict[str, float | int]:
        """JSON-safe description."""
        return {"levels": int(self.levels), "variation_sigma": float(self.variation_sigma),
                "fault_rate": float(self.fault_rate), "seed": int(self.seed)}


def device_window(wiring: CrossbarWiring, window: ConductanceWindow
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` ends of every device's window, ``(n_columns, D)`` (S): its ``scale``
    times the calibration's window."""
    return wiring.scale * window.g_min_siemens, wiring.scale * window.g_max_siemens


def target_layer_devices(wiring: CrossbarWiring, sigma: np.ndarray, window: ConductanceWindow,
                         levels: int) -> np.ndarray:
    """The per-device conductances to program, ``(n_columns, D)`` (S; 0 = absent): σ per θ
    rounded to ``levels`` (0 = continuous), then placed on every device that carries it."""
    return wiring.conductances(quantize_conductance(np.asarray(sigma, dtype=np.float64), window,
                                                    levels))


def program_layer(wiring: CrossbarWiring, sigma: np.ndarray, window: ConductanceWindow,
                  levels: int, variation_sigma: float, rng: np.random.Generator | None,
                  stuck_high: np.ndarray | None = None, stuck_low: np.ndarray | None = None
                  ) -> np.ndarray:
    """Program one crossbar layer: levels, then per-device variation, then stuck devices.

    Args:
        wiring: the layer's wiring.
        sigma: target σ per θ, ``plan.theta_shape`` (S).
        window: the calibration's device window (S).
        levels: conductance levels per device (0 = continuous).
        variation_sigma: lognormal sigma (0 = none; then ``rng`` may be None).
        rng: generator of the variation draw (one normal per device slot, present or not).
        stuck_high: ``(n_columns, D)`` devices stuck at the top of their window, or None.
        stuck_low: ``(n_columns, D)`` devices stuck at the bottom, or None.

    Returns:
        ``(n_columns, D)`` conductances (S), 0 where a device is absent.
    """
    g = target_layer_devices(wiring, sigma, window, levels)
    low, high = device_window(wiring, window)
    if variation_sigma > 0:
        if rng is None:
            raise ConfigError("device variation needs a random generator")
        g = programming_variation(g, variation_sigma, rng, low, high)
    if stuck_high is not None:
        g = np.where(stuck_high, high, g)
    if stuck_low is not None:
        g = np.where(stuck_low, low, g)
    return np.where(wiring.present, g, 0.0)


def device_shapes(network: TrainedCrossbarNetwork) -> tuple[tuple[int, int], ...]:
    """``(n_columns, D)`` of every crossbar layer: the shapes of a per-device fault map."""
    return tuple((p.n_columns, p.devices_per_column) for p in network.spec.plans)


def seeded_device_faults(network: TrainedCrossbarNetwork | NetworkSpec, rate: float, seed: int
                         ) -> FaultMap:
    """Stuck-at faults per physical device at ``rate`` (half high, half low), reproducible
    from ``seed``; absent devices are never stuck.

    Args:
        network: the trained network, or just its :class:`~memspice.network.NetworkSpec`.
        rate: fraction of present devices stuck, in [0, 1].
        seed: seed of the draw.

    Raises:
        ConfigError: a rate outside [0, 1].
    """
    if not (np.isfinite(rate) and 0 <= rate <= 1):
        raise ConfigError(f"fault rate must be in [0, 1], got {rate!r}")
    spec = network if isinstance(network, NetworkSpec) else network.spec
    rng = np.random.default_rng([int(seed), FAULT_STREAM])
    highs, lows = [], []
    for wiring in network_wiring(spec):
        high, low = stuck_at_draw(wiring.present.shape, rate, rng)
        highs.append(high & wiring.present)
        lows.append(low & wiring.present)
    return FaultMap(tuple(highs), tuple(lows), rate / 2, rate / 2, int(seed))


def check_device_faults(faults: FaultMap, network: TrainedCrossbarNetwork) -> None:
    """Raise unless ``faults`` has one ``(n_columns, D)`` mask per crossbar layer.

    Raises:
        ConfigError: naming the first layer whose shape differs, or the layer counts
            (:func:`~memspice.train.fault_map.check_layer_faults`).
    """
    check_layer_faults(faults, network.spec, "device fault map")


def draw_devices(network: TrainedCrossbarNetwork, settings: DeviceSettings,
                 faults: FaultMap | None = None) -> DeviceDraw:
    """Per-device conductances of ``network`` programmed with ``settings``.

    Every physical device is drawn independently: kernel replicas at different positions and
    the folded devices of a pool get their own variation factor and fault draw. The same
    ``settings`` always give the same draw. Drawn faults (``settings.fault_rate``) and a known
    per-device map ``faults`` are combined (a device of the map keeps its map state).

    Args:
        network: the trained network (σ per θ; its θ masks and device masks are respected).
        settings: levels, variation, fault rate and seed.
        faults: known stuck devices, one ``(n_columns, D)`` pair of masks per layer, or None.

    Returns:
        A :class:`~memspice.validate.nonideal.DeviceDraw`: per layer ``(n_columns, D)``
        conductances (S; 0 = absent) and the stuck masks.

    Raises:
        ConfigError: ``faults`` does not fit the network.
    """
    wirings = network_wiring(network.spec)
    if faults is not None:
        check_device_faults(faults, network)
    drawn = (seeded_device_faults(network, settings.fault_rate, settings.seed)
             if settings.fault_rate > 0 else None)
    rng = np.random.default_rng([int(settings.seed), VARIATION_STREAM])
    out, highs, lows = [], [], []
    for index, (wiring, sigma) in enumerate(zip(wirings, network.conductances)):
        high = np.zeros(wiring.present.shape, dtype=bool)
        low = np.zeros_like(high)
        if drawn is not None:
            high, low = drawn.stuck_high[index], drawn.stuck_low[index]
        if faults is not None:
            known_high = np.asarray(faults.stuck_high[index], dtype=bool)
            known_low = np.asarray(faults.stuck_low[index], dtype=bool)
            high = (high & ~known_low) | known_high
            low = (low & ~known_high) | known_low
        high, low = high & wiring.present, low & wiring.present
        out.append(program_layer(wiring, sigma, network.window, settings.levels,
                                 settings.variation_sigma, rng, high, low))
        highs.append(high)
        lows.append(low)
    return DeviceDraw(tuple(out), tuple(highs), tuple(lows))


def device_trace(network: TrainedCrossbarNetwork, devices: Sequence[np.ndarray], x: np.ndarray,
                 evaluator: str = "coupled") -> DeviceTrace:
    """Model voltages of every layer with given per-device conductances.

    Args:
        network: the network (its wiring and calibration).
        devices: per layer ``(n_columns, D)`` conductances (S; 0 = absent), e.g.
            :func:`draw_devices`' ``conductances``.
        x: ``(B, n_inputs)`` flat input voltages (V).
        evaluator: ``"coupled"`` (every neuron loaded by the devices it drives, as SPICE's
            DC operating point; needs an inverter current model) or ``"static"`` (rows as
            ideal sources, the static tanh fits).

    Returns:
        A :class:`~memspice.train.conv_coupled.DeviceTrace` (``.output``: ``(B, n_classes)``).

    Raises:
        ConfigError: an unknown evaluator, or arrays that do not fit the network.
    """
    wirings = network_wiring(network.spec)
    if len(devices) != len(wirings):
        raise ConfigError(f"{len(devices)} device arrays for {len(wirings)} crossbar layers")
    for index, (wiring, g) in enumerate(zip(wirings, devices)):
        if np.shape(g) != wiring.present.shape:
            raise ConfigError(f"layer {index}: device conductances {np.shape(g)}, the wiring has "
                              f"{wiring.present.shape}")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if evaluator == "coupled":
        return LayeredCoupledEvaluator(network.calibration, wirings).forward_devices(devices, x)
    if evaluator != "static":
        raise ConfigError(f"unknown evaluator {evaluator!r}; choose static or coupled")
    act, rails = network.calibration.activation, network.calibration.rails
    v_pos, v_neg = x, -x
    layers = []
    for wiring, g in zip(wirings, devices):
        rows = wiring.row_source_voltages(v_pos, v_neg, rails.vdd, rails.vss)
        column = wiring.column_voltages(np.asarray(g, dtype=np.float64), v_pos, v_neg,
                                        rails.vdd, rails.vss)
        v_pos, v_neg = act.noninverting(column), act.inverting(column)
        layers.append(DeviceLayerState(rows, column, v_neg, v_pos))
    return DeviceTrace(tuple(layers), tuple(np.asarray(g) for g in devices), ())
