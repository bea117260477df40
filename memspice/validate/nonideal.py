"""Non-idealities applied to the netlisted circuit: device variation, stuck-at faults, wires.

The trained model stays ideal; these change only what goes into the SPICE deck, so the
validation report shows what the circuit does when devices and wires are not ideal.

- Device variation: each conductance is multiplied by an independent lognormal factor
  ``exp(σ·z)`` (``z`` standard normal), then clipped into the device window.
- Stuck-at faults: a fraction of devices is stuck, half at ``g_max`` and half at ``g_min``.
- A known fault map (:class:`~memspice.train.hardware.FaultMap`, e.g. the one a network was
  trained against): its devices are stuck at exactly ``g_max`` / ``g_min``, after variation
  and over any randomly drawn fault, so the deck holds exactly the map's stuck devices.
- Wire resistance: every crossbar row and column is a chain of wire segments of
  ``wire_ohm`` each, one per cell, so row voltages droop along the row and column currents
  flow through the column wire before reaching the neuron (see :func:`wired_crossbar`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.builders import NEURON, check_conductances
from memspice.circuit.elements import Element, Resistor, SubcktInstance
from memspice.circuit.wiring import VDD_NODE, VSS_NODE, LayerShape, column_node, output_node, row_nodes
from memspice.errors import ConfigError
from memspice.train.device_draws import DeviceDraw, programming_variation, stuck_at_draw
from memspice.train.hardware import FaultMap


@dataclass(frozen=True, slots=True)
class NonIdeality:
    """What to change in the netlisted circuit.

    Attributes:
        variation_sigma: lognormal sigma of multiplicative device variation (dimensionless,
            e.g. 0.05 ≈ 5 %); 0 disables it.
        fault_rate: fraction of devices stuck (half at ``g_max``, half at ``g_min``), in [0, 1].
        wire_ohm: resistance of one wire segment between adjacent crossbar cells (Ω); 0 = ideal.
        seed: seed of the variation and fault draws.
        g_min_siemens: lower end of the device window (S), used for clipping and stuck-low.
        g_max_siemens: upper end of the device window (S), used for clipping and stuck-high.
    """

    variation_sigma: float = 0.0
    fault_rate: float = 0.0
    wire_ohm: float = 0.0
    seed: int = 0
    g_min_siemens: float = 0.125e-6
    g_max_siemens: float = 8e-6

    def __post_init__(self) -> None:
        if not (np.isfinite(self.variation_sigma) and self.variation_sigma >= 0):
            raise ConfigError(f"device variation must be a non-negative number, got {self.variation_sigma!r}")
        if not (np.isfinite(self.fault_rate) and 0 <= self.fault_rate <= 1):
            raise ConfigError(f"fault rate must be in [0, 1], got {self.fault_rate!r}")
        if not (np.isfinite(self.wire_ohm) and self.wire_ohm >= 0):
            raise ConfigError(f"wire resistance must be a non-negative number of ohms, got {self.wire_ohm!r}")
        if not 0 < self.g_min_siemens < self.g_max_siemens:
            raise ConfigError(f"device window [{self.g_min_siemens}, {self.g_max_siemens}] S is empty")

    @property
    def any_device_change(self) -> bool:
        """True when conductances differ from the trained ones."""
        return self.variation_sigma > 0 or self.fault_rate > 0

    def as_dict(self) -> dict[str, float | int]:
        """JSON-safe description (for manifests and reports)."""
        return {"variation_sigma": self.variation_sigma, "fault_rate": self.fault_rate,
                "wire_ohm": self.wire_ohm, "seed": self.seed}


def apply_device_nonidealities(conductances: Sequence[np.ndarray], spec: NonIdeality,
                               known: FaultMap | None = None) -> DeviceDraw:
    """Draw variation and stuck-at faults (seeded) onto ``conductances`` (S).

    The same ``spec`` always gives the same draw. Variation is applied first, then drawn faults
    override the affected devices, then the ``known`` map's devices are set to exactly
    ``g_max`` / ``g_min`` (the returned masks are the union of drawn and known faults).

    Raises:
        ConfigError: ``known`` has another number of layers or another shape than ``conductances``.
    """
    if known is not None:
        if len(known.stuck_high) != len(conductances):
            raise ConfigError(f"fault map has {len(known.stuck_high)} layers, the network {len(conductances)}")
        for index, (g, mask) in enumerate(zip(conductances, known.stuck_high)):
            if np.shape(g) != mask.shape:
                raise ConfigError(f"fault map layer {index} is {mask.shape}, the network's layer {index} is "
                                  f"{np.shape(g)}")
    rng = np.random.default_rng([spec.seed, 5])
    out, highs, lows = [], [], []
    for index, g in enumerate(conductances):
        g = np.asarray(g, dtype=np.float64)
        if spec.variation_sigma > 0:
            g = programming_variation(g, spec.variation_sigma, rng, spec.g_min_siemens, spec.g_max_siemens)
        high, low = stuck_at_draw(g.shape, spec.fault_rate, rng)
        if known is not None:
            known_high, known_low = known.stuck_high[index], known.stuck_low[index]
            high = (high & ~known_low) | known_high
            low = (low & ~known_high) | known_low
        g = np.where(high, spec.g_max_siemens, np.where(low, spec.g_min_siemens, g))
        out.append(g)
        highs.append(high)
        lows.append(low)
    return DeviceDraw(tuple(out), tuple(highs), tuple(lows))


def wired_crossbar(layer: int, conductances: np.ndarray, wire_ohm: float) -> list[Element]:
    """One crossbar layer with a wire segment of ``wire_ohm`` (Ω) between adjacent cells.

    Row ``k`` is driven at its left end by its row node (wiring order); the row wire passes
    cell ``(k, 0)``, ``(k, 1)``, … through nodes ``l{layer}r{k}_{j}``. Column ``j`` collects
    its devices on nodes ``l{layer}w{j}_{k}`` and runs from the top row down to the neuron
    input (the column node) through one more segment. The device of cell ``(k, j)`` joins
    ``l{layer}r{k}_{j}`` to ``l{layer}w{j}_{k}``.
    """
    wire = float(wire_ohm)
    if not wire > 0:
        raise ConfigError(f"wire resistance must be positive here, got {wire_ohm!r}")
    g = np.asarray(conductances, dtype=np.float64)
    shape = LayerShape(g.shape[1] // 2 - 1, g.shape[0])
    g = check_conductances(g, shape, layer)
    rows = row_nodes(layer, shape.n_inputs)
    elements: list[Element] = []
    for k, driver in enumerate(rows):
        previous = driver
        for j in range(shape.n_outputs):
            node = f"l{layer}r{k}_{j}"
            elements.append(Resistor(f"l{layer}wr{k}_{j}", previous, node, wire))
            elements.append(Resistor(f"l{layer}m{j}_{k}", node, f"l{layer}w{j}_{k}", 1.0 / float(g[j, k])))
            previous = node
    for j in range(shape.n_outputs):
        for k in range(len(rows) - 1):
            elements.append(Resistor(f"l{layer}wc{j}_{k}", f"l{layer}w{j}_{k}", f"l{layer}w{j}_{k + 1}", wire))
        col = column_node(layer, j)
        elements.append(Resistor(f"l{layer}wc{j}_{len(rows) - 1}", f"l{layer}w{j}_{len(rows) - 1}", col, wire))
        elements.append(SubcktInstance(
            f"l{layer}n{j}", (col, output_node(layer, j, "n"), output_node(layer, j, "p"), VDD_NODE, VSS_NODE), NEURON))
    return elements


def wired_network(conductances: Sequence[np.ndarray], wire_ohm: float) -> list[Element]:
    """Every layer as :func:`wired_crossbar` (adjacent layer sizes must fit together)."""
    elements: list[Element] = []
    for layer, g in enumerate(conductances):
        if layer > 0 and np.asarray(g).shape[1] != 2 * np.asarray(conductances[layer - 1]).shape[0] + 2:
            raise ConfigError(f"layer {layer} does not fit the outputs of layer {layer - 1}")
        elements += wired_crossbar(layer, g, wire_ohm)
    return elements
