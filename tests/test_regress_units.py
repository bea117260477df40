"""Pure tests of the regression harness (no ngspice): normalization, diffs, comparisons, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memspice.circuit.deck import ModelRoot
from memspice.errors import ConfigError, SimFailed
from memspice.regress.command import find_golden_dir
from memspice.regress.compare import align, compare_signals, netlist_diff, normalize_netlist
from memspice.regress.golden import Environment, GoldenMeta, Tolerance, model_file_hashes, read_table, write_table
from memspice.sim.version import parse_version


def test_normalization_ignores_whitespace_and_comments_but_keeps_title():
    text = "* title line\n.include  \"a/b.lib\"\n\n* a comment\nR1   a  b\t1000  \n.end\n"
    assert normalize_netlist(text) == ["* title line", '.include "a/b.lib"', "R1 a b 1000", ".end"]


def test_netlist_diff_is_empty_for_cosmetic_changes_and_names_the_changed_line():
    golden = "deck\nM1 d g s b nmos w=6e-07 l=1e-07\n.end\n"
    assert netlist_diff(golden, "deck\n*note\nM1  d g s b nmos   w=6e-07 l=1e-07\n.end\n") == ""
    diff = netlist_diff(golden, "deck\nM1 d g s b nmos w=6.3e-07 l=1e-07\n.end\n", "old", "new")
    assert "--- old" in diff and "+++ new" in diff
    assert "-M1 d g s b nmos w=6e-07 l=1e-07" in diff
    assert "+M1 d g s b nmos w=6.3e-07 l=1e-07" in diff


def test_tolerance_limit_and_validation():
    tol = Tolerance(1e-3, 0.01)
    np.testing.assert_allclose(tol.limit(np.array([0.0, -2.0])), [1e-3, 0.021])
    with pytest.raises(ConfigError):
        Tolerance(-1.0)
    with pytest.raises(ConfigError):
        Tolerance(float("nan"))


def test_compare_signals_flags_only_the_drifted_signal():
    x = np.linspace(0, 1, 11)
    golden = pd.DataFrame({"v-sweep": x, "a": x**2, "b": np.sin(x)})
    vectors = {"v-sweep": x, "a": x**2 + 1e-6, "b": np.sin(x) + np.where(x > 0.5, 0.01, 0.0)}
    checks = {c.signal: c for c in compare_signals(golden, "v-sweep", vectors, {"a": Tolerance(1e-5), "b": Tolerance(1e-3)})}
    assert checks["a"].passed and checks["a"].max_deviation == pytest.approx(1e-6)
    assert not checks["b"].passed
    assert checks["b"].max_deviation == pytest.approx(0.01)
    assert checks["b"].at_x > 0.5
    assert checks["b"].worst_ratio == pytest.approx(10.0)


def test_compare_signals_reports_missing_signals_and_uncovered_ranges():
    x = np.linspace(0, 1, 5)
    golden = pd.DataFrame({"time": x, "a": x})
    checks = compare_signals(golden, "time", {"time": x}, {"a": Tolerance(1.0), "zz": Tolerance(1.0)})
    assert [c.passed for c in checks] == [False, False]
    assert "simulation results" in checks[0].note and "golden table" in checks[1].note
    short = compare_signals(golden, "time", {"time": x[:3], "a": x[:3]}, {"a": Tolerance(1.0)})
    assert not short[0].passed and "range" in short[0].note


def test_align_interpolates_transient_time_points():
    golden_x = np.linspace(0, 1, 11)
    new_x = np.linspace(0, 1, 37)
    np.testing.assert_allclose(align(golden_x, new_x, 2 * new_x), 2 * golden_x)


def test_table_round_trips_exactly(tmp_path):
    table = pd.DataFrame({"v-sweep": [0.1, 1 / 3], "i(vdd)": [1.234567890123e-11, -7.0]})
    write_table(tmp_path / "t.csv", table)
    back = read_table(tmp_path / "t.csv")
    assert list(back.columns) == ["v-sweep", "i(vdd)"]
    np.testing.assert_array_equal(back.to_numpy(), table.to_numpy())


def test_meta_round_trips_and_reports_environment_changes():
    meta = GoldenMeta("c", "d", 0, "v-sweep", {"o1": Tolerance(1e-4, 1e-3)}, (("ngbehavior", "hsa"),),
                      Environment("39", {"r/a.lib": "aa" * 32}))
    back = GoldenMeta.from_json(meta.to_json(), "test")
    assert back == meta
    changes = Environment("40", {"r/a.lib": "bb" * 32, "r/b.lib": "cc" * 32}).changes_from(meta.environment)
    assert changes[0] == "ngspice version 39 -> 40"
    assert any("r/a.lib changed" in c for c in changes) and any("r/b.lib is new" in c for c in changes)
    with pytest.raises(ConfigError, match="malformed"):
        GoldenMeta.from_json('{"case": "c"}', "broken.meta.json")


def test_model_hashes_follow_nested_includes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "top.lib").write_text('.include "sub/inner.lib"\n')
    (tmp_path / "sub" / "inner.lib").write_text(".model m nmos\n.include 'gone.lib'\n")
    deck = '.include "root/top.lib"\n.end\n'
    hashes = model_file_hashes(deck, (ModelRoot("root", str(tmp_path)),))
    assert set(hashes) == {"root/top.lib", "root/sub/inner.lib", "root/sub/gone.lib"}
    assert hashes["root/sub/gone.lib"] == "missing"
    before = hashes["root/sub/inner.lib"]
    (tmp_path / "sub" / "inner.lib").write_text(".model m nmos vth0=0.105\n")
    assert model_file_hashes(deck, (ModelRoot("root", str(tmp_path)),))["root/sub/inner.lib"] != before


def test_find_golden_dir_prefers_explicit_then_project(tmp_path):
    project = tmp_path / "proj"
    (project / "netlists").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "deep" / "er").mkdir(parents=True)
    assert find_golden_dir(None, project / "deep" / "er") == project / "netlists"
    assert find_golden_dir(tmp_path, project) == tmp_path
    with pytest.raises(ConfigError):
        find_golden_dir(None, tmp_path)
    with pytest.raises(ConfigError):
        find_golden_dir(tmp_path / "absent", project)


def test_parse_version():
    assert parse_version("******\n** ngspice-39 : Circuit level simulation program\n") == "39"
    with pytest.raises(SimFailed):
        parse_version("something else")
