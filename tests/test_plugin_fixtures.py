"""The plug-in's golden fixtures, exercised in inner pytest runs (pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

DECK_MODULE = '''
from memspice.circuit.builders import InverterSizing
from memspice.circuit.deck import Dc, Sweep
from memspice.regress.cases import inverter_vtc_deck
from memspice.tech.technology import builtin

WIDTH = {width}

def deck():
    return inverter_vtc_deck(builtin(), InverterSizing().scaled(factor_n=WIDTH))

def test_text(netlist_regression):
    netlist_regression.check(deck(), "goldens/inverter.cir")

def test_signals(spice_regression):
    spice_regression.check(deck(), "goldens/inverter.csv", {{"o1": 1e-4, "i(vdd)": (1e-9, 1e-3)}})
'''


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An inner pytest that loads exactly one copy of the memspice plug-in."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "memspice.pytest_plugin", "-p", "no:cacheprovider", *args)


def test_missing_golden_fails_with_advice(inner):
    inner.makepyfile(test_deck=DECK_MODULE.format(width=1.0))
    result = _run(inner, "-k", "test_text")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*does not exist; create it with pytest --memspice-update-goldens*"])


@pytest.mark.ngspice
def test_update_then_pass_then_catch_a_five_percent_width_change(inner):
    inner.makepyfile(test_deck=DECK_MODULE.format(width=1.0))
    _run(inner, "--memspice-update-goldens").assert_outcomes(passed=2)
    golden = inner.path / "goldens" / "inverter.cir"
    assert "w=6e-07" in golden.read_text()
    _run(inner).assert_outcomes(passed=2)

    inner.makepyfile(test_deck=DECK_MODULE.format(width=1.05))
    result = _run(inner)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*netlist differs from golden*inverter.cir*",
        "*-Mn out in vss vss memspice_nmos w=6e-07 l=1e-07",
        "*+Mn out in vss vss memspice_nmos w=6.3e-07 l=1e-07",
    ])
    result.stdout.fnmatch_lines(["*signals drifted from golden*inverter.csv*", "*o1: max deviation*exceeds abs=1e-04*"])


def test_cosmetic_text_changes_pass(inner):
    inner.makepyfile(test_deck=DECK_MODULE.format(width=1.0))
    _run(inner, "-k", "test_text", "--memspice-update-goldens").assert_outcomes(passed=1, deselected=1)
    golden = inner.path / "goldens" / "inverter.cir"
    text = golden.read_text().replace(" ", "   ").replace("\n.temp", "\n* a reviewer's comment\n\n.temp")
    golden.write_text(text)
    _run(inner, "-k", "test_text").assert_outcomes(passed=1, deselected=1)


def test_ngspice_marker_modes_still_work(inner):
    inner.makepyfile(test_marked='''
import pytest

@pytest.mark.ngspice
def test_needs_ngspice():
    pass
''')
    _run(inner, "--memspice-ngspice=disabled").assert_outcomes(skipped=1)
    _run(inner, "--memspice-ngspice=required").assert_outcomes(passed=1)
