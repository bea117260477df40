"""Nothing a user types reaches a deck unchecked."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing, crossbar_layer
from memspice.circuit.deck import Deck, Include, Save, Sweep
from memspice.circuit.elements import Pwl, PwlOfVoltage, Resistor, SubcktInstance, Transistor, VoltageSource
from memspice.errors import ConfigError, NetlistError
from memspice.tech import builtin

INJECTIONS = [
    "a\n.control\nshell rm -rf /\n.endc",
    "a\nshell echo pwned",
    ".include /etc/passwd",
    "a b",
    "shell",
    "control",
    "a;b",
    "a(b)",
    "",
    "a" * 65,
    "a\r.end",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_node_names_cannot_smuggle_commands(evil: str) -> None:
    with pytest.raises(NetlistError):
        Resistor("1", evil, "0", 1e3)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_element_and_model_names_cannot_smuggle_commands(evil: str) -> None:
    if evil not in ("shell", "control"):  # element names follow a type letter: "Vshell" is harmless
        with pytest.raises(NetlistError):
            VoltageSource(evil, "a", "0", 1.0)
    with pytest.raises(NetlistError):
        Transistor("1", "d", "g", "s", "b", evil)
    with pytest.raises(NetlistError):
        SubcktInstance("1", ("a",), evil)


@pytest.mark.parametrize("evil", ["a\n.control", "x\nshell ls", "é"])
def test_titles_and_params_are_checked(evil: str) -> None:
    with pytest.raises(NetlistError):
        Deck(evil, ())
    with pytest.raises(NetlistError):
        Transistor("1", "d", "g", "s", "b", "nmos", ((evil, 1.0),))


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b", "a b.lib", 'a".lib', "a\n.control"])
def test_include_paths_must_be_plain_relative(path: str) -> None:
    with pytest.raises(NetlistError):
        Include("root", path)


def test_options_and_settings_are_closed_sets() -> None:
    with pytest.raises(NetlistError, match="option"):
        Deck("t", (), options=(("shell", 1.0),))
    with pytest.raises(NetlistError, match="setting"):
        Deck("t", (), settings=(("ngbehavior", "hsa\nshell ls"),))
    with pytest.raises(NetlistError, match="model root"):
        Deck("t", (), includes=(Include("nowhere", "a.lib"),))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, "1k", None])
def test_resistances_must_be_finite_and_positive(bad: object) -> None:
    with pytest.raises(NetlistError):
        Resistor("1", "a", "0", bad)  # type: ignore[arg-type]


def test_conductances_must_be_positive_and_finite() -> None:
    g = np.full((2, 6), 1e-6)
    crossbar_layer(0, g)
    for value in (0.0, -1e-6, np.nan, np.inf):
        bad = g.copy()
        bad[1, 3] = value
        with pytest.raises(NetlistError):
            crossbar_layer(0, bad)


def test_sweeps_saves_and_sizing_are_checked() -> None:
    with pytest.raises(NetlistError):
        Sweep("in", 0.0, 1.0, -0.1)
    with pytest.raises(NetlistError):
        Save("x", "a")
    with pytest.raises(ConfigError):
        InverterSizing(wn_m=-1e-6)
    with pytest.raises(ConfigError):
        InverterSizing(wn_m=0.6)  # metres, not micrometres
    with pytest.raises(ConfigError, match="below"):
        builtin().transistor("n", "1", "d", "g", "s", "b", 1e-6, 1e-9)


@pytest.mark.parametrize("bad", [np.array([0.1, np.nan]), np.array([np.inf]), [0.1, True], [0.1, "2"], "0.1 0.2",
                                 [0.1, None], np.array(["1"])])
def test_pwl_lists_reject_non_finite_or_non_numeric_values(bad) -> None:
    with pytest.raises(NetlistError):
        PwlOfVoltage("x", "a", "0", "idx", tuple(float(i) for i in range(len(bad))), bad)
    with pytest.raises(NetlistError):
        Pwl(tuple(float(i) for i in range(len(bad))), bad)


def test_pwl_lists_accept_arrays_and_store_plain_floats() -> None:
    src = PwlOfVoltage("x", "a", "0", "idx", np.arange(3.0), np.array([0.1, -0.25, 0.0], dtype=np.float32))
    assert src.xs == (0.0, 1.0, 2.0) and all(type(v) is float for v in src.ys)
    with pytest.raises(NetlistError):
        Pwl((0.0, -1e-9), (0.0, 1.0))
