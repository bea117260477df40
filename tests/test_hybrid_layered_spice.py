"""Hybrid training of a small CNN in ngspice: transfer with programmed devices, retrain the
last dense layer on the circuit's own inputs, evaluate in SPICE (built-in card)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memspice.datasets import features_to_voltages, load_digits
from memspice.errors import ConfigError
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.layered_devices import DeviceSettings
from memspice.train.mapping import theta_to_conductance
from memspice.train.trainer import TrainConfig, train

SPEC = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))


@pytest.fixture(scope="module")
def setup():
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin

    cal = calibrate(builtin(), InverterSizing())
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)
    model = CrossbarNetwork(cal, SPEC, init_mean=-1.0)
    params = train(model, x[:1000], data.labels[:1000],
                   TrainConfig(epochs=3, lr=0.05, loss_link="logit", val_fraction=0.0, progress=False)).params
    network = TrainedCrossbarNetwork(SPEC, tuple(theta_to_conductance(t, model.window) for t in params), cal)
    return network, builtin(), x[:400], data.labels[:400], x[1400:1460], data.labels[1400:1460]


@pytest.mark.ngspice
def test_hybrid_training_of_a_cnn_in_spice(setup, tmp_path):
    from memspice.loop.hybrid import hybrid_train_layered

    network, tech, x_train, y_train, x_test, y_test = setup
    settings = DeviceSettings(levels=4, variation_sigma=0.3, fault_rate=0.05, seed=1)
    result = hybrid_train_layered(network, tech, x_train, y_train, x_test, y_test, devices=settings,
                                  data_fraction=0.1, iterations=2, batch_size=40, workers=2,
                                  out_dir=tmp_path / "hybrid")
    assert result.train_samples == 40 and result.data_fraction == pytest.approx(0.1)
    assert result.spice_samples == 3 * 60 + 2 * 40
    for value in (result.software, result.transfer, result.hybrid):
        assert 0 <= value <= 1 and value * 60 == pytest.approx(round(value * 60))
    if result.software > result.transfer:
        assert result.recovered_fraction == pytest.approx(
            (result.hybrid - result.transfer) / (result.software - result.transfer))
    # only the last layer was reprogrammed; the frozen layers keep their transferred devices
    first_t, last_t = result.transfer_devices[0], result.transfer_devices[-1]
    np.testing.assert_array_equal(result.hybrid_devices[0], first_t)
    assert not np.array_equal(result.hybrid_devices[-1], last_t)
    assert np.array_equal(result.hybrid_devices[-1] == 0, last_t == 0)
    # the fit improves the last layer on the SPICE inputs it was fitted to
    rounds = result.iterations
    assert len(rounds) == 2
    first = rounds.iloc[0]
    assert first["train_model_accuracy_after_fit"] >= first["train_spice_accuracy_before_fit"]
    assert np.isfinite(rounds.iloc[1]["inputs_moved_rms_v"])
    summary = json.loads((tmp_path / "hybrid" / "hybrid.json").read_text())
    assert summary["hybrid"] == result.hybrid and summary["devices"]["levels"] == 4
    assert (tmp_path / "hybrid" / "network" / "network.json").exists()
    # another programming seed reuses the ideal circuit's accuracy instead of simulating it
    again = hybrid_train_layered(network, tech, x_train, y_train, x_test, y_test,
                                 devices=DeviceSettings(levels=4, variation_sigma=0.3, seed=2),
                                 batch_size=40, workers=2, software_accuracy=result.software)
    # by default the last layer is simulated, fitted and programmed three times
    assert again.software == result.software and again.spice_samples == 2 * 60 + 3 * 40
    assert list(again.iterations["iteration"]) == [1, 2, 3]
    assert np.isfinite(again.iterations["train_spice_accuracy_after_fit"].iloc[:2]).all()
    with pytest.raises(ConfigError, match="software accuracy"):
        hybrid_train_layered(network, tech, x_train, y_train, x_test, y_test, software_accuracy=1.5)


@pytest.mark.ngspice
def test_memspice_hybrid_takes_a_cnn_directory(setup, tmp_path, capsys):
    from memspice.cli import main
    from memspice.train.conv_io import save_layered_network

    network = setup[0]
    save_layered_network(network, tmp_path / "cnn")
    out = tmp_path / "run"
    status = main(["hybrid", str(tmp_path / "cnn"), "--samples", "30", "--train-samples", "200",
                   "--levels", "4", "--variation", "0.2", "--data-fraction", "0.05", "--seed", "2",
                   "--epochs", "5", "--workers", "1", "--batch-size", "50", "--json", "--out", str(out)])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train_samples"] == 10 and summary["test_samples"] == 30
    assert summary["data_fraction"] == pytest.approx(0.05)
    assert summary["devices"] == {"levels": 4, "variation_sigma": 0.2, "fault_rate": 0.0, "seed": 2}
    # three simulate → fit → program rounds by default: 30 + 30 test images, 3 × 10 training, 30 test
    assert len(summary["iterations"]) == 3 and summary["spice_samples"] == 30 + 30 + 3 * 10 + 30
    assert json.loads((out / "hybrid.json").read_text())["hybrid"] == summary["hybrid"]


@pytest.mark.ngspice
def test_a_dense_network_given_transfer_options_takes_the_transfer_procedure(setup, tmp_path, capsys):
    from memspice.cli import main
    from memspice.train.conv_io import save_layered_network

    cal = setup[0].calibration
    spec = NetworkSpec.dense((64, 8, 10))
    rng = np.random.default_rng(3)
    blank = TrainedCrossbarNetwork(spec, tuple(np.ones(p.theta_shape) for p in spec.plans), cal)
    g = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape) - 1.0, blank.window) for p in spec.plans)
    save_layered_network(TrainedCrossbarNetwork(spec, g, cal), tmp_path / "dense")
    status = main(["hybrid", str(tmp_path / "dense"), "--samples", "20", "--train-samples", "100",
                   "--levels", "4", "--epochs", "2", "--workers", "1", "--json", "--out", str(tmp_path / "run")])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["devices"]["levels"] == 4 and summary["train_samples"] == 10
    assert "accuracy_before" not in summary


@pytest.mark.ngspice
def test_memspice_hybrid_fine_tunes_on_the_level_grid_first(setup, tmp_path, capsys):
    from memspice.cli import main
    from memspice.train.conv_io import load_layered_network, save_layered_network
    from memspice.train.mapping import quantize_conductance

    save_layered_network(setup[0], tmp_path / "cnn")
    out = tmp_path / "run"
    status = main(["hybrid", str(tmp_path / "cnn"), "--samples", "20", "--train-samples", "200",
                   "--levels", "4", "--qat-epochs", "1,0", "--epochs", "2", "--workers", "1", "--json",
                   "--out", str(out)])
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["quantization_aware"]["levels"] == 4 and summary["quantization_aware"]["load_aware_epochs"] == 1
    saved = load_layered_network(out / "network")
    assert saved.metadata["quantization_aware"]["levels"] == 4
    # the frozen layers were fine-tuned onto the transfer's grid (the last one is retrained after)
    for sigma in saved.conductances[:-1]:
        np.testing.assert_allclose(sigma, quantize_conductance(sigma, saved.window, 4), rtol=1e-12)
