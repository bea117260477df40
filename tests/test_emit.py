"""Emission: one number format, deterministic text, deck order."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing, dc_input_sources, inverter_chain_deck, network_deck
from memspice.circuit.deck import Dc, Deck, Op, Save, Sweep, Tran
from memspice.circuit.elements import Pulse, Pwl, PwlOfVoltage, Resistor, Sine, VoltageSource
from memspice.errors import NetlistError
from memspice.netlist import emit, fmt
from memspice.tech import builtin


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (-0.0, "0"), (1.0, "1"), (0.25, "0.25"), (-0.25, "-0.25"), (1e-6, "1e-06"),
     (125000.0, "125000"), (1 / 3, "0.3333333333333333"), (8.333333e6, "8333333")],
)
def test_fmt_is_shortest_round_trip(value: float, text: str) -> None:
    assert fmt(value) == text
    assert float(fmt(value)) == value


def test_fmt_round_trips_random_floats() -> None:
    rng = np.random.default_rng(0)
    for value in np.exp(rng.uniform(-40, 40, 500)) * rng.choice([-1, 1], 500):
        assert float(fmt(value)) == value


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1", None, True])
def test_fmt_rejects_non_finite_and_non_numbers(bad: object) -> None:
    with pytest.raises(NetlistError):
        fmt(bad)  # type: ignore[arg-type]


def test_emit_is_byte_identical_for_identical_input() -> None:
    rng = np.random.default_rng(3)
    g = [rng.uniform(1e-7, 8e-6, (3, 10)), rng.uniform(1e-7, 8e-6, (2, 8))]
    x = rng.uniform(-0.25, 0.25, 4)

    def build() -> str:
        return emit(network_deck(builtin(), InverterSizing(), [a.copy() for a in g], dc_input_sources(x.copy()), [Op()]))

    assert build() == build()
    assert "/" not in build().split("\n", 1)[1].replace('"memspice_models/', '"')  # no absolute paths


def test_deck_order_and_analyses() -> None:
    deck = inverter_chain_deck(builtin(), InverterSizing(), [Op(), Dc(Sweep("in", -0.25, 0.25, 0.05))],
                               stages=2, load_ohm=9e5)
    lines = emit(deck).splitlines()
    assert lines[0] == "inverter chain"
    assert lines[1] == '.include "memspice_models/builtin_mos.lib"'
    order = [lines.index(x) for x in (".temp 27", ".subckt inv in out vdd vss", "Vdd vdd 0 dc 0.25", ".op", ".end")]
    assert order == sorted(order)
    assert ".dc vin -0.25 0.25 0.05" in lines
    assert lines[-1] == ".end"


def test_waveforms_and_pwl_continuations() -> None:
    deck = Deck(
        "waves",
        (
            VoltageSource("a", "a", "0", 0.0, Pwl((0.0, 1e-9, 2e-9), (0.0, 0.25, -0.25))),
            VoltageSource("b", "b", "0", 0.0, Pulse(0, 1, 0, 1e-9, 1e-9, 5e-9, 10e-9)),
            VoltageSource("c", "c", "0", 0.0, Sine(0, 1, 1e3)),
            PwlOfVoltage("x", "x", "0", "a", tuple(range(20)), tuple(0.01 * i for i in range(20))),
            Resistor("1", "a", "0", 1e3),
        ),
        analyses=(Tran(1e-9, 1e-6, uic=True),),
        saves=(Save("v", "a"), Save("i", "a")),
    )
    text = emit(deck)
    assert "Va a 0 dc 0 pwl(0 0 1e-09 0.25 2e-09 -0.25)" in text
    assert "Vb b 0 dc 0 pulse(0 1 0 1e-09 1e-09 5e-09 1e-08)" in text
    assert "Vc c 0 dc 0 sin(0 1 1000)" in text
    b_lines = [line for line in text.splitlines() if line.startswith(("Bx", "+ "))]
    assert b_lines[0].startswith("Bx x 0 v=pwl(v(a), 0, 0, 1, 0.01,")
    assert all(line.startswith("+ ") for line in b_lines[1:])
    assert b_lines[-1].endswith(")")
    joined = " ".join(line.removeprefix("+ ") for line in b_lines)
    numbers = joined.split("v=pwl(v(a),", 1)[1].rstrip(")").split(",")
    assert len(numbers) == 40
    assert ".save v(a) i(va)" in text
    assert ".tran 1e-09 1e-06 uic" in text


def test_duplicate_elements_are_rejected() -> None:
    with pytest.raises(NetlistError, match="duplicate"):
        Deck("dup", (Resistor("1", "a", "0", 1.0), Resistor("1", "b", "0", 2.0)))


def test_saved_currents_name_the_element_letter() -> None:
    from memspice.circuit.deck import Save
    from memspice.errors import NetlistError

    assert Save("i", "dd").vector == "i(vdd)"
    assert Save("i", "xp0", "b").vector == "i(bxp0)" and Save("i", "xn3", "e").vector == "i(exn3)"
    assert Save("v", "l0c1").vector == "v(l0c1)"
    with pytest.raises(NetlistError, match="currents can be saved"):
        Save("i", "r1", "r")
