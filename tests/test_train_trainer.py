"""Training loop, checkpoints/resume, network export/import, Monte Carlo and the CLI."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from memspice.datasets import features_to_voltages, load_iris
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, phax_reference_calibration
from memspice.train import command
from memspice.train.evaluate import monte_carlo_accuracy, network_from_params
from memspice.train.hardware import HardwareConfig, draw_fault_map
from memspice.train.losses import accuracy
from memspice.train.model import PhaxNetwork, TanhMLP
from memspice.train.network_io import load_network, save_network
from memspice.train.trainer import TrainConfig, train

CAL = phax_reference_calibration()


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return features_to_voltages(data.features, CAL.rails.vdd, CAL.rails.vss), data.labels


@pytest.mark.parametrize("optimizer,lr,init_mean", [
    ("adam", 0.02, 0.0), ("sgd", 20.0, -2.0), ("lbfgs", 0, 0.0), ("cg", 0, 0.0)])
def test_every_optimizer_learns_iris(iris, optimizer, lr, init_mean):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 8, 3), init_mean=init_mean)
    config = TrainConfig(epochs=40, batch_size=16, lr=lr or 0.01, optimizer=optimizer,
                         progress=False, val_fraction=0.2, seed=1)
    result = train(model, x, y, config)
    assert accuracy(model.predict(result.params, x), y) > 0.8
    assert list(result.history.columns)[:5] == [
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]


def test_float_baseline_learns_iris_with_the_same_trainer(iris):
    x, y = iris
    model = TanhMLP((4, 8, 3), CAL.rails.vss, CAL.rails.vdd)
    result = train(model, x, y, TrainConfig(epochs=40, lr=0.02, batch_size=16, progress=False))
    assert accuracy(model.predict(result.params, x), y) > 0.9


def test_training_is_seeded_and_resume_repeats_the_uninterrupted_run(iris, tmp_path):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3), HardwareConfig(variation_sigma=0.05), init_mean=0.0)
    full = TrainConfig(epochs=6, lr=0.02, batch_size=16, progress=False, lr_decay=0.9)
    reference = train(model, x, y, full, tmp_path / "a")
    again = train(model, x, y, full)
    for p, q in zip(reference.params, again.params):
        np.testing.assert_array_equal(p, q)
    part = TrainConfig(epochs=3, lr=0.02, batch_size=16, progress=False, lr_decay=0.9)
    train(model, x, y, part, tmp_path / "b")
    resumed = train(model, x, y, full, tmp_path / "b", resume=True)
    for p, q in zip(reference.params, resumed.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    history = pd.read_csv(tmp_path / "b" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "b" / "history.png").stat().st_size > 1000


def test_early_stopping_stops(iris):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 3))
    config = TrainConfig(epochs=200, lr=0.5, patience=2, progress=False, val_fraction=0.3)
    result = train(model, x, y, config)
    assert result.stopped_early and len(result.history) < 200


def test_network_round_trip_and_layer_voltages(iris, tmp_path):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3), HardwareConfig(levels=32))
    params = model.init_params(np.random.default_rng(0))
    net = network_from_params(model, params, {"note": "test"})
    save_network(net, tmp_path)
    loaded = load_network(tmp_path, CAL)
    for a, b in zip(net.conductances, loaded.conductances):
        np.testing.assert_array_equal(a, b)
    layers = loaded.layer_voltages(x)
    np.testing.assert_allclose(layers[-1].outp, model.predict(params, x))
    assert [s.column.shape for s in layers] == [(150, 6), (150, 3)]
    ideal = network_from_params(PhaxNetwork(CAL, (4, 6, 3)), params)
    back = [np.asarray(t) for t in ideal.thetas()]
    np.testing.assert_allclose(back[0], params[0], rtol=1e-9, atol=1e-9)
    meta = json.loads((tmp_path / "network.json").read_text())
    assert meta["calibration_digest"] == CAL.digest() and meta["version"] == 2
    other = Calibration(CAL.rails, CAL.activation, CAL.device, source={"x": "y"})
    with pytest.raises(ConfigError, match="trained with calibration"):
        load_network(tmp_path, other)
    with pytest.raises(ConfigError, match="no trained network"):
        load_network(tmp_path / "missing")


def test_fault_aware_training_beats_fault_oblivious(iris):
    x, y = iris
    shapes = [(8, 10), (3, 18)]
    faults = draw_fault_map(shapes, 0.15, 0.15, np.random.default_rng(4))
    config = TrainConfig(epochs=30, lr=0.03, batch_size=16, progress=False, val_fraction=0)
    ideal = PhaxNetwork(CAL, (4, 8, 3), init_mean=0.0)
    oblivious = train(ideal, x, y, config).params
    acc_oblivious = accuracy(ideal.predict(oblivious, x, faults=faults), y)
    aware_model = PhaxNetwork(CAL, (4, 8, 3), faults=faults, init_mean=0.0)
    aware = train(aware_model, x, y, config).params
    acc_aware = accuracy(aware_model.predict(aware, x), y)
    assert acc_aware > acc_oblivious + 0.1 and acc_aware > 0.9


def test_monte_carlo_reports_spread(iris):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3))
    params = train(model, x, y, TrainConfig(epochs=20, lr=0.03, progress=False)).params
    mc = monte_carlo_accuracy(model, params, x, y, HardwareConfig(variation_sigma=0.5), 5, 0)
    assert len(mc.accuracies) == 5 and mc.std > 0 and 0 < mc.mean <= 1


def test_zero_unit_topology_is_a_config_error():
    with pytest.raises(ConfigError, match="at least one unit"):
        PhaxNetwork(CAL, (4, 0, 3))


def _parse(argv):
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_cli_trains_digits_and_prints_json(tmp_path, capsys):
    args = _parse(["--dataset", "iris", "--topology", "4,6,3", "--epochs", "5", "--lr", "0.02",
                   "--levels", "16", "--fault-rate", "0.1", "--fault-aware",
                   "--variation", "0.05", "--mc-trials", "3",
                   "--out", str(tmp_path), "--json", "--quiet"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["levels"] == 16 and "mc_accuracy_mean" in summary
    assert load_network(tmp_path).faults is not None


def test_cli_reports_bad_input_as_one_line(tmp_path, capsys):
    from memspice.cli import main

    assert main(["train", "--dataset", "mnist", "--mnist-dir", str(tmp_path / "nope"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error: ") and "does not exist" in err and len(err.splitlines()) == 1
    bad = tmp_path / "cal.json"
    data = CAL.to_dict()
    data["version"] = 99
    bad.write_text(json.dumps(data))
    assert main(["train", "--calibration", str(bad), "--quiet", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error: ") and "version" in err


def test_parameter_average_is_bias_corrected_and_validated():
    from memspice.train.optim import ParameterAverage

    average = ParameterAverage(0.9)
    with pytest.raises(ConfigError, match="no step yet"):
        average.value()
    steps = [np.array([1.0, -2.0]), np.array([3.0, 0.0]), np.array([5.0, 4.0])]
    for p in steps:
        average.update([p])
    weights = 0.1 * 0.9 ** np.arange(2, -1, -1)
    expected = (weights[:, None] * np.array(steps)).sum(axis=0) / (1 - 0.9**3)
    np.testing.assert_allclose(average.value()[0], expected, rtol=1e-14)
    constant = ParameterAverage(0.999)
    constant.update([np.array([2.5])])
    np.testing.assert_allclose(constant.value()[0], [2.5], rtol=1e-14)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError, match="average decay must be in"):
            ParameterAverage(bad)
    for bad in (1.0, -0.1, 2.0):
        with pytest.raises(ConfigError, match="average_decay must be 0"):
            TrainConfig(average_decay=bad)
    with pytest.raises(ConfigError, match="needs a mini-batch optimizer"):
        TrainConfig(average_decay=0.9, optimizer="lbfgs")


def test_averaged_training_resumes_exactly_and_returns_what_it_evaluated(iris, tmp_path):
    from memspice.train.trainer import split_validation

    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3), init_mean=-1.0)
    settings = {"lr": 0.02, "batch_size": 16, "progress": False, "lr_decay": 0.9,
                "average_decay": 0.95, "loss_link": "logit", "val_fraction": 0.2}
    reference = train(model, x, y, TrainConfig(epochs=6, **settings))
    train(model, x, y, TrainConfig(epochs=3, **settings), tmp_path)
    resumed = train(model, x, y, TrainConfig(epochs=6, **settings), tmp_path, resume=True)
    assert resumed.best_epoch == reference.best_epoch
    for p, q in zip(reference.params, resumed.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
    _, val_idx = split_validation(len(x), 0.2, 0)
    row = reference.history.iloc[reference.best_epoch - 1]
    assert row["val_accuracy"] == accuracy(model.predict(reference.params, x[val_idx]), y[val_idx])
    plain = train(model, x, y, TrainConfig(epochs=6, **{**settings, "average_decay": 0.0}))
    assert not all(np.array_equal(p, q) for p, q in zip(plain.params, reference.params))


def test_cli_takes_the_logit_link_and_averaging_and_rejects_a_bad_temperature(tmp_path, capsys):
    args = _parse(["--dataset", "iris", "--topology", "4,6,3", "--epochs", "3", "--lr", "0.02",
                   "--loss-link", "logit", "--logit-temperature", "2", "--average-decay", "0.9",
                   "--mc-trials", "2", "--out", str(tmp_path), "--json", "--quiet"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["loss_link"] == "logit" and 0 <= summary["test_accuracy"] <= 1
    with pytest.raises(SystemExit):  # refused while parsing
        _parse(["--dataset", "iris", "--loss-link", "logit", "--logit-temperature", "0",
                "--out", str(tmp_path / "bad"), "--quiet"])
    assert "argument --logit-temperature: must be a finite number > 0 and ≤ 100, got '0'" in capsys.readouterr().err


class _RecordingModel:
    """A float network that records the inputs of its training steps and of its predictions."""

    def __init__(self):
        self.inner = TanhMLP((4, 5, 3), CAL.rails.vss, CAL.rails.vdd)
        self.output_range = self.inner.output_range
        self.steps: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []

    def init_params(self, rng):
        return self.inner.init_params(rng)

    def predict(self, params, x):
        self.predicted.append(np.array(x))
        return self.inner.predict(params, x)

    def loss_and_grad(self, params, x, labels, loss, rng=None):
        self.steps.append(np.array(x))
        return self.inner.loss_and_grad(params, x, labels, loss, rng)


def test_input_noise_perturbs_the_steps_only_and_is_seeded(iris, tmp_path):
    x, y = iris
    settings = {"epochs": 4, "lr": 0.02, "batch_size": 16, "progress": False, "lr_decay": 0.9,
                "val_fraction": 0.2}
    clean, noisy = _RecordingModel(), _RecordingModel()
    train(clean, x, y, TrainConfig(**settings))
    reference = train(noisy, x, y, TrainConfig(**settings, input_noise_std=0.01))
    assert len(clean.steps) == len(noisy.steps)
    # The first step: the same shuffled batch (the noise has its own stream), plus the noise.
    difference = noisy.steps[0] - clean.steps[0]
    assert 0.005 < difference.std() < 0.02 and abs(difference.mean()) < 0.005
    # Training accuracy and validation see the clean inputs.
    known = {row.tobytes() for row in x}
    assert all(row.tobytes() in known for batch in noisy.predicted for row in batch)
    assert not any(row.tobytes() in known for row in noisy.steps[0])
    again = train(_RecordingModel(), x, y, TrainConfig(**settings, input_noise_std=0.01))
    for p, q in zip(reference.params, again.params):
        np.testing.assert_array_equal(p, q)
    train(_RecordingModel(), x, y, TrainConfig(**{**settings, "epochs": 2}, input_noise_std=0.01),
          tmp_path)
    resumed = train(_RecordingModel(), x, y, TrainConfig(**settings, input_noise_std=0.01), tmp_path,
                    resume=True)
    for p, q in zip(reference.params, resumed.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)


def test_input_noise_is_validated():
    for bad in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="input_noise_std must be 0"):
            TrainConfig(input_noise_std=bad)
    with pytest.raises(ConfigError, match="input_noise_std needs a mini-batch optimizer"):
        TrainConfig(input_noise_std=0.01, optimizer="lbfgs")
