"""Quantization-aware fine-tuning before the transfer (``memspice.loop.hybrid_layered``) and
the ``memspice hybrid`` options that reach it."""

from __future__ import annotations

import numpy as np
import pytest
from analytic_inverter import synthetic_calibration

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.loop.hybrid_layered import QuantizationAwareSettings, on_grid, quantization_aware_finetune
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.layered_devices import device_trace
from memspice.train.mapping import quantize_conductance, theta_to_conductance

CNN = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
DIGITS_CNN = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))


def _network(calibration, mean=-3.0, seed=0, spec=CNN):
    rng = np.random.default_rng(seed)
    blank = TrainedCrossbarNetwork(spec, tuple(np.ones(p.theta_shape) for p in spec.plans), calibration)
    g = tuple(theta_to_conductance(mean + rng.standard_normal(p.theta_shape), blank.window) for p in spec.plans)
    return TrainedCrossbarNetwork(spec, g, calibration)


def _accuracy(network, x, y):
    return float(np.mean(device_trace(network, network.device_conductances(), x).output.argmax(axis=1) == y))


def test_settings_are_checked():
    QuantizationAwareSettings(levels=8, load_aware_epochs=0, coupled_epochs=1)
    for kwargs, needle in (({"levels": 1}, "at least 2 levels"), ({"levels": 0}, "at least 2 levels"),
                           ({"levels": 8.0}, "at least 2 levels"), ({"coupled_epochs": -1}, "coupled epochs"),
                           ({"load_aware_epochs": 0, "coupled_epochs": 0}, "at least one epoch"),
                           ({"coupled_lr": 0.0}, "coupled lr"), ({"load_aware_lr": float("nan")}, "load aware lr"),
                           ({"val_fraction": 1.0}, "validation fraction")):
        with pytest.raises(ConfigError, match=needle):
            QuantizationAwareSettings(**kwargs)


def test_finetuning_puts_the_network_on_the_grid_and_recovers_what_rounding_lost():
    cal = synthetic_calibration()
    teacher = _network(cal)
    rng = np.random.default_rng(1)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (240, CNN.n_inputs))
    out = device_trace(teacher, teacher.device_conductances(), x).output
    y = (out - out.mean(axis=0)).argmax(axis=1)  # every class present
    rounded = _accuracy(on_grid(teacher, 8), x, y)  # σ ≈ 5 % of the window: most round to g_min
    settings = QuantizationAwareSettings(levels=8, load_aware_epochs=0, coupled_epochs=4, coupled_lr=0.05,
                                         val_fraction=0.0)
    tuned = quantization_aware_finetune(teacher, x, y, settings)
    for sigma in tuned.conductances:
        np.testing.assert_array_equal(sigma, quantize_conductance(sigma, tuned.window, 8))
    assert tuned.evaluator == "coupled"
    assert tuned.metadata["quantization_aware"]["levels"] == 8
    assert _accuracy(tuned, x, y) > rounded + 0.15


def test_finetuning_refuses_what_it_cannot_take():
    cal = synthetic_calibration()  # no load-aware model
    net = _network(cal)
    x = np.zeros((10, CNN.n_inputs))
    y = np.zeros(10, dtype=int)
    with pytest.raises(ConfigError, match="load-aware model"):
        quantization_aware_finetune(net, x, y, QuantizationAwareSettings(load_aware_epochs=1, coupled_epochs=0))
    with pytest.raises(ConfigError, match="inverter current model"):
        quantization_aware_finetune(_network(phax_reference_calibration()), x, y,
                                    QuantizationAwareSettings(load_aware_epochs=0, coupled_epochs=1))
    with pytest.raises(ConfigError, match="do not fit a network of 36 inputs"):
        quantization_aware_finetune(net, x[:, :-1], y, QuantizationAwareSettings(coupled_epochs=1))


def test_cli_refuses_bad_qat_epochs_and_losses_with_one_line(tmp_path, capsys):
    from memspice.cli import main
    from memspice.train.conv_io import save_layered_network

    net = tmp_path / "cnn"
    save_layered_network(_network(phax_reference_calibration()), net)
    for bad, needle in ((["--qat-epochs", "0,0"], "--qat-epochs"), (["--qat-epochs", "8"], "--qat-epochs"),
                        (["--qat-epochs", "-1,2"], "--qat-epochs"), (["--qat-epochs", "a,b"], "--qat-epochs"),
                        (["--loss", "hinge"], "--loss")):
        with pytest.raises(SystemExit) as exit_info:
            main(["hybrid", str(net), "--out", str(tmp_path / "run"), *bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("memspice: error:") and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_quantization_aware_stage_is_checked_before_training(tmp_path, capsys):
    from memspice.cli import main
    from memspice.train.conv_io import save_layered_network

    net = tmp_path / "cnn"
    save_layered_network(_network(phax_reference_calibration(), spec=DIGITS_CNN), net)  # no inverter current model
    status = main(["hybrid", str(net), "--out", str(tmp_path / "run"), "--qat-epochs", "0,1",
                   "--train-samples", "50", "--samples", "10"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("memspice: error:") and "inverter current model" in err
    assert not (tmp_path / "run").exists()
