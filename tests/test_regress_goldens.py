"""memspice's own golden decks, through the plug-in's fixtures (netlist text and signals).

Golden paths are explicit (the repository's ``netlists/`` next to ``tests/``), never the cwd.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memspice.errors import ConfigError
from memspice.regress.cases import default_cases

NETLISTS = Path(__file__).resolve().parent.parent / "netlists"
CASES = {case.name: case for case in default_cases()}


def _deck(name: str):
    try:
        return CASES[name].build()
    except ConfigError as exc:  # sky130 not installed
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_builders_still_emit_the_golden_deck(name, netlist_regression):
    netlist_regression.check(_deck(name), NETLISTS / f"{name}.cir")


@pytest.mark.ngspice
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_signals_reproduce(name, spice_regression):
    case = CASES[name]
    spice_regression.check(_deck(name), NETLISTS / f"{name}.golden.csv", dict(case.tolerances), analysis=case.analysis)
