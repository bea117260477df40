"""What a pruned network costs and how it does: devices, tiles, area, and SPICE figures.

:func:`hardware_counts` counts the devices a network builds (absent devices and removed neurons
excluded) against its dense original; :func:`spice_measure` simulates a test set in ngspice
through the flat decks of :mod:`memspice.train.conv_circuit` (one ``.dc`` sweep per batch)
and returns the accuracy, the model–SPICE agreement and the static power of the two rails and
of the input drivers.

The energy per inference is the static power (rails and input drivers) times an inference
period (1 µs by default, the validation transient's period): a DC figure, not a transient
measurement of the settling energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memspice.circuit.builders import INDEX_NODE, DeviceSource, InverterSizing, indexed_input_sources
from memspice.circuit.deck import Dc, Deck, Save, Sweep
from memspice.circuit.layered import layered_network_deck
from memspice.circuit.wiring import output_node
from memspice.errors import SimError
from memspice.network.spec import NetworkSpec
from memspice.sim import SimOptions, simulate_many
from memspice.train.conv_circuit import crossbar_devices
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.sparsity import tiles_built

#: Inference period the energy figure assumes (s).
INFERENCE_PERIOD_S = 1e-6


@dataclass(frozen=True, slots=True)
class HardwareCounts:
    """Devices and crossbar area of a network against its dense original.

    Attributes:
        devices: devices built (memristors).
        dense_devices: devices of the dense original.
        neurons: neurons built.
        dense_neurons: neurons of the dense original.
        tiles_built: tiles with at least one device (0 without a tile size).
        tiles_total: tiles of the dense original (0 without a tile size).
        tile: ``(rows, cols)`` or None.
    """

    devices: int
    dense_devices: int
    neurons: int
    dense_neurons: int
    tiles_built: int = 0
    tiles_total: int = 0
    tile: tuple[int, int] | None = None

    @property
    def density(self) -> float:
        """Devices built per dense device."""
        return self.devices / self.dense_devices

    @property
    def compression(self) -> float:
        """Dense devices per device built."""
        return self.dense_devices / self.devices

    @property
    def area_saved(self) -> float:
        """Share of the dense crossbar area not built: tiles when a tile size is given (a tile
        with one device costs a whole tile), devices otherwise."""
        if self.tile is not None and self.tiles_total:
            return 1.0 - self.tiles_built / self.tiles_total
        return 1.0 - self.density

    def as_dict(self) -> dict[str, Any]:
        return {"devices": self.devices, "dense_devices": self.dense_devices,
                "neurons": self.neurons, "dense_neurons": self.dense_neurons,
                "density": self.density, "compression": self.compression,
                "area_saved": self.area_saved, "tiles_built": self.tiles_built,
                "tiles_total": self.tiles_total,
                "tile": None if self.tile is None else list(self.tile)}


def hardware_counts(network: TrainedCrossbarNetwork, dense: NetworkSpec,
                    kept_neurons: Sequence[np.ndarray] | None = None,
                    tile: tuple[int, int] | None = None) -> HardwareCounts:
    """Count what ``network`` builds against the dense network ``dense``.

    Args:
        network: the pruned network.
        dense: its dense original (same inputs and outputs, no masks).
        kept_neurons: per layer, the original indices of the neurons ``network`` kept (dense
            networks that lost neurons); None when no neuron was removed.
        tile: count tiles of this size over the dense layout (dense layers only).
    """
    devices = int(sum(int((g > 0).sum()) for g in network.device_conductances()))
    dense_devices = sum(p.n_devices for p in dense.plans)
    neurons = sum(p.n_columns for p in network.spec.plans)
    dense_neurons = sum(p.n_columns for p in dense.plans)
    built = total = 0
    if tile is not None:
        masks = network.spec.masks or (None,) * len(network.spec.plans)
        for layer, (plan, small, mask) in enumerate(zip(dense.plans, network.spec.plans, masks)):
            present_small = (np.ones(small.theta_shape, dtype=bool) if mask is None
                             or mask.theta is None else mask.theta)
            present = np.zeros(plan.theta_shape, dtype=bool)
            rows = np.arange(plan.channels) if kept_neurons is None else kept_neurons[layer]
            if layer == 0 or kept_neurons is None:
                cols = np.arange(plan.theta_shape[1])
            else:
                prev = kept_neurons[layer - 1]
                n = plan.taps
                cols = np.concatenate([prev, n + prev, [2 * n, 2 * n + 1]])
            present[np.ix_(rows, cols)] = present_small
            b, t = tiles_built(plan, present, tile)
            built += b
            total += t
    return HardwareCounts(devices, dense_devices, neurons, dense_neurons, built, total, tile)


@dataclass
class SpiceFigures:
    """SPICE results on a test set.

    Attributes:
        accuracy: SPICE accuracy (class = largest last-layer ``outp``).
        model_accuracy: the network's own model on the same images.
        agreement: share of images where SPICE and the model pick the same class.
        rail_power_w: mean static power from the two rails (W).
        input_power_w: mean static power the input drivers deliver (W).
        samples: test images simulated.
        outputs: ``(S, classes)`` SPICE output voltages (V).
    """

    accuracy: float
    model_accuracy: float
    agreement: float
    rail_power_w: float
    input_power_w: float
    samples: int
    outputs: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    @property
    def static_power_w(self) -> float:
        """Rails plus input drivers (W)."""
        return self.rail_power_w + self.input_power_w

    def energy_per_inference_j(self, period_s: float = INFERENCE_PERIOD_S) -> float:
        """Static power over one inference period (J)."""
        return self.static_power_w * period_s

    def as_dict(self) -> dict[str, Any]:
        return {"spice_accuracy": self.accuracy, "model_accuracy": self.model_accuracy,
                "agreement": self.agreement, "rail_power_w": self.rail_power_w,
                "input_power_w": self.input_power_w, "static_power_w": self.static_power_w,
                "energy_per_inference_j": self.energy_per_inference_j(),
                "spice_samples": self.samples}


def predicted_outputs(network: TrainedCrossbarNetwork, x: np.ndarray,
                      batch_size: int = 500) -> np.ndarray:
    """The network's outputs (V) by the evaluator it was trained with (static or coupled)."""
    from memspice.train.admm import make_model

    model = make_model(network.calibration, network.spec,
                       evaluator="coupled" if network.evaluator == "coupled" else "static")
    forward = model.evaluator.forward if network.spec.is_dense else model.forward
    g = list(network.effective_conductances())
    return np.vstack([forward(g, x[s : s + batch_size]).output
                      for s in range(0, len(x), batch_size)])


def measurement_deck(network: TrainedCrossbarNetwork, tech: DeviceSource, sizing: InverterSizing,
                     x: np.ndarray) -> Deck:
    """A flat ``.dc`` deck over the samples ``x`` ``(S, n_inputs)`` (V, S ≥ 2) saving the last
    layer's ``outp``, the rails' and every input driver's branch current."""
    from memspice.validate.decks import SUPPLY_SAVES, input_drive_saves

    layers = crossbar_devices(network)
    last = len(layers) - 1
    saves = [Save("v", output_node(last, j, "p")) for j in range(layers[-1].n_columns)]
    saves += [*SUPPLY_SAVES, *input_drive_saves(x.shape[1])]
    return layered_network_deck(tech, sizing, layers, indexed_input_sources(x),
                                [Dc(Sweep(INDEX_NODE, 0, len(x) - 1, 1))], saves,
                                title="memspice pruned network")


def spice_measure(network: TrainedCrossbarNetwork, tech: DeviceSource, sizing: InverterSizing,
                  x: np.ndarray, labels: np.ndarray, batch_size: int = 250, workers: int = 2,
                  options: SimOptions | None = None,
                  model_outputs: np.ndarray | None = None) -> SpiceFigures:
    """Simulate every test image in ngspice (batches of ``batch_size`` in ``workers``
    processes) and compare with the network's model.

    Args:
        options: simulator options; default: the batch backend with a timeout of 120 s plus
            3 s per sample of a batch (a busy machine takes minutes for a 500-image MNIST batch).
        model_outputs: the model's outputs on ``x`` (V); default: :func:`predicted_outputs`.

    Raises:
        SimError: a batch failed (the first failure).
    """
    from memspice.validate.decks import input_drive_power
    from memspice.validate.energy import static_power

    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    starts = list(range(0, len(x), batch_size))
    chunks = [x[s : s + batch_size] for s in starts]
    if len(chunks) > 1 and len(chunks[-1]) < 2:
        chunks[-2] = np.vstack(chunks[-2:])
        chunks.pop()
    decks = [measurement_deck(network, tech, sizing, chunk) for chunk in chunks]
    if options is None:
        options = SimOptions(timeout_s=120.0 + 3.0 * max(len(c) for c in chunks))
    results = simulate_many(decks, options, workers)
    n_out = network.spec.n_outputs
    last = len(network.spec.plans) - 1
    outputs, rails, inputs = [], [], []
    for chunk, result in zip(chunks, results):
        if isinstance(result, SimError):
            raise result
        plot = result.plot(0)
        outputs.append(np.column_stack([plot[output_node(last, j, "p")] for j in range(n_out)]))
        rails.append(static_power(plot["i(vdd)"], plot["i(vss)"], network.calibration.rails))
        inputs.append(input_drive_power(plot, chunk))
    out = np.vstack(outputs)
    model = (predicted_outputs(network, x) if model_outputs is None
             else np.asarray(model_outputs))
    spice_class, model_class = out.argmax(axis=1), model.argmax(axis=1)
    return SpiceFigures(float(np.mean(spice_class == labels)),
                        float(np.mean(model_class == labels)),
                        float(np.mean(spice_class == model_class)),
                        float(np.mean(np.concatenate(rails))),
                        float(np.mean(np.concatenate(inputs))), len(x), out)
