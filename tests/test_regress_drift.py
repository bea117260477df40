"""The harness catches what it must: numeric drift, text drift, environment change, broken decks.

Every test works on a temporary copy of the repository's goldens (never on the goldens).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.netlist.emit import emit
from memspice.regress.cases import (
    COLUMN_CONDUCTANCES_S,
    GoldenCase,
    column_deck,
    default_cases,
    inverter_vtc_deck,
)
from memspice.regress.runner import check
from memspice.sim import SimOptions
from memspice.tech.technology import builtin, builtin_models_dir

pytestmark = pytest.mark.ngspice

REPO_GOLDENS = Path(__file__).resolve().parent.parent / "netlists"
BUILTIN_CASES = ("inverter_vtc_builtin", "neuron_load_builtin", "neuron_column_builtin",
                 "network_4_3_2_builtin", "memristor_program_tran")


@pytest.fixture
def goldens(tmp_path: Path) -> Path:
    """A private copy of the repository's golden directory."""
    return Path(shutil.copytree(REPO_GOLDENS, tmp_path / "netlists"))


def _options(tmp_path: Path) -> SimOptions:
    return SimOptions(work_dir=tmp_path / "runs")


def _registry(**overrides: GoldenCase) -> list[GoldenCase]:
    return [overrides.get(case.name, case) for case in default_cases()]


def _case(name: str) -> GoldenCase:
    return next(case for case in default_cases() if case.name == name)


def _failed_signals(checks) -> set[str]:
    return {c.signal for c in checks if not c.passed}


def test_unchanged_tree_passes(goldens, tmp_path):
    report = check(goldens, options=_options(tmp_path))
    statuses = {c.case: c.status for c in report.cases}
    assert set(statuses) == {case.name for case in default_cases()}
    for name in BUILTIN_CASES:
        assert statuses[name] == "pass", report.cases
    assert statuses["inverter_vtc_sky130_tt_lvt"] in ("pass", "unavailable")
    assert report.passed()
    assert all(not c.environment_changes for c in report.cases if c.status == "pass")


def test_transistor_width_change_in_the_builder_is_text_drift_with_the_moved_signal(goldens, tmp_path):
    wider = replace(_case("inverter_vtc_builtin"),
                    build=lambda: inverter_vtc_deck(builtin(), InverterSizing().scaled(factor_n=1.05)))
    report = check(goldens, _registry(inverter_vtc_builtin=wider), BUILTIN_CASES, options=_options(tmp_path))
    by_case = {c.case: c for c in report.cases}
    drifted = by_case["inverter_vtc_builtin"]
    assert drifted.status == "fail"
    assert "-Mn out in vss vss memspice_nmos w=6e-07 l=1e-07" in drifted.text_diff
    assert "+Mn out in vss vss memspice_nmos w=6.3e-07 l=1e-07" in drifted.text_diff
    assert all(s.passed for s in drifted.signals)  # the stored deck itself still reproduces
    assert "o1" in _failed_signals(drifted.built_signals)
    assert all(by_case[name].status == "pass" for name in BUILTIN_CASES if name != "inverter_vtc_builtin")
    assert not report.passed()


def test_edited_stored_deck_is_numeric_drift_on_the_right_signal(goldens, tmp_path):
    wider = inverter_vtc_deck(builtin(), InverterSizing().scaled(factor_p=1.05), stages=2, load_ohm=0.9e6,
                              title="neuron under load")
    (goldens / "neuron_load_builtin.cir").write_text(emit(wider))
    report = check(goldens, names=["neuron_load_builtin", "inverter_vtc_builtin"], options=_options(tmp_path))
    by_case = {c.case: c for c in report.cases}
    assert by_case["inverter_vtc_builtin"].status == "pass"
    drifted = by_case["neuron_load_builtin"]
    assert drifted.status == "fail"
    assert {"o1", "o2"} <= _failed_signals(drifted.signals)
    worst = max(drifted.signals, key=lambda s: s.max_deviation)
    assert worst.max_deviation > 1e-3  # millivolts, not noise


def test_memristor_conductance_change_names_the_column_signal(goldens, tmp_path):
    g = np.array(COLUMN_CONDUCTANCES_S)
    g[2] *= 1.05  # one memristor of the column
    changed = replace(_case("neuron_column_builtin"), build=lambda: column_deck(builtin(), InverterSizing(), g))
    (goldens / "neuron_column_builtin.cir").write_text(emit(changed.build()))
    report = check(goldens, _registry(neuron_column_builtin=changed), ["neuron_column_builtin"],
                   options=_options(tmp_path))
    (column,) = report.cases
    assert column.status == "fail"
    assert "l0c0" in _failed_signals(column.signals)
    assert not column.text_diff  # the stored deck and the case agree; the goldens do not


def test_model_parameter_change_is_environment_change_and_numeric_drift(goldens, tmp_path):
    models = Path(shutil.copytree(builtin_models_dir(), tmp_path / "models"))
    card = models / "builtin_mos.lib"
    text = card.read_text()
    assert "vth0=0.10 " in text
    card.write_text(text.replace("vth0=0.10 ", "vth0=0.105 ", 1))  # nmos threshold +5 %
    report = check(goldens, names=["inverter_vtc_builtin", "memristor_program_tran"], options=_options(tmp_path),
                   model_roots={"memspice_models": models})
    by_case = {c.case: c for c in report.cases}
    inverter = by_case["inverter_vtc_builtin"]
    assert inverter.status == "fail"
    assert "o1" in _failed_signals(inverter.signals)
    assert any("memspice_models/builtin_mos.lib changed" in change for change in inverter.environment_changes)
    memristor = by_case["memristor_program_tran"]  # reads only the memristor file: untouched
    assert memristor.status == "pass" and not memristor.environment_changes


def test_broken_deck_is_an_error_for_that_deck_only(goldens, tmp_path):
    path = goldens / "network_4_3_2_builtin.cir"
    path.write_text(path.read_text().replace("Xl0n0 l0c0 l0on0 l0op0 vdd vss neuron",
                                             "Xl0n0 l0c0 l0on0 l0op0 vdd vss no_such_subckt"))
    report = check(goldens, names=list(BUILTIN_CASES), options=_options(tmp_path))
    by_case = {c.case: c for c in report.cases}
    broken = by_case["network_4_3_2_builtin"]
    assert broken.status == "error"
    assert any("stored deck does not simulate" in e for e in broken.errors)
    assert all(by_case[name].status == "pass" for name in BUILTIN_CASES if name != "network_4_3_2_builtin")


def test_cli_writes_json_and_junit_and_exits_nonzero_on_drift(goldens, tmp_path, capsys):
    table = goldens / "neuron_column_builtin.golden.csv"
    lines = table.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("l0op0")
    row = lines[5].split(",")
    row[column] = repr(float(row[column]) + 0.01)  # a golden value off by 10 mV
    lines[5] = ",".join(row)
    table.write_text("\n".join(lines) + "\n")
    json_path, junit_path = tmp_path / "r.json", tmp_path / "r.xml"
    status = main(["regress", "--dir", str(goldens), "--case", "neuron_column_builtin", "inverter_vtc_builtin",
                   "--report", str(json_path), "--junit", str(junit_path), "--jobs", "2"])
    out = capsys.readouterr().out
    assert status == 1
    assert "neuron_column_builtin" in out and "l0op0" in out and "FAIL" in out
    data = json.loads(json_path.read_text())
    assert data["passed"] is False
    column_case = next(c for c in data["cases"] if c["case"] == "neuron_column_builtin")
    failing = [s for s in column_case["signals"] if not s["passed"]]
    assert [s["signal"] for s in failing] == ["l0op0"]
    assert failing[0]["max_deviation"] == pytest.approx(0.01, rel=1e-6)
    suite = ET.parse(junit_path).getroot()
    failures = [(t.get("classname"), t.get("name")) for t in suite.iter("testcase") if t.find("failure") is not None]
    assert failures == [("netlists.neuron_column_builtin", "l0op0")]
    assert suite.get("failures") == "1"


def test_cli_update_regenerates_and_shows_the_change(goldens, tmp_path, capsys):
    table = goldens / "inverter_vtc_builtin.golden.csv"
    original = table.read_text()
    table.write_text(original.replace(original.splitlines()[3].split(",")[1], "0.125", 1))
    assert main(["regress", "--dir", str(goldens), "--case", "inverter_vtc_builtin"]) == 1
    capsys.readouterr()
    assert main(["regress", "--dir", str(goldens), "--case", "inverter_vtc_builtin", "--update"]) == 0
    out = capsys.readouterr().out
    assert "inverter_vtc_builtin" in out and "o1" in out and "updated" in out
    assert table.read_text() == original
    assert main(["regress", "--dir", str(goldens), "--case", "inverter_vtc_builtin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def test_case_whose_technology_is_missing_is_unavailable_not_failed(goldens, tmp_path):
    def missing_pdk():
        raise ConfigError("sky130 models not found")

    absent = replace(_case("inverter_vtc_sky130_tt_lvt"), build=missing_pdk)
    report = check(goldens, _registry(inverter_vtc_sky130_tt_lvt=absent),
                   ["inverter_vtc_sky130_tt_lvt", "inverter_vtc_builtin"], options=_options(tmp_path))
    by_case = {c.case: c for c in report.cases}
    assert by_case["inverter_vtc_sky130_tt_lvt"].status == "unavailable"
    assert "sky130 models not found" in by_case["inverter_vtc_sky130_tt_lvt"].errors[0]
    assert by_case["inverter_vtc_builtin"].status == "pass"
    assert report.passed()
