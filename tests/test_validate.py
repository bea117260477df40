"""Validation back in SPICE: batching, comparison, energy, non-idealities, failures, resume, Dask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing, dc_input_sources, network_deck, network_output_saves
from memspice.circuit.deck import Op
from memspice.circuit.wiring import output_node
from memspice.errors import ConfigError, DataError
from memspice.fit.calibration import phax_reference_calibration
from memspice.sim import simulate
from memspice.tech import builtin
from memspice.train.network_io import TrainedNetwork, save_network
from memspice.validate.api import RunSettings, plan_batches, validate_network
from memspice.validate.decks import NetworkCircuit, balanced_cuts, dc_arrays, dc_batch_deck, similarity_order, sweep_work
from memspice.validate.nonideal import NonIdeality, apply_device_nonidealities, wired_network

TOPOLOGY = (8, 4, 3)


def tiny_network(seed: int = 1) -> TrainedNetwork:
    rng = np.random.default_rng(seed)
    cal = phax_reference_calibration()
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(TOPOLOGY[:-1], TOPOLOGY[1:]))
    return TrainedNetwork(TOPOLOGY, g, cal)


def tiny_data(n: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.25, 0.25, (n, TOPOLOGY[0])), rng.integers(0, TOPOLOGY[-1], n)


def test_similarity_order_is_a_permutation_that_shortens_the_path() -> None:
    x = np.random.default_rng(0).uniform(size=(60, 5))
    order = similarity_order(x)
    assert sorted(order.tolist()) == list(range(60))
    path = lambda o: np.linalg.norm(np.diff(x[o], axis=0), axis=1).sum()  # noqa: E731
    assert path(order) < 0.6 * path(np.arange(60))


def test_similarity_order_in_blocks_is_a_permutation_from_row_zero_and_shortens_the_path() -> None:
    x = np.random.default_rng(1).uniform(size=(500, 4))
    path = lambda o: np.linalg.norm(np.diff(x[o], axis=0), axis=1).sum()  # noqa: E731
    whole, blocked = similarity_order(x), similarity_order(x, block=64)
    for order in (whole, blocked):
        assert sorted(order.tolist()) == list(range(500)) and order[0] == 0
    assert path(whole) < path(blocked) < 0.5 * path(np.arange(500))


def test_plan_batches_cuts_one_path_through_the_given_features() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(40, 3))
    features = np.repeat(np.arange(4.0), 10)[rng.permutation(40)][:, None]  # four tight groups
    batches = plan_batches(x, 10, "similarity", features)
    assert len(batches) == 4 and all(len(b) for b in batches)
    path = np.concatenate(batches)
    assert sorted(path.tolist()) == list(range(40))
    groups = features[path, 0]
    assert int((np.diff(groups) != 0).sum()) == 3  # the path visits a group completely before leaving
    given = plan_batches(x, 15, "given")  # 3 batches are needed; they are made equal
    assert [b.tolist() for b in given] == [list(range(0, 14)), list(range(14, 27)), list(range(27, 40))]
    assert [len(b) for b in plan_batches(x, 100, "given")] == [40]


def test_sweep_work_grows_with_the_extrapolation_error() -> None:
    t = np.arange(8.0)
    straight = sweep_work(np.c_[t, 2 * t])  # linear: the predictor is exact (error 0, up to rounding)
    bent = sweep_work(np.c_[t, t**2 / 10])  # constant second difference 0.2 V
    assert straight.shape == (8,) and np.all(straight[2:] == 2.0)  # clipped at the minimum
    assert np.allclose(bent, 7.5)  # every point at the median error gets the median work
    second = np.random.default_rng(5).lognormal(-3, 1, 50)  # second differences of a 1-D path (V)
    work = sweep_work(np.cumsum(np.cumsum(np.r_[0.0, 0.0, second]))[:, None])
    ranked = work[2:][np.argsort(second)]
    assert np.all(np.diff(ranked) >= 0) and ranked[-1] > ranked[len(ranked) // 2] > ranked[0]


def test_balanced_cuts_equalise_work_and_never_leave_a_batch_empty() -> None:
    work = np.r_[np.full(60, 2.0), np.full(40, 10.0)]  # the end of the path is expensive
    parts = balanced_cuts(work, 2)
    assert [len(p) for p in parts] == [74, 26]  # 60·2 + 14·10 = 260 = 26·10: exactly half of 520
    assert work[parts[0]].sum() == work[parts[1]].sum()
    assert np.array_equal(np.concatenate(parts), np.arange(100))
    tiny = balanced_cuts(np.array([1.0, 1.0, 50.0]), 3)
    assert [p.tolist() for p in tiny] == [[0], [1], [2]]
    assert [len(p) for p in balanced_cuts(np.ones(3), 5)] == [1, 1, 1]


def test_plan_batches_balances_predicted_work_along_the_path() -> None:
    # dense, smooth start and scattered end: equal-size halves would give the second worker more work
    rng = np.random.default_rng(4)
    dense = np.linspace(0, 1, 150)[:, None] * np.ones((1, 3))
    sparse = rng.uniform(2, 50, (50, 3))
    features = np.vstack([dense, sparse])
    batches = plan_batches(features, 100, "similarity", features)
    path = np.concatenate(batches)
    work = sweep_work(features[path])
    halves = np.split(work, [len(batches[0])])
    assert len(batches[0]) > len(batches[1])
    assert abs(halves[0].sum() - halves[1].sum()) <= work.max()


def test_in_turn_lets_holders_through_in_the_given_order_whoever_arrives_first() -> None:
    import threading
    import time

    from memspice.validate.execute import InTurn

    turns, seen = InTurn([4, 0, 7, 2]), []

    def take(index: int) -> None:
        with turns.hold(index):
            seen.append(index)
            time.sleep(0.002)

    threads = [threading.Thread(target=take, args=(i,)) for i in (2, 7, 0, 4)]  # the last in turn starts first
    for thread in threads:
        thread.start()
        time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=10)
    assert seen == [4, 0, 7, 2]


def test_device_nonidealities_are_seeded_and_stay_in_window() -> None:
    g = tiny_network().conductances
    spec = NonIdeality(variation_sigma=0.2, fault_rate=0.2, seed=3, g_min_siemens=0.125e-6, g_max_siemens=8e-6)
    a, b = apply_device_nonidealities(g, spec), apply_device_nonidealities(g, spec)
    for ga, gb in zip(a.conductances, b.conductances):
        np.testing.assert_array_equal(ga, gb)
        assert ga.min() >= 0.125e-6 and ga.max() <= 8e-6
    assert a.n_stuck > 0
    for layer, (ga, high, low) in enumerate(zip(a.conductances, a.stuck_high, a.stuck_low)):
        assert np.all(ga[high] == 8e-6) and np.all(ga[low] == 0.125e-6)
    other = apply_device_nonidealities(g, NonIdeality(variation_sigma=0.2, fault_rate=0.2, seed=4))
    assert not np.array_equal(other.conductances[0], a.conductances[0])
    with pytest.raises(ConfigError):
        NonIdeality(fault_rate=1.5)


def test_wired_network_has_a_segment_per_cell() -> None:
    g = tiny_network().conductances
    elements = wired_network(g, 2.0)
    rows0, cols0 = g[0].shape[1], g[0].shape[0]
    wires = [e for e in elements if e.name.startswith("l0w")]
    # one row segment per cell plus one column segment per cell
    assert len(wires) == 2 * rows0 * cols0


def _batched_tiny(n: int) -> tuple[TrainedNetwork, np.ndarray, dict[str, np.ndarray]]:
    """The tiny network's batched DC arrays for ``n`` samples (built-in card)."""
    network = tiny_network()
    x, _ = tiny_data(n)
    circuit = NetworkCircuit(builtin(), InverterSizing(), network.conductances)
    return network, x, dc_arrays(simulate(dc_batch_deck(circuit, x)).plot(0), network.conductances, len(x), x)


@pytest.mark.ngspice
def test_batched_sweep_matches_one_operating_point_per_sample() -> None:
    network, x, batched = _batched_tiny(5)
    tech = builtin()
    saves = network_output_saves(network.conductances)
    for s in range(len(x)):
        deck = network_deck(tech, InverterSizing(), network.conductances, dc_input_sources(x[s]), [Op()], saves)
        plot = simulate(deck).plot(0)
        for layer, g in enumerate(network.conductances):
            single = np.array([plot[output_node(layer, j, "p")][0] for j in range(g.shape[0])])
            np.testing.assert_allclose(batched[f"outp{layer}"][s], single, atol=1e-6, rtol=0)


@pytest.mark.ngspice
def test_input_drive_power_is_the_power_the_first_crossbar_draws_from_the_inputs() -> None:
    """From the drivers' branch currents (batched) = from Ohm's law on each device (column voltages)."""
    from memspice.circuit.deck import Save
    from memspice.circuit.wiring import column_node, row_voltages

    network, x, batched = _batched_tiny(4)
    tech = builtin()
    g = network.conductances[0]
    n = x.shape[1]
    saves = [Save("v", column_node(0, j)) for j in range(g.shape[0])]
    for s in range(len(x)):
        deck = network_deck(tech, InverterSizing(), network.conductances, dc_input_sources(x[s]), [Op()], saves)
        plot = simulate(deck).plot(0)
        columns = np.array([plot[column_node(0, j)][0] for j in range(g.shape[0])])
        rows = row_voltages(x[s:s + 1], -x[s:s + 1], tech.rails.vdd, tech.rails.vss)[0][: 2 * n]
        device_current = g[:, : 2 * n] * (rows[None, :] - columns[:, None])  # into each column, from each row
        expected = float(np.sum(rows * device_current.sum(axis=0)))
        assert expected > 1e-7
        assert batched["p_in"][s] == pytest.approx(expected, rel=1e-6)


@pytest.mark.ngspice
def test_validate_network_writes_a_complete_report(tmp_path: Path) -> None:
    network = tiny_network()
    x, labels = tiny_data(30)
    report = validate_network(network, builtin(), x, labels, tmp_path / "run",
                              settings=RunSettings(batch_size=12, workers=2, transient_samples=2))
    assert report.complete
    c = report.comparison
    assert c is not None and c.n_samples == 30
    assert c.confusion_spice.sum() == 30 and c.confusion_model.sum() == 30
    np.testing.assert_array_equal(report.sample_index, np.arange(30))
    # model side comes from the trainer's own forward
    np.testing.assert_allclose(report.model[-1].outp, network.predict(x), atol=1e-12)
    assert set(c.layer_errors["output"]) == {"outn", "outp"} and len(c.neuron_errors) == 2 * (4 + 3)
    assert np.all(report.power_w > 0)
    assert np.all(np.isfinite(report.transient["delay_s"])) and np.all(report.transient["energy_j"] > 0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["batches_simulated"] == 3
    times = summary["dc_batch_elapsed_s"]
    assert len(times) == 3 and all(0 < t <= summary["dc_elapsed_s"] for t in times)
    for name in ("report.md", "scatter.png", "error_histograms.png", "confusion.png", "neuron_errors.csv",
                 "transient.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert "transient.png" in (tmp_path / "run" / "report.md").read_text()
    waves = report.transient_waves
    assert np.all(np.diff(waves["time_s"]) > 0) and waves["time_s"][-1] == pytest.approx(3 * 1e-6, rel=1e-9)
    assert waves["outp"].shape == (len(waves["time_s"]), network.topology[-1]) and waves["power_w"].shape == waves["time_s"].shape
    np.testing.assert_array_equal(waves["sample"], [0, 1])
    # the plotted input-driver power is the one the first sample's input energy integrates
    inside = (waves["time_s"] >= 1e-6 * (1 - 1e-12)) & (waves["time_s"] <= 2e-6 * (1 + 1e-12))
    assert waves["input_power_w"].shape == waves["time_s"].shape
    assert np.trapezoid(waves["input_power_w"][inside], waves["time_s"][inside]) == pytest.approx(
        report.transient["input_energy_j"][0], rel=1e-9)
    import pandas as pd

    table = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert len(table) == 30 and "spice_l1_outp2" in table and "model_l0_outn3" in table
    assert table["delay_s"].notna().sum() == 2 and table["energy_to_settle_j"].notna().sum() == 2
    assert table["input_drive_power_w"].notna().all() and (table["input_drive_power_w"] > 0).all()
    assert table["input_energy_j"].notna().sum() == 2
    # the drivers deliver, over a period, about their DC power times the period (the ramp is 0.1 ns)
    dc_energy = table["input_drive_power_w"].to_numpy()[:2] * 1e-6
    np.testing.assert_allclose(report.transient["input_energy_j"], dc_energy, rtol=0.05)
    assert summary["total_static_power_w"]["mean"] == pytest.approx(
        summary["static_power_w"]["mean"] + summary["input_drive_power_w"]["mean"])
    np.testing.assert_array_equal(table["energy_j"].to_numpy()[:2], report.transient["energy_j"])


@pytest.mark.ngspice
def test_transient_end_values_match_the_dc_operating_points(tmp_path: Path) -> None:
    from memspice.validate.decks import TransientSpec
    from memspice.validate.execute import BatchJob, run_job

    from test_validate_delay import alternating_inputs, switching_network

    network = switching_network()
    x = alternating_inputs()
    circuit = NetworkCircuit(builtin(), InverterSizing(), network.conductances)
    tran = run_job(BatchJob(0, np.arange(3), x, circuit, "transient", TransientSpec(50e-9, 0.1e-9)))
    dc = run_job(BatchJob(0, np.arange(3), x, circuit, "dc"))
    np.testing.assert_allclose(tran["tran_outp_last"], dc["outp1"], atol=2e-3)
    assert np.all(tran["delay_s"] >= 0) and np.all(tran["delay_s"] < 50e-9)
    assert np.all(tran["delay_s"][1:] > 1e-9)  # the samples that flip input 0 switch every output


@pytest.mark.ngspice
def test_wire_resistance_changes_outputs_and_vanishes_when_small(tmp_path: Path) -> None:
    network = tiny_network()
    x, labels = tiny_data(6)
    base = validate_network(network, builtin(), x, labels, tmp_path / "a", write_files=False)
    small = validate_network(network, builtin(), x, labels, tmp_path / "b", write_files=False,
                             nonideal=NonIdeality(wire_ohm=1e-3))
    large = validate_network(network, builtin(), x, labels, tmp_path / "c", write_files=False,
                             nonideal=NonIdeality(wire_ohm=5e3))
    np.testing.assert_allclose(small.spice[0].outn, base.spice[0].outn, atol=1e-5)
    assert np.abs(large.spice[0].outn - base.spice[0].outn).max() > 1e-4


def test_topology_mismatch_is_a_clear_data_error(tmp_path: Path) -> None:
    network = tiny_network()
    with pytest.raises(DataError, match="takes 8 inputs"):
        validate_network(network, builtin(), np.zeros((4, 9)), np.zeros(4, dtype=int), tmp_path)
    with pytest.raises(DataError, match="3 outputs"):
        validate_network(network, builtin(), np.zeros((4, 8)), np.array([0, 1, 2, 5]), tmp_path)


def test_unknown_model_evaluator_fails_before_simulating(tmp_path: Path) -> None:
    x, labels = tiny_data(4)
    with pytest.raises(ConfigError, match="evaluator"):
        validate_network(tiny_network(), builtin(), x, labels, tmp_path / "run", evaluator="no-such-model")
    assert not (tmp_path / "run").exists()


def test_cli_rejects_weights_that_do_not_fit_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main

    save_network(tiny_network(), tmp_path / "net")
    code = main(["validate", str(tmp_path / "net"), "--dataset", "digits", "--out", str(tmp_path / "v")])
    assert code == 2
    assert "takes 8 inputs" in capsys.readouterr().err


def test_importing_validate_stays_light() -> None:
    code = ("import sys, memspice.validate.api, memspice.validate.command; "
            "bad = [m for m in ('matplotlib', 'distributed', 'dask', 'PySpice') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_benchmark_script_has_a_main() -> None:
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "bench_validate.py"
    spec = importlib.util.spec_from_file_location("bench_validate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main) and set(module.CONFIGS) >= {"64-32-10/builtin", "196-100-10/builtin"}


def test_indexed_inputs_keep_only_run_edges_and_every_sample_value() -> None:
    from memspice.circuit.builders import indexed_input_sources
    from memspice.circuit.elements import PwlOfVoltage

    rng = np.random.default_rng(5)
    x = rng.choice([-0.25, 0.0, 0.25], size=(60, 4))
    x[:, 1] = -0.25  # constant input: two breakpoints
    x[10:40, 2] = 0.25  # a long run
    sources = [e for e in indexed_input_sources(x) if isinstance(e, PwlOfVoltage)]
    assert len(sources) == 4
    index = np.arange(60.0)
    for i, src in enumerate(sources):
        np.testing.assert_array_equal(np.interp(index, src.xs, src.ys), x[:, i])
    assert sources[1].xs == (0.0, 59.0)
    assert len(sources[2].xs) < 60 - 25
    single = [e for e in indexed_input_sources(x[:1]) if isinstance(e, PwlOfVoltage)]
    assert single[0].xs == (0.0,) and single[0].ys == (x[0, 0],)


def test_stored_plan_round_trips_and_is_ignored_when_it_does_not_fit(tmp_path: Path) -> None:
    from memspice.validate.api import save_plan, stored_plan

    assert stored_plan(tmp_path, 5) is None
    save_plan(tmp_path, [np.array([3, 0]), np.array([4, 1, 2])])
    got = stored_plan(tmp_path, 5)
    assert got is not None and [b.tolist() for b in got] == [[3, 0], [4, 1, 2]]
    assert stored_plan(tmp_path, 6) is None
    (tmp_path / "plan.npz").write_bytes(b"not an npz")
    assert stored_plan(tmp_path, 5) is None


def test_the_report_states_delay_energy_and_how_the_transient_ran() -> None:
    from memspice.validate.report import transient_sentence

    tran = {"samples": 8, "period_s": 1e-6, "points_per_period": 200, "elapsed_s": 0.7, "settled": 7,
            "delay_s_mean": 388.3e-9, "delay_s_max": 582.1e-9, "energy_j_mean": 16.2e-12,
            "energy_to_settle_j_mean": 6.29e-12}
    line = transient_sentence(tran)
    for part in ("8 samples, 1000 ns each", "period/200", "0.7 s", "mean 388.3 ns", "max 582.1 ns",
                 "7 of 8 settled", "6.290 pJ", "16.200 pJ"):
        assert part in line, part
    line = transient_sentence({**tran, "settled": 0, "delay_s_mean": None, "delay_s_max": None,
                               "energy_to_settle_j_mean": None})
    assert "no sample settled" in line and "16.200 pJ" in line and "until settled" not in line
