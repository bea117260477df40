"""Family decks, sweeps and the characterize/calibrate CLI with the real ngspice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.characterize.decks import ChainCopy, family_deck, stage_node
from memspice.characterize.sweeps import Condition, load_copies, monte_carlo_copies, run_family
from memspice.circuit.builders import InverterSizing, inverter_chain_deck
from memspice.circuit.deck import Dc, Sweep
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.netlist import emit
from memspice.sim import simulate
from memspice.tech.technology import builtin

pytestmark = pytest.mark.ngspice


def test_family_copy_equals_the_builder_chain() -> None:
    tech, sizing = builtin(), InverterSizing()
    deck = family_deck(tech, [ChainCopy(sizing, 2e5), ChainCopy(sizing, 9e5)], step_v=5e-3)
    assert emit(deck).count(".dc") == 1  # both loads share one sweep in one process
    family = simulate(deck).plots[0]
    chain = simulate(inverter_chain_deck(tech, sizing, [Dc(Sweep("in", -0.25, 0.25, 5e-3))], stages=2,
                                         load_ohm=9e5)).plots[0]
    np.testing.assert_allclose(family[stage_node(1, 2)], chain["o2"], atol=1e-6)
    np.testing.assert_allclose(family[stage_node(1, 1)], chain["o1"], atol=1e-6)
    # a heavier load gives a smaller swing
    assert np.ptp(family[stage_node(0, 1)]) < np.ptp(family[stage_node(1, 1)])


def test_run_family_tables_and_seeded_monte_carlo() -> None:
    tech, sizing = builtin(), InverterSizing()
    cond = [Condition(tech, {"corner": "tt"})]
    result = run_family(cond, load_copies([sizing], [3e5, 1e6]), step_v=2e-3)
    m = result.metrics
    assert len(m) == 4 and set(m["stage"]) == {"inverter", "neuron"}
    neuron = m[m["stage"] == "neuron"].sort_values("load_ohm")
    assert (neuron["peak_gain"].diff().dropna() > 0).all()  # lighter load → more gain
    assert (m["power_mean_w"] > 0).all() and (m["rms_v"] < 0.05).all()
    assert len(result.curves) == 4 * 251
    a = run_family(cond, monte_carlo_copies(sizing, 9e5, 3, seed=7), step_v=5e-3, fit=False).metrics
    b = run_family(cond, monte_carlo_copies(sizing, 9e5, 3, seed=7), step_v=5e-3, fit=False).metrics
    c = run_family(cond, monte_carlo_copies(sizing, 9e5, 3, seed=8), step_v=5e-3, fit=False).metrics
    np.testing.assert_array_equal(a["v_m"].to_numpy(), b["v_m"].to_numpy())
    assert not np.allclose(a["v_m"].to_numpy(), c["v_m"].to_numpy())
    assert a["v_m"].std() > 1e-4


def test_load_grid_validation() -> None:
    with pytest.raises(ConfigError, match="not a positive"):
        load_copies([InverterSizing()], [1e5, -1e5])
    with pytest.raises(ConfigError, match="empty"):
        load_copies([InverterSizing()], [])


def test_characterize_cli_writes_tables_plots_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "char"
    code = main(["characterize", "--out", str(out), "--loads", "geom:2e5:2e6:3", "--supplies", "0.2,0.25",
                 "--mc", "2", "--step", "5e-3", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["sections"]) == {"loads", "supply", "montecarlo"}
    for name in ("loads_curves.csv", "loads_metrics.csv", "loads_vtc.png", "supply_metrics.png",
                 "montecarlo_hist.png", "summary.md", "summary.json"):
        assert (out / name).is_file(), name
    assert "| load_ohm | stage |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--loads", "1e5,-2e5"], "positive"),
    (["--corner", "xx"], "corner"),
    (["--tech", "builtin", "--corners", "tt,ss"], "only the tt corner"),
    (["--loads", "geom:0:1e6:3"], "positive ends"),
])
def test_characterize_cli_bad_input_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    out = tmp_path / "never"
    assert main(["characterize", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memspice: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_calibrate_cli_window_errors_leave_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--out", str(out), "--g-min", "8e-6", "--g-max", "1e-6"]) == 2
    assert "g_min" in capsys.readouterr().err and not out.exists()


def test_calibrate_cli_with_device_from_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--out", str(out), "--loads", "geom:2e5:2e6:4", "--degree", "2",
                 "--device-from-model", "--sigma", "1e-7"]) == 0
    data = json.loads(out.read_text())
    assert data["device"]["levels"] >= 2 and data["device"]["g_max_siemens"] > 7e-6
    assert {"load_aware", "inverter_current"} <= set(data)
    assert "noninverting c4=" in capsys.readouterr().out
