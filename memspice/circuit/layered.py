"""Flat decks for layer-described networks (conv, pooled, masked): one element per device.

A crossbar layer arrives as per-device arrays (see ``memspice.network.wiring``): ``source``
``(M, D)`` indexes the layer's row nodes ``[p_0…p_{S-1}, n_0…n_{S-1}, vdd, vss, 0]`` and
``conductances`` ``(M, D)`` gives each device in siemens, 0 for a device that is absent (a
masked device gets no element at all). Device ``d`` of column ``m`` of layer ``L`` is the
resistor ``R l{L}m{m}_{d}`` from its row node to the column node ``l{L}c{m}``; parallel devices
of a folded pool are separate elements, as they are separate memristors.

Decks are written flat: the neurons' four transistors are top-level elements (``l{L}n{m}_1n``,
``_1p`` for the first inverter, ``_2n``, ``_2p`` for the second), so ngspice expands no
subcircuit; node names are :mod:`memspice.circuit.wiring`'s, so a dense network gets the same
nodes as :func:`memspice.circuit.builders.network_deck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.builders import DeviceSource, InverterSizing, supply_sources, technology_deck
from memspice.circuit.deck import Analysis, Deck, Save
from memspice.circuit.elements import Element, Resistor
from memspice.circuit.wiring import VDD_NODE, VSS_NODE, column_node, output_node, row_nodes
from memspice.errors import NetlistError

#: The 0 V row (zero padding of a conv window).
ZERO_NODE = "0"


@dataclass(frozen=True, slots=True, eq=False)
class CrossbarDevices:
    """One crossbar layer as per-device arrays.

    Attributes:
        n_sources: units driving the rows ``S`` (network inputs or previous neurons).
        source: ``(M, D)`` int index into the row nodes ``[p…, n…, vdd, vss, 0]``.
        conductances: ``(M, D)`` device conductances (S); 0 = no device.
    """

    n_sources: int
    source: np.ndarray
    conductances: np.ndarray

    def __post_init__(self) -> None:
        source = np.asarray(self.source)
        g = np.asarray(self.conductances, dtype=np.float64)
        if source.ndim != 2 or source.shape != g.shape:
            raise NetlistError(f"device sources {source.shape} and conductances {g.shape} "
                               f"must be equal 2-D shapes")
        if source.size and (source.min() < 0 or source.max() > 2 * self.n_sources + 2):
            raise NetlistError(f"device source index outside the {2 * self.n_sources + 3} rows")
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            raise NetlistError("device conductances must be finite and non-negative (0 = absent)")
        if not np.all((g > 0).any(axis=1)):
            raise NetlistError("every column needs at least one device")

    @property
    def n_columns(self) -> int:
        """Neurons of the layer."""
        return int(np.shape(self.source)[0])


def layered_row_nodes(layer: int, n_sources: int) -> tuple[str, ...]:
    """The ``2S + 3`` row nodes of ``layer``: wiring.py's ``2S + 2`` and the 0 V row."""
    return (*row_nodes(layer, n_sources), ZERO_NODE)


def flat_neuron(tech: DeviceSource, sizing: InverterSizing, layer: int, j: int) -> list[Element]:
    """Neuron ``j`` of ``layer`` as four top-level transistors (no subcircuit)."""
    col = column_node(layer, j)
    outn, outp = output_node(layer, j, "n"), output_node(layer, j, "p")
    name = f"l{layer}n{j}"
    return [
        tech.transistor("n", f"{name}_1n", outn, col, VSS_NODE, VSS_NODE, sizing.wn_m, sizing.ln_m),
        tech.transistor("p", f"{name}_1p", outn, col, VDD_NODE, VDD_NODE, sizing.wp_m, sizing.lp_m),
        tech.transistor("n", f"{name}_2n", outp, outn, VSS_NODE, VSS_NODE, sizing.wn_m, sizing.ln_m),
        tech.transistor("p", f"{name}_2p", outp, outn, VDD_NODE, VDD_NODE, sizing.wp_m, sizing.lp_m),
    ]


def crossbar_device_elements(layer: int, devices: CrossbarDevices) -> list[Element]:
    """Every present device of one layer as a resistor from its row node to its column."""
    rows = layered_row_nodes(layer, devices.n_sources)
    g = np.asarray(devices.conductances, dtype=np.float64)
    present = g > 0
    columns, taps = np.nonzero(present)
    # Plain Python values, computed once per layer: indexing NumPy scalars device by device
    # took most of this function's time on a CNN deck (176,000 devices).
    row_of = [rows[s] for s in np.asarray(devices.source)[present].tolist()]
    ohms = (1.0 / g[present]).tolist()  # IEEE division: the same values as 1.0 / float(g[m, d])
    col_names = [column_node(layer, m) for m in range(g.shape[0])]
    return [Resistor(f"l{layer}m{m}_{d}", row, col_names[m], ohm)
            for m, d, row, ohm in zip(columns.tolist(), taps.tolist(), row_of, ohms)]


def layered_network_elements(tech: DeviceSource, sizing: InverterSizing,
                             layers: Sequence[CrossbarDevices]) -> list[Element]:
    """All crossbar devices and flat neurons, checking that adjacent layers chain."""
    elements: list[Element] = []
    for layer, devices in enumerate(layers):
        if layer > 0 and devices.n_sources != layers[layer - 1].n_columns:
            raise NetlistError(f"layer {layer} is driven by {devices.n_sources} units but layer "
                               f"{layer - 1} has {layers[layer - 1].n_columns} neurons")
        elements += crossbar_device_elements(layer, devices)
        for j in range(devices.n_columns):
            elements += flat_neuron(tech, sizing, layer, j)
    return elements


def layered_saves(layers: Sequence[CrossbarDevices], columns: bool = True) -> list[Save]:
    """Saves of every neuron's outputs, and of every column node when ``columns``."""
    saves: list[Save] = []
    for layer, devices in enumerate(layers):
        for j in range(devices.n_columns):
            if columns:
                saves.append(Save("v", column_node(layer, j)))
            saves += [Save("v", output_node(layer, j, "n")), Save("v", output_node(layer, j, "p"))]
    return saves


def layered_network_deck(tech: DeviceSource, sizing: InverterSizing,
                         layers: Sequence[CrossbarDevices], drive: Sequence[Element],
                         analyses: Sequence[Analysis], saves: Sequence[Save] = (),
                         title: str = "memspice layered network") -> Deck:
    """A flat deck: rails, input drive, every device and transistor, analyses, saves."""
    elements = [*supply_sources(tech.rails), *drive,
                *layered_network_elements(tech, sizing, layers)]
    return technology_deck(tech, title, elements, [], analyses, saves)
