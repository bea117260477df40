"""Monte Carlo validation: seeded device draws in SPICE, next to the model on the same draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError
from memspice.tech import builtin
from memspice.train.network_io import TrainedNetwork
from memspice.validate.api import RunSettings, validate_network
from memspice.validate.montecarlo import validate_draws
from memspice.validate.nonideal import NonIdeality

TOPOLOGY = (12, 8, 4)
pytestmark = pytest.mark.ngspice  # the network's calibration is simulated, even where nothing else is


@pytest.fixture(scope="module")
def coupled_network() -> TrainedNetwork:
    """Random conductances with the built-in card's own calibration: the coupled model predicts SPICE."""
    from memspice.characterize.calibrate import calibrate

    cal = calibrate(builtin(), InverterSizing())
    rng = np.random.default_rng(0)
    g = tuple(np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
              for n, m in zip(TOPOLOGY[:-1], TOPOLOGY[1:]))
    return TrainedNetwork(TOPOLOGY, g, cal, evaluator="coupled")


def _data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(-0.25, 0.25, (n, TOPOLOGY[0])), rng.integers(0, TOPOLOGY[-1], n)


def _spec(network: TrainedNetwork, **kw) -> NonIdeality:
    d = network.calibration.device
    return NonIdeality(g_min_siemens=d.g_min_siemens, g_max_siemens=d.g_max_siemens, **kw)


def test_the_model_on_the_drawn_devices_predicts_spice_where_the_ideal_model_cannot(
        coupled_network: TrainedNetwork, tmp_path: Path) -> None:
    x, labels = _data()
    report = validate_network(coupled_network, builtin(), x, labels, tmp_path / "run",
                              nonideal=_spec(coupled_network, variation_sigma=0.3, fault_rate=0.05, seed=4),
                              settings=RunSettings(batch_size=40, workers=1))
    drawn = report.summary["drawn_devices_model"]
    last = [r for r in drawn["layer_errors"] if r["output"] == "outp"][-1]
    ideal = report.comparison.layer_errors.query("output == 'outp'").iloc[-1]
    assert last["rms_v"] < 2e-3, "the coupled model on the netlisted conductances tracks SPICE"
    assert ideal["rms_v"] > 10 * last["rms_v"], "the devices moved the outputs far from the trained model"
    assert drawn["agreement"] >= report.summary["agreement"]
    text = (tmp_path / "run" / "report.md").read_text()
    assert "## Non-ideal devices" in text and "model on the drawn devices" in text


def test_draws_are_seeded_runs_summarised(coupled_network: TrainedNetwork, tmp_path: Path) -> None:
    x, labels = _data(30)
    spec = _spec(coupled_network, variation_sigma=0.3, seed=7)
    settings = RunSettings(batch_size=30, workers=2)
    run = validate_draws(coupled_network, builtin(), x, labels, tmp_path / "mc", spec, 3, settings)
    assert run.complete and list(run.table["seed"]) == [7, 8, 9]
    assert run.table["spice_accuracy"].nunique() > 1 or run.table["ideal_model_agreement"].nunique() > 1, \
        "different seeds draw different devices"
    single = validate_network(coupled_network, builtin(), x, labels, tmp_path / "one",
                              nonideal=_spec(coupled_network, variation_sigma=0.3, seed=8), settings=settings,
                              write_files=False)
    np.testing.assert_array_equal(run.reports[1].spice[-1].outp, single.spice[-1].outp)  # draw k: seed + k
    assert not np.array_equal(run.reports[0].spice[-1].outp, single.spice[-1].outp)
    for k in range(3):
        assert (tmp_path / "mc" / f"draw_{k:03d}" / "summary.json").is_file()
    on_disk = pd.read_csv(tmp_path / "mc" / "draws.csv")
    np.testing.assert_allclose(on_disk["spice_accuracy"], run.table["spice_accuracy"])
    summary = json.loads((tmp_path / "mc" / "draws.json").read_text())
    assert summary["spice_accuracy"]["mean"] == pytest.approx(run.table["spice_accuracy"].mean())
    assert summary["seeds"] == [7, 9] and (tmp_path / "mc" / "draws.png").is_file()


def test_draws_need_something_to_draw(coupled_network: TrainedNetwork, tmp_path: Path) -> None:
    x, labels = _data(5)
    with pytest.raises(ConfigError, match="variation or faults"):
        validate_draws(coupled_network, builtin(), x, labels, tmp_path, _spec(coupled_network, wire_ohm=1.0), 3)
    with pytest.raises(ConfigError, match="at least 1"):
        validate_draws(coupled_network, builtin(), x, labels, tmp_path, _spec(coupled_network, variation_sigma=0.1), 0)
    assert not any(tmp_path.iterdir()), "nothing is simulated or written"


def test_the_cli_runs_draws_and_prints_their_spread(coupled_network: TrainedNetwork, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main
    from memspice.train.network_io import save_network

    rng = np.random.default_rng(2)
    topology = (64, 8, 10)  # the digits' 64 features, 10 classes
    g = tuple(np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
              for n, m in zip(topology[:-1], topology[1:]))
    save_network(TrainedNetwork(topology, g, coupled_network.calibration, evaluator="coupled"), tmp_path / "net")
    base = ["validate", str(tmp_path / "net"), "--split", "all", "--samples", "20", "--batch-size", "20",
            "--workers", "1", "--out", str(tmp_path / "mc")]
    assert main([*base, "--draws", "2"]) == 2
    assert "variation or faults" in capsys.readouterr().err
    assert main([*base, "--draws", "2", "--variation", "0.2", "--seed", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["draws"] == 2 and summary["seeds"] == [3, 4] and summary["complete"]
    assert 0.0 <= summary["spice_accuracy"]["min"] <= summary["spice_accuracy"]["max"] <= 1.0
    assert main([*base, "--draws", "2", "--variation", "0.2", "--seed", "3", "--resume"]) == 0
    assert "2 device draws" in capsys.readouterr().out
    for k in range(2):
        on_disk = json.loads((tmp_path / "mc" / f"draw_{k:03d}" / "summary.json").read_text())
        assert on_disk["batches_reused"] == 1 and on_disk["batches_simulated"] == 0, "resume reuses every draw"
