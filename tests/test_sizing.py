"""Inverter sizing: grid and target validation, judging and choosing, parallel devices, model
bins, and ``memspice size`` end to end on the built-in card."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memspice.characterize.layer_sizing import layer_loads
from memspice.characterize.sizing import (
    NoDesignMeetsTargets,
    SizingGrid,
    Targets,
    choose,
    copies_per_deck,
    judge,
    no_design_message,
    require_usable,
    run_sizing,
)
from memspice.circuit.builders import InverterSizing, inverter_subckt
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.netlist.emit import element_lines
from memspice.tech.technology import DeviceBin, builtin

UM = 1e-6


def _row(sizing: int, load: float, vm: float, gain: float, swing: float, power: float, rms: float = 2e-3) -> dict[str, float]:
    return {"sizing": sizing, "wn_m": UM, "wp_m": UM, "ln_m": UM, "lp_m": UM, "mn": 1, "mp": 1, "load_ohm": load,
            "inverter_v_m_v": vm, "neuron_v_m_v": vm / 2, "neuron_peak_gain": gain,
            "inverter_swing_fraction": swing, "neuron_swing_fraction": swing, "inverter_rms_v": 2 * rms,
            "neuron_rms_v": rms, "inverter_nm_l": 0.2, "inverter_nm_h": 0.2, "neuron_nm_l": 0.2, "neuron_nm_h": 0.2,
            "static_power_w": power}


def _table() -> pd.DataFrame:
    return pd.DataFrame([
        _row(0, 9e5, 0.002, 80.0, 0.99, 3e-7),   # meets, expensive
        _row(1, 9e5, -0.004, 60.0, 0.98, 2e-7),  # meets, cheapest
        _row(2, 9e5, 0.094, 70.0, 0.99, 1e-7),   # V_M far off
        _row(1, 1e5, 0.2, 5.0, 0.5, 9e-7),       # heavy load: not a design load here
    ])


def test_judge_takes_the_worst_over_design_loads_and_choose_the_least_power() -> None:
    designs = judge(_table(), [9e5], Targets())
    assert designs["meets"].tolist() == [True, True, False]
    assert choose(designs) == 1
    assert "|V_M| ≤ 10 mV misses by 84 mV (94 mV)" in designs.loc[2, "shortfall"]
    # judged over both loads, size 1 fails on every count at 100 kΩ
    both = judge(_table(), [9e5, 1e5], Targets())
    assert not both.set_index("sizing").loc[1, "meets"]
    assert both.set_index("sizing").loc[1, "static_power_w"] == pytest.approx(9e-7)


def test_no_design_message_names_the_closest_and_the_shortfall() -> None:
    designs = judge(_table(), [9e5], Targets(min_neuron_gain=100.0))
    assert choose(designs) is None
    text = no_design_message(designs, [InverterSizing()] * 3, Targets(min_neuron_gain=100.0))
    assert "closest" in text and "neuron gain ≥ 100 misses by 20 (80)" in text
    tight = judge(_table(), [9e5], Targets(max_tanh_rms_v=1e-3))
    assert "neuron tanh RMS ≤ 1 mV misses by 1 mV" in tight.loc[0, "shortfall"]


def test_grid_and_targets_validation() -> None:
    with pytest.raises(ConfigError, match="no point"):
        SizingGrid((), (UM,), (UM,), (UM,))
    with pytest.raises(ConfigError, match="whole number"):
        SizingGrid((UM,), (UM,), (UM,), (UM,), mn=(0,))
    with pytest.raises(ConfigError, match="positive size"):
        SizingGrid((-UM,), (UM,), (UM,), (UM,))
    with pytest.raises(ConfigError, match="swing fraction"):
        Targets(min_swing_fraction=95.0)
    grid = SizingGrid((UM, 2 * UM), (UM,), (0.1 * UM,), (0.1 * UM,), mn=(1, 2))
    assert [(s.wn_m, s.mn) for s in grid.sizings()] == [(UM, 1), (UM, 2), (2 * UM, 1), (2 * UM, 2)]
    nan_table = _table().assign(inverter_v_m_v=math.nan)
    with pytest.raises(ConfigError, match="no valid point"):
        require_usable(judge(nan_table, [9e5], Targets()))


def test_copies_per_deck_keeps_every_core_busy() -> None:
    assert copies_per_deck(10, workers=2) == 5
    assert copies_per_deck(1000, workers=2) <= 50
    assert copies_per_deck(1, workers=4) == 1


def test_parallel_devices_and_model_bins() -> None:
    tech = builtin()
    lines = [line for e in inverter_subckt(tech, InverterSizing(mn=3)).elements for line in element_lines(e)]
    assert lines[0].endswith(" m=3") and "m=" not in lines[1]
    with pytest.raises(ConfigError, match="positive integer"):
        InverterSizing(mn=0)
    binned = replace(tech, bins=(DeviceBin("n", 0.42 * UM, 100 * UM, 0.15 * UM, 100 * UM),))
    binned.transistor("n", "a", "d", "g", "s", "b", 99 * UM, 0.15 * UM, 4)
    with pytest.raises(ConfigError, match=r"outside the model bins .*0.42 ≤ W < 100 µm"):
        binned.transistor("n", "a", "d", "g", "s", "b", 100 * UM, 0.15 * UM)
    with pytest.raises(ConfigError, match="sizing grid: .*outside the model bins"):
        SizingGrid((150 * UM,), (UM,), (0.15 * UM,), (0.15 * UM,)).check(binned)


@pytest.mark.ngspice
def test_run_sizing_on_the_builtin_card() -> None:
    grid = SizingGrid((0.3 * UM, 0.6 * UM), (1.0 * UM, 2.0 * UM), (0.1 * UM,), (0.1 * UM,), mn=(1, 2))
    result = run_sizing(builtin(), grid, [2e5, 2e6], design_loads_ohm=[9e5], targets=Targets(min_neuron_gain=20.0),
                        step_v=2e-3)
    assert len(result.table) == 8 * 3  # the design load joins the grid
    assert result.n_decks >= 1 and result.chosen is not None
    chosen = result.chosen_row()
    assert chosen is not None and chosen["meets"]
    assert abs(chosen["worst_abs_v_m_v"]) <= 0.010 and chosen["min_neuron_gain"] >= 20.0
    # it is the cheapest design that meets the targets
    met = result.designs[result.designs["meets"]]
    assert chosen["static_power_w"] == pytest.approx(met["static_power_w"].min())
    # a second nMOS in parallel pulls the threshold down (stronger pull-down)
    t = result.table[result.table["load_ohm"] == 9e5].set_index(["wn_m", "wp_m", "mn"])
    assert t.loc[(0.6 * UM, 1.0 * UM, 2), "inverter_v_m_v"] < t.loc[(0.6 * UM, 1.0 * UM, 1), "inverter_v_m_v"] - 0.01
    # a heavier load lowers the gain
    one = result.table[result.table["sizing"] == result.chosen].sort_values("load_ohm")
    assert np.all(np.diff(one["neuron_peak_gain"].to_numpy()) > 0)
    with pytest.raises(NoDesignMeetsTargets, match="misses by"):
        run_sizing(builtin(), grid, [9e5], targets=Targets(min_neuron_gain=1e4), step_v=2e-3)


@pytest.mark.ngspice
def test_size_command_writes_tables_plots_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "size"
    code = main(["size", "--out", str(out), "--wn", "0.6,1.2", "--wp", "1,2", "--ln", "0.1", "--lp", "0.1",
                 "--loads", "geom:2e5:2e6:3", "--min-gain", "20", "--step", "2e-3", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_sizes"] == 4 and summary["chosen"]["meets"]
    for name in ("sizing_table.csv", "sizing_designs.csv", "sizing_v_m.png", "sizing_gain.png",
                 "sizing_chosen_vtc.png", "summary.md", "summary.json"):
        assert (out / name).is_file(), name
    assert "## Chosen design" in (out / "summary.md").read_text()
    table = pd.read_csv(out / "sizing_table.csv")
    assert {"neuron_v_m_v", "neuron_peak_gain", "neuron_nm_l", "neuron_rms_v", "static_power_w"} <= set(table.columns)


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--min-gain", "1e4"], "no design in the grid of 1 sizes meets the targets; the closest",
                 marks=pytest.mark.ngspice),
    (["--mn", "1.5"], "whole numbers"),
    (["--ln", "0.001"], "below builtin's minimum"),
    (["--design-loads", "-3"], "positive"),
    (["--min-swing", "120"], "swing fraction"),
    (["--tech", "user"], "--lib"),
])
def test_size_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    out = tmp_path / "never"
    base = ["size", "--out", str(out), "--wn", "0.6", "--wp", "1", "--ln", "0.1", "--lp", "0.1", "--loads", "9e5",
            "--step", "5e-3"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_layer_loads_sum_the_next_crossbar_rows() -> None:
    g0 = np.full((2, 2 * 3 + 2), 1e-6)  # 3 inputs -> 2 neurons
    g1 = np.array([[1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6], [1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6]])  # 2 -> 2
    (layer, neurons, median, heaviest), = layer_loads([g0, g1])
    assert (layer, neurons) == (0, 2)
    # rows ip0, ip1, in0, in1 carry 2, 4, 6, 8 µS in total; the bias rows drive nothing of layer 0
    assert heaviest == pytest.approx(1 / 8e-6) and median == pytest.approx(1 / 5e-6)


@pytest.mark.ngspice
def test_size_command_sizes_each_hidden_layer_of_a_network(tmp_path: Path) -> None:
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.train.network_io import TrainedNetwork, save_network

    rng = np.random.default_rng(3)
    topology = (4, 3, 2)
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
    save_network(TrainedNetwork(topology, g, phax_reference_calibration()), tmp_path / "net")
    out = tmp_path / "size"
    assert main(["size", "--out", str(out), "--wn", "0.6,1.2", "--wp", "1,2", "--ln", "0.1", "--lp", "0.1",
                 "--loads", "9e5", "--min-gain", "5", "--step", "2e-3", "--no-plots", "--network",
                 str(tmp_path / "net")]) == 0
    layers = pd.read_csv(out / "sizing_layers.csv")
    assert layers["layer"].tolist() == [0] and layers.loc[0, "neurons"] == 3
    loads = layer_loads(g)[0]
    assert layers.loc[0, "heaviest_load_ohm"] == pytest.approx(loads[3])
    table = pd.read_csv(out / "sizing_table.csv")
    assert np.isclose(table["load_ohm"], loads[3]).any()  # the layer's load was simulated
    assert "## Per-layer sizing" in (out / "summary.md").read_text()


@pytest.mark.ngspice
def test_out_of_bin_sizes_of_a_user_library_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the failed run's kept directory goes here
    # a binned copy of the built-in card whose only bins cover W = 0.3-5 µm: memspice does not
    # know these bins, so ngspice's "could not find a valid modelname" becomes the error
    card = (Path(__file__).resolve().parent.parent / "memspice" / "data" / "models" / "builtin_mos.lib").read_text()
    lib = card.replace(".model memspice_nmos nmos level=54 version=4.8.1",
                       ".model bn.1 nmos level=54 version=4.8.1 lmin=5e-8 lmax=1e-5 wmin=3e-7 wmax=5e-6")
    lib = lib.replace(".model memspice_pmos pmos level=54 version=4.8.1",
                      ".model bp.1 pmos level=54 version=4.8.1 lmin=5e-8 lmax=1e-5 wmin=3e-7 wmax=5e-6")
    (tmp_path / "binned.lib").write_text(lib)
    base = ["size", "--tech", "user", "--lib", str(tmp_path / "binned.lib"), "--nmos", "bn", "--pmos", "bp",
            "--wp", "1", "--ln", "0.1", "--lp", "0.1", "--loads", "9e5", "--step", "5e-3", "--min-gain", "1",
            "--max-vm", "500", "--no-plots"]
    assert main([*base, "--wn", "1", "--out", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    assert main([*base, "--wn", "1,8", "--out", str(tmp_path / "bad"), "--timeout", "60"]) == 2
    err = capsys.readouterr().err
    assert "outside the model bins of bn/bp" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_parallel_devices_average_their_threshold_mismatch() -> None:
    from memspice.characterize.decks import sample_mismatch

    one = sample_mismatch(np.random.default_rng(4), InverterSizing(), 5e-9, 0.01)
    four = sample_mismatch(np.random.default_rng(4), InverterSizing(mn=4, mp=4), 5e-9, 0.01)
    assert four.dvth_n_v == pytest.approx(one.dvth_n_v / 2) and four.dvth_p_v == pytest.approx(one.dvth_p_v / 2)
