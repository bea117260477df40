"""The golden cases: each one builds its deck from the library's builders.

Because decks are built here rather than read back, a changed builder, emitter or technology
shows up as text drift against the stored ``netlists/<case>.cir``. The parameterized deck
functions (:func:`inverter_vtc_deck`, :func:`column_deck`, …) let tests build deliberately
modified variants of a case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from memspice.circuit.builders import (
    InverterSizing,
    column_elements,
    indexed_input_sources,
    inverter_chain_deck,
    inverter_subckt,
    network_deck,
    network_output_saves,
    neuron_subckt,
    supply_sources,
    technology_deck,
)
from memspice.circuit.deck import Dc, Deck, Include, ModelRoot, Save, Sweep, Tran
from memspice.circuit.elements import Element, Pwl, Resistor, SubcktInstance, Vcvs, VoltageSource
from memspice.circuit.wiring import column_node, input_node, output_node
from memspice.circuit.values import check_deck_text
from memspice.errors import ConfigError, NetlistError
from memspice.regress.golden import Tolerance
from memspice.tech.technology import BUILTIN_ROOT, Technology, builtin, builtin_models_dir, sky130

#: Node voltages: 0.1 mV, about the noise floor of ±0.25 V logic and far below a 5 % drift.
VOLTAGE = Tolerance(1e-4, 1e-4)
#: Supply currents (A): 1 nA or 0.1 %.
CURRENT = Tolerance(1e-9, 1e-3)
#: Memristor state (dimensionless, read as volts) in transients: interpolated time points.
STATE = Tolerance(1e-3, 1e-3)
#: PHAX device window (S).
G_MIN_S, G_MAX_S = 0.12e-6, 8e-6
#: Column case: conductances (S) in wiring order [ip0..ip3, in0..in3, bias_p, bias_n].
COLUMN_CONDUCTANCES_S = (6.0e-6, 1.5e-6, 4.0e-6, 0.5e-6, 1.0e-6, 5.0e-6, 2.0e-6, 3.0e-6, 2.5e-6, 2.2e-6)
#: Column case: fixed inputs 1..3 (V); input 0 is swept.
COLUMN_FIXED_INPUTS_V = (0.1, -0.2, 0.05)
NETWORK_SEED = 20260101
MEMRISTOR_FILE = "memristor_yakopcic.sub"


@dataclass(frozen=True)
class GoldenCase:
    """One golden deck.

    Attributes:
        name: file stem under the golden directory (``netlists/<name>.cir``…).
        description: what the deck shows, one line.
        build: returns the deck; raises :class:`ConfigError` when a needed technology is not
            installed (the case is then reported as unavailable, not failed).
        tolerances: signal → tolerance; these signals form the golden table.
        analysis: index of the analysis (plot) whose results are stored.
    """

    name: str
    description: str
    build: Callable[[], Deck]
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    analysis: int = 0

    def __post_init__(self) -> None:
        # The name becomes file names in the golden directory: a plain word, never a path.
        try:
            check_deck_text(self.name, "golden case name")
        except NetlistError as exc:
            raise ConfigError(str(exc)) from None
        if "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"golden case name {self.name!r} must be a plain file stem")
        if not self.tolerances:
            raise ConfigError(f"golden case {self.name!r} compares no signals")


# ---- deck functions (parameterized so tests can build modified variants) ---------------------

VTC_SWEEP = Sweep("in", -0.25, 0.25, 0.005)


def inverter_vtc_deck(tech: Technology, sizing: InverterSizing, *, stages: int = 1,
                      load_ohm: float | None = None, title: str = "inverter vtc") -> Deck:
    """VTC of one inverter or the two-inverter neuron, swept over the rails."""
    return inverter_chain_deck(tech, sizing, [Dc(VTC_SWEEP)], stages=stages, load_ohm=load_ohm, title=title)


def column_deck(tech: Technology, sizing: InverterSizing, conductances_s: Sequence[float],
                fixed_inputs_v: Sequence[float] = COLUMN_FIXED_INPUTS_V) -> Deck:
    """One neuron column (layer 0, neuron 0) with input 0 swept differentially.

    ``xp0`` is the swept source and ``xn0`` follows it at gain −1; the other inputs are fixed.
    """
    g = np.asarray(conductances_s, dtype=np.float64)
    n_inputs = len(fixed_inputs_v) + 1
    elements: list[Element] = [
        *supply_sources(tech.rails),
        VoltageSource(input_node(0, "p"), input_node(0, "p"), "0", 0.0),
        Vcvs(input_node(0, "n"), input_node(0, "n"), "0", input_node(0, "p"), "0", -1.0),
    ]
    for i, value in enumerate(fixed_inputs_v, start=1):
        elements.append(VoltageSource(input_node(i, "p"), input_node(i, "p"), "0", float(value)))
        elements.append(VoltageSource(input_node(i, "n"), input_node(i, "n"), "0", -float(value)))
    elements += column_elements(0, 0, g, n_inputs)
    saves = [Save("v", input_node(0, "p")), Save("v", column_node(0, 0)),
             Save("v", output_node(0, 0, "n")), Save("v", output_node(0, 0, "p"))]
    sweep = Dc(Sweep(input_node(0, "p"), tech.rails.vss, tech.rails.vdd, 0.01))
    return technology_deck(tech, "neuron column 4 inputs", elements, [inverter_subckt(tech, sizing), neuron_subckt()],
                           [sweep], saves)


def network_conductances(seed: int = NETWORK_SEED) -> list[np.ndarray]:
    """Seeded 4-3-2 conductances (S) within the PHAX window, rounded to 1 nS."""
    rng = np.random.default_rng(seed)
    return [np.round(rng.uniform(G_MIN_S, G_MAX_S, shape) * 1e9) / 1e9 for shape in ((3, 10), (2, 8))]


def network_samples(seed: int = NETWORK_SEED, n_samples: int = 10) -> np.ndarray:
    """Seeded input samples (V) in the rails, rounded to 1 mV."""
    rng = np.random.default_rng(seed + 1)
    return np.round(rng.uniform(-0.25, 0.25, (n_samples, 4)), 3)


def network_4_3_2_deck(tech: Technology, sizing: InverterSizing, conductances: Sequence[np.ndarray],
                       samples: np.ndarray) -> Deck:
    """Two-layer network evaluated on every sample by one ``.dc`` sweep of the index source."""
    saves = [Save("v", column_node(layer, j)) for layer, g in enumerate(conductances) for j in range(g.shape[0])]
    saves += network_output_saves(conductances)
    sweep = Dc(Sweep("idx", 0.0, float(samples.shape[0] - 1), 1.0))
    return network_deck(tech, sizing, conductances, indexed_input_sources(samples), [sweep], saves,
                        title="network 4-3-2")


def pruned_network_masks() -> tuple[np.ndarray, np.ndarray]:
    """θ masks of the pruned 6-4-2 case: two block-diagonal clusters in the first layer with
    input 5 dropped from every column (its driver has no device left), and output 0 no longer
    reading hidden neuron 3's ``outp``."""
    first = np.ones((4, 14), dtype=bool)
    cluster = (np.arange(4)[:, None] // 2) == (np.arange(6)[None, :] // 3)
    first[:, :6] = first[:, 6:12] = cluster
    first[:, [5, 11]] = False
    second = np.ones((2, 10), dtype=bool)
    second[0, 3] = False
    return first, second


def pruned_network_deck(tech: Technology, sizing: InverterSizing, conductances: Sequence[np.ndarray],
                        masks: Sequence[np.ndarray], samples: np.ndarray) -> Deck:
    """A pruned 6-4-2 network as a flat deck (one resistor per present device, none for a
    masked one), every sample in one ``.dc`` sweep of the index source."""
    from memspice.circuit.layered import CrossbarDevices, layered_network_deck, layered_saves
    from memspice.network import CrossbarMask, NetworkSpec
    from memspice.network.wiring import network_wiring

    spec = NetworkSpec.dense((6, 4, 2)).with_masks(tuple(CrossbarMask(theta=m) for m in masks))
    layers = [CrossbarDevices(w.plan.n_sources, w.source, w.conductances(g))
              for w, g in zip(network_wiring(spec), conductances)]
    sweep = Dc(Sweep("idx", 0.0, float(samples.shape[0] - 1), 1.0))
    return layered_network_deck(tech, sizing, layers, indexed_input_sources(samples), [sweep],
                                layered_saves(layers), title="pruned network 6-4-2")


def memristor_program_deck(initial_state: float = 0.1, amplitude_v: float = 1.5,
                           models_dir: str | None = None) -> Deck:
    """Yakopcic memristor programmed by a SET pulse then a RESET pulse (``.tran … uic``).

    The source drives the top electrode through a 10 kΩ series resistor; the state node
    ``xs`` (volts = x) records the programming.
    """
    a = amplitude_v
    wave = Pwl((0.0, 0.1e-6, 0.6e-6, 0.7e-6, 1.2e-6, 1.3e-6, 1.8e-6, 1.9e-6, 2.5e-6),
               (0.0, a, a, 0.0, 0.0, -a, -a, 0.0, 0.0))
    elements: list[Element] = [
        VoltageSource("prog", "drive", "0", 0.0, wave),
        Resistor("series", "drive", "te", 10e3),
        SubcktInstance("mem", ("te", "0", "xs"), "yakopcic_phax", (("xo", initial_state),)),
    ]
    root = ModelRoot(BUILTIN_ROOT, models_dir or str(builtin_models_dir()))
    return Deck(
        title="memristor programming",
        elements=tuple(elements),
        includes=(Include(BUILTIN_ROOT, MEMRISTOR_FILE),),
        model_roots=(root,),
        analyses=(Tran(10e-9, 2.5e-6, max_step_s=10e-9, uic=True),),
        saves=(Save("v", "drive"), Save("v", "te"), Save("v", "xs"), Save("i", "prog")),
    )


# ---- the registry ---------------------------------------------------------------------------

SKY130_LVT_SIZING = InverterSizing(wn_m=1.0e-6, wp_m=2.0e-6, ln_m=0.15e-6, lp_m=0.35e-6)


def _vtc_tolerances(stages: int) -> dict[str, Tolerance]:
    return {**{f"o{k}": VOLTAGE for k in range(1, stages + 1)}, "i(vdd)": CURRENT}


def default_cases() -> tuple[GoldenCase, ...]:
    """The starting golden set, in report order."""
    column_signals = {name: VOLTAGE for name in (column_node(0, 0), output_node(0, 0, "n"), output_node(0, 0, "p"))}
    network_signals = {
        save.name: VOLTAGE
        for save in network_4_3_2_deck(builtin(), InverterSizing(), network_conductances(), network_samples()).saves
    }
    rng = np.random.default_rng(NETWORK_SEED + 2)
    pruned_g = [np.round(rng.uniform(G_MIN_S, G_MAX_S, shape) * 1e9) / 1e9 for shape in ((4, 14), (2, 10))]
    pruned_x = np.round(rng.uniform(-0.25, 0.25, (8, 6)), 3)

    def pruned_deck() -> Deck:
        return pruned_network_deck(builtin(), InverterSizing(), pruned_g, pruned_network_masks(), pruned_x)

    pruned_signals = {save.name: VOLTAGE for save in pruned_deck().saves}
    return (
        GoldenCase("inverter_vtc_builtin", "one inverter, built-in card, PHAX sizing, unloaded VTC",
                   lambda: inverter_vtc_deck(builtin(), InverterSizing()), _vtc_tolerances(1)),
        GoldenCase("inverter_vtc_sky130_tt_lvt", "one inverter, sky130 tt LVT devices, unloaded VTC",
                   lambda: inverter_vtc_deck(sky130("tt", flavor="lvt"), SKY130_LVT_SIZING), _vtc_tolerances(1)),
        GoldenCase("neuron_load_builtin", "two-inverter neuron, built-in card, each stage loaded by 0.9 MOhm",
                   lambda: inverter_vtc_deck(builtin(), InverterSizing(), stages=2, load_ohm=0.9e6,
                                             title="neuron under load"),
                   _vtc_tolerances(2)),
        GoldenCase("neuron_column_builtin", "4-input neuron column, fixed conductances, input 0 swept",
                   lambda: column_deck(builtin(), InverterSizing(), COLUMN_CONDUCTANCES_S), column_signals),
        GoldenCase("network_4_3_2_builtin", "4-3-2 network, seeded conductances, 10 indexed samples",
                   lambda: network_4_3_2_deck(builtin(), InverterSizing(), network_conductances(), network_samples()),
                   network_signals),
        GoldenCase("pruned_network_builtin", "6-4-2 network with structured masks (clusters, a dropped "
                   "input, a removed device), flat deck, 8 indexed samples", pruned_deck, pruned_signals),
        GoldenCase("memristor_program_tran", "Yakopcic memristor SET then RESET pulse through 10 kOhm (.tran uic)",
                   memristor_program_deck,
                   {"xs": STATE, "te": VOLTAGE, "i(vprog)": Tolerance(1e-8, 1e-3)}),
    )


def select_cases(cases: Iterable[GoldenCase], names: Sequence[str] | None) -> list[GoldenCase]:
    """The cases named in ``names`` (all when ``None`` or empty), in registry order.

    Raises:
        ConfigError: a name is not a case.
    """
    cases = list(cases)
    if not names:
        return cases
    known = {case.name for case in cases}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown golden case(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [case for case in cases if case.name in set(names)]
