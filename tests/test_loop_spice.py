"""The closed loop, hybrid training and the corner study against real ngspice (built-in card).

One small digits network (64-8-10) trained statically, validated on 30 samples: the coupled
loop must shrink the in-situ current residual and the output error to the µV range, write its
table and plot, and reuse finished rounds when re-run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from memspice.characterize.calibrate import calibrate
from memspice.circuit.builders import InverterSizing
from memspice.datasets import features_to_voltages, load_digits, train_test_split
from memspice.errors import ConfigError
from memspice.loop.closed_loop import closed_loop
from memspice.loop.corners import corner_study
from memspice.loop.hybrid import hybrid_train
from memspice.tech import builtin
from memspice.train.evaluate import network_from_params
from memspice.train.model import PhaxNetwork
from memspice.train.trainer import TrainConfig, train
from memspice.validate.api import RunSettings

pytestmark = [pytest.mark.ngspice, pytest.mark.slow]
SETTINGS = RunSettings(batch_size=20, workers=2)
QUICK = TrainConfig(epochs=2, batch_size=16, lr=0.01, val_fraction=0.0, progress=False)


@pytest.fixture(scope="module")
def setup():
    tech = builtin()
    cal = calibrate(tech, InverterSizing())
    train_set, test_set = train_test_split(load_digits(), 0.2, 0)
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)[:200]
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)[:30]
    y_train, y_test = train_set.labels[:200], test_set.labels[:30]
    model = PhaxNetwork(cal, (64, 8, 10), init_mean=-3.0)
    params = train(model, x_train, y_train, TrainConfig(epochs=4, batch_size=16, lr=0.01, val_fraction=0.0,
                                                        progress=False)).params
    return tech, cal, network_from_params(model, params), x_train, y_train, x_test, y_test


def test_coupled_loop_refines_the_current_model_and_resumes(setup, tmp_path):
    tech, cal, network, x_train, y_train, x_test, y_test = setup
    kwargs = dict(mode="coupled", max_rounds=1, tolerance_v=1e-6, fine_tune=QUICK, settings=SETTINGS)
    result = closed_loop(network, tech, x_train, y_train, x_test, y_test, tmp_path, **kwargs)
    rounds = result.rounds
    assert list(rounds["round"]) == [0, 1]
    first, second = rounds.iloc[0], rounds.iloc[1]
    assert second["residual_after"] < 0.05 * second["residual_before"]  # A, at the circuit's own points
    assert first["output_rms_v"] < 2e-3
    assert second["output_rms_v"] < 2e-5
    assert second["agreement"] == 1.0
    assert (tmp_path / "rounds.csv").is_file() and (tmp_path / "rounds.png").stat().st_size > 1000
    assert result.calibration.inverter_current.v_in != cal.inverter_current.v_in
    again = closed_loop(network, tech, x_train, y_train, x_test, y_test, tmp_path, **kwargs)
    assert list(again.rounds["reused"]) == [True, True]
    assert again.rounds["spice_accuracy"].tolist() == rounds["spice_accuracy"].tolist()
    with pytest.raises(ConfigError, match="other inputs"):
        closed_loop(network, tech, x_train, y_train, x_test[:20], y_test[:20], tmp_path, **kwargs)
    # force replaces the old rounds, including its own rounds.csv / rounds.png files
    other = closed_loop(network, tech, x_train, y_train, x_test[:20], y_test[:20], tmp_path, **kwargs, force=True)
    assert not other.rounds["reused"].any() and (tmp_path / "rounds.csv").is_file()


def test_static_loop_refits_the_activation(setup, tmp_path):
    tech, _, network, x_train, y_train, x_test, y_test = setup
    result = closed_loop(network, tech, x_train, y_train, x_test, y_test, tmp_path, mode="static",
                         max_rounds=1, fine_tune=QUICK, settings=SETTINGS)
    row = result.rounds.iloc[1]
    assert row["residual_after"] < row["residual_before"]
    assert json.loads((tmp_path / "loop.json").read_text())["mode"] == "static"


def test_hybrid_counts_spice_samples(setup, tmp_path):
    tech, _, network, x_train, y_train, x_test, y_test = setup
    result = hybrid_train(network, tech, x_train[:60], y_train[:60], x_test, y_test, tmp_path, iterations=2,
                          config=TrainConfig(epochs=5, batch_size=16, lr=0.01, val_fraction=0.0, progress=False),
                          settings=SETTINGS)
    assert result.spice_samples == 2 * 30 + 2 * 60
    assert len(result.iterations) == 2
    assert np.isfinite(result.iterations["hidden_moved_rms_v"].iloc[1])
    assert result.iterations["train_model_accuracy_after_fit"].iloc[0] >= result.iterations[
        "train_spice_accuracy_before_fit"].iloc[0]
    assert np.array_equal(result.network.conductances[0], network.conductances[0])  # hidden layer frozen
    assert not np.array_equal(result.network.conductances[1], network.conductances[1])


def test_corner_study_trains_single_and_multi(setup, tmp_path):
    """Temperatures stand in for process corners on the built-in card."""
    _, _, _, x_train, y_train, x_test, y_test = setup
    temps = {"cold": 0.0, "hot": 85.0}
    study = corner_study(lambda c: builtin(temperature_c=temps[c]), x_train[:100], y_train[:100], x_test[:20],
                         y_test[:20], tmp_path, sizing=InverterSizing(), corners=("cold", "hot"),
                         train_corner="cold", topology=(64, 6, 10), mode="static",
                         config=TrainConfig(epochs=1, batch_size=16, lr=0.01, val_fraction=0.0, progress=False),
                         settings=SETTINGS)
    assert set(study.table["trained"]) == {"cold", "multi"}
    assert set(study.table["corner"]) == {"cold", "hot"}
    assert study.pivot().shape == (2, 4)
    assert (tmp_path / "corners.csv").is_file() and (tmp_path / "calibration_hot.json").is_file()
