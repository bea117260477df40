"""Builders: inverter, two-inverter neuron, neuron column, crossbar layer, network.

Builders are functions returning new frozen values. They take any object satisfying
:class:`DeviceSource` (a :class:`memspice.tech.Technology` does), so this layer never imports
the technology layer. Wiring follows :mod:`memspice.circuit.wiring` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from memspice.circuit.deck import Analysis, Deck, Include, ModelRoot, Save, Subckt
from memspice.circuit.elements import (
    Element,
    PwlOfVoltage,
    Resistor,
    SubcktInstance,
    Transistor,
    Vcvs,
    VoltageSource,
)
from memspice.circuit.values import check_positive
from memspice.circuit.wiring import (
    VDD_NODE,
    VSS_NODE,
    LayerShape,
    Rails,
    column_node,
    input_node,
    output_node,
    row_nodes,
)
from memspice.errors import ConfigError, NetlistError

INVERTER = "inv"
NEURON = "neuron"
#: Tight tolerances so SPICE agrees with a NumPy model to ~1e-6 V (costs ≈ 8 %), and device
#: bypass (skip re-evaluating a device whose terminal voltages barely moved): measured 19 %
#: faster on a 250-sample 64-32-10 validation deck, outputs identical to 3e-12 V.
PRECISE_OPTIONS: tuple[tuple[str, float], ...] = (("reltol", 1e-6), ("vntol", 1e-9), ("abstol", 1e-15), ("bypass", 1))


class DeviceSource(Protocol):
    """What builders need from a technology."""

    rails: Rails
    temperature_c: float
    includes: tuple[Include, ...]
    model_roots: tuple[ModelRoot, ...]
    settings: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, float], ...]

    def transistor(self, polarity: Literal["n", "p"], name: str, drain: str, gate: str,
                   source: str, bulk: str, width_m: float, length_m: float, multiplier: int = 1) -> Transistor: ...


@dataclass(frozen=True, slots=True)
class InverterSizing:
    """Transistor sizes of one inverter (m). Defaults: PHAX's 90 nm reference sizing.

    ``mn``/``mp`` are parallel devices (SPICE ``m``) of width ``wn_m``/``wp_m`` each, so a
    large effective width stays inside a PDK's model bins.
    """

    wn_m: float = 0.6e-6
    wp_m: float = 1.0e-6
    ln_m: float = 0.1e-6
    lp_m: float = 0.1e-6
    mn: int = 1
    mp: int = 1

    def __post_init__(self) -> None:
        for name in ("mn", "mp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"inverter {name} (parallel devices) must be a positive integer, got {value!r}")
        for name in ("wn_m", "wp_m", "ln_m", "lp_m"):
            try:
                value = check_positive(getattr(self, name), f"inverter {name}")
            except NetlistError as exc:
                raise ConfigError(str(exc)) from None
            if value > 1e-3:
                raise ConfigError(f"inverter {name} = {value} m is implausibly large (sizes are in metres)")

    def scaled(self, factor_n: float = 1.0, factor_p: float = 1.0) -> InverterSizing:
        """Widths multiplied by the given factors (lengths unchanged)."""
        return InverterSizing(self.wn_m * factor_n, self.wp_m * factor_p, self.ln_m, self.lp_m, self.mn, self.mp)


def inverter_subckt(tech: DeviceSource, sizing: InverterSizing) -> Subckt:
    """``.subckt inv in out vdd vss``: NMOS to ``vss``, PMOS to ``vdd``, bulks to the rails."""
    return Subckt(
        INVERTER,
        ("in", "out", "vdd", "vss"),
        (
            tech.transistor("n", "n", "out", "in", "vss", "vss", sizing.wn_m, sizing.ln_m, sizing.mn),
            tech.transistor("p", "p", "out", "in", "vdd", "vdd", sizing.wp_m, sizing.lp_m, sizing.mp),
        ),
    )


def neuron_subckt() -> Subckt:
    """``.subckt neuron col outn outp vdd vss``: two cascaded inverters."""
    return Subckt(
        NEURON,
        ("col", "outn", "outp", "vdd", "vss"),
        (
            SubcktInstance("1", ("col", "outn", "vdd", "vss"), INVERTER),
            SubcktInstance("2", ("outn", "outp", "vdd", "vss"), INVERTER),
        ),
    )


def supply_sources(rails: Rails) -> tuple[VoltageSource, VoltageSource]:
    """``Vdd vdd 0 <vdd>`` and ``Vss vss 0 <vss>``."""
    return (VoltageSource("dd", VDD_NODE, "0", rails.vdd), VoltageSource("ss", VSS_NODE, "0", rails.vss))


def technology_deck(tech: DeviceSource, title: str, elements: Sequence[Element], subckts: Sequence[Subckt],
                    analyses: Sequence[Analysis], saves: Sequence[Save] = (), precise: bool = True) -> Deck:
    """A deck with the technology's models, settings, temperature and the given contents."""
    return Deck(
        title=title,
        elements=tuple(elements),
        subckts=tuple(subckts),
        includes=tech.includes,
        model_roots=tech.model_roots,
        settings=tech.settings,
        params=tech.params,
        options=PRECISE_OPTIONS if precise else (),
        temperature_c=tech.temperature_c,
        analyses=tuple(analyses),
        saves=tuple(saves),
    )


def inverter_chain_deck(
    tech: DeviceSource,
    sizing: InverterSizing,
    analyses: Sequence[Analysis],
    *,
    stages: int = 1,
    load_ohm: float | None = None,
    input_v: float = 0.0,
    title: str = "inverter chain",
) -> Deck:
    """One inverter (``stages=1``) or the two-inverter neuron (``stages=2``) driven by ``Vin``.

    Nodes: input ``in``; stage outputs ``o1``, ``o2``. With ``load_ohm`` every stage output is
    loaded by that resistance to mid-rail (node ``vmid``), as a crossbar row would load it.
    The input source is named ``in`` (sweep it with ``Sweep("in", …)``).
    """
    if stages not in (1, 2):
        raise ConfigError(f"stages must be 1 or 2, got {stages}")
    rails = tech.rails
    elements: list[Element] = [*supply_sources(rails), VoltageSource("in", "in", "0", input_v)]
    previous = "in"
    for k in range(1, stages + 1):
        out = f"o{k}"
        elements.append(SubcktInstance(f"i{k}", (previous, out, VDD_NODE, VSS_NODE), INVERTER))
        if load_ohm is not None:
            elements.append(Resistor(f"load{k}", out, "vmid", check_positive(load_ohm, "load resistance")))
        previous = out
    if load_ohm is not None:
        elements.append(VoltageSource("mid", "vmid", "0", rails.mid))
    saves = [Save("v", "in"), *(Save("v", f"o{k}") for k in range(1, stages + 1)), Save("i", "dd"), Save("i", "ss")]
    return technology_deck(tech, title, elements, [inverter_subckt(tech, sizing)], analyses, saves)


# ---- crossbar and network ------------------------------------------------------------------

def check_conductances(matrix: np.ndarray, shape: LayerShape, layer: int) -> np.ndarray:
    """Validate a layer's conductance matrix: right shape, finite, strictly positive (S)."""
    g = np.asarray(matrix, dtype=np.float64)
    if g.shape != shape.matrix_shape:
        raise NetlistError(f"layer {layer}: conductance matrix has shape {g.shape}, expected {shape.matrix_shape}")
    if not np.all(np.isfinite(g)):
        raise NetlistError(f"layer {layer}: conductances must be finite")
    if not np.all(g > 0):
        raise NetlistError(f"layer {layer}: conductances must be positive (a missing device is a tiny conductance)")
    return g


def column_elements(layer: int, j: int, conductances: np.ndarray, n_inputs: int) -> list[Element]:
    """Neuron ``j`` of ``layer``: its ``2(N+1)`` memristors (read-mode resistors) and the neuron.

    Memristor ``k`` of the column is ``R l{layer}m{j}_{k}`` from row node ``k`` (wiring order)
    to the column node.
    """
    rows = row_nodes(layer, n_inputs)
    col = column_node(layer, j)
    elements: list[Element] = [
        Resistor(f"l{layer}m{j}_{k}", rows[k], col, 1.0 / float(conductances[k])) for k in range(len(rows))
    ]
    elements.append(
        SubcktInstance(f"l{layer}n{j}", (col, output_node(layer, j, "n"), output_node(layer, j, "p"), VDD_NODE, VSS_NODE), NEURON)
    )
    return elements


def crossbar_layer(layer: int, conductances: np.ndarray) -> list[Element]:
    """All columns of one layer. ``conductances`` is ``(M, 2N+2)`` in siemens (wiring order)."""
    g = np.asarray(conductances, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] < 4 or g.shape[1] % 2:
        raise NetlistError(f"layer {layer}: conductance matrix must be (M, 2N+2), got {g.shape}")
    shape = LayerShape(g.shape[1] // 2 - 1, g.shape[0])
    g = check_conductances(g, shape, layer)
    elements: list[Element] = []
    for j in range(shape.n_outputs):
        elements += column_elements(layer, j, g[j], shape.n_inputs)
    return elements


def network_elements(conductances: Sequence[np.ndarray]) -> list[Element]:
    """Every crossbar layer of a network, checking that adjacent layers fit together."""
    elements: list[Element] = []
    for layer, g in enumerate(conductances):
        g = np.asarray(g, dtype=np.float64)
        if layer > 0:
            previous_outputs = np.asarray(conductances[layer - 1]).shape[0]
            if g.shape[1] != 2 * previous_outputs + 2:
                raise NetlistError(
                    f"layer {layer} has {g.shape[1]} rows but layer {layer - 1} has {previous_outputs} outputs "
                    f"(needs {2 * previous_outputs + 2} rows)"
                )
        elements += crossbar_layer(layer, g)
    return elements


def dc_input_sources(x: np.ndarray) -> list[Element]:
    """Differential drive of the network inputs at fixed voltages: ``xp_i = +x_i``, ``xn_i = −x_i``."""
    values = np.asarray(x, dtype=np.float64).ravel()
    elements: list[Element] = []
    for i, value in enumerate(values):
        elements.append(VoltageSource(f"xp{i}", input_node(i, "p"), "0", float(value)))
        elements.append(VoltageSource(f"xn{i}", input_node(i, "n"), "0", -float(value)))
    return elements


INDEX_NODE = "idx"


def indexed_input_sources(samples: np.ndarray) -> list[Element]:
    """Drive all inputs from one index source ``Vidx``: sample ``s`` at ``v(idx) = s``.

    Each ``xp_i`` is a B-source ``pwl(v(idx), …)`` and each ``xn_i`` an E-source of gain −1,
    so a ``.dc Vidx 0 S-1 1`` sweep evaluates ``S`` samples in one run. A run of samples
    with the same value of input ``i`` keeps only its first and last breakpoint: the value
    at every integer index is unchanged, and the shorter table is cheaper for ngspice to
    search at every Newton iteration.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise NetlistError(f"samples must be a (S, N) array, got shape {x.shape}")
    index = np.arange(x.shape[0], dtype=np.float64)
    # keep[s, i]: sample s is a breakpoint of input i (first/last sample, or a run edge)
    keep = np.ones(x.shape, dtype=bool)
    if x.shape[0] > 2:
        same_as_prev = x[1:-1] == x[:-2]
        same_as_next = x[1:-1] == x[2:]
        keep[1:-1] = ~(same_as_prev & same_as_next)
    elements: list[Element] = [VoltageSource(INDEX_NODE, INDEX_NODE, "0", 0.0)]
    for i in range(x.shape[1]):
        rows = keep[:, i]
        elements.append(PwlOfVoltage(f"xp{i}", input_node(i, "p"), "0", INDEX_NODE,
                                     index[rows], x[rows, i]))  # type: ignore[arg-type]  # arrays: checked at once
        elements.append(Vcvs(f"xn{i}", input_node(i, "n"), "0", input_node(i, "p"), "0", -1.0))
    return elements


def network_output_saves(conductances: Sequence[np.ndarray], layers: str = "all") -> list[Save]:
    """Saves of neuron outputs (``outn`` and ``outp``) for ``all`` layers or the ``last``."""
    saves: list[Save] = []
    n_layers = len(conductances)
    for layer, g in enumerate(conductances):
        if layers == "last" and layer != n_layers - 1:
            continue
        for j in range(np.asarray(g).shape[0]):
            saves += [Save("v", output_node(layer, j, "n")), Save("v", output_node(layer, j, "p"))]
    return saves


def network_deck(
    tech: DeviceSource,
    sizing: InverterSizing,
    conductances: Sequence[np.ndarray],
    drive: Sequence[Element],
    analyses: Sequence[Analysis],
    saves: Sequence[Save] = (),
    title: str = "memspice network",
) -> Deck:
    """A full network: rails, input drive, every crossbar and neuron, analyses, saves."""
    elements = [*supply_sources(tech.rails), *drive, *network_elements(conductances)]
    return technology_deck(tech, title, elements, [inverter_subckt(tech, sizing), neuron_subckt()], analyses, saves)
