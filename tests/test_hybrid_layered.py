"""Hybrid training of layered networks without ngspice: the device-level last-layer model and
the input checks (``test_hybrid_layered_spice.py`` runs the procedure in ngspice)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from analytic_inverter import VDD, VSS, synthetic_calibration
from gradcheck import central_gradient

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.loop.hybrid import DeviceLastLayerModel, LastLayerModel, check_hybrid_inputs
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.layered_devices import DeviceSettings, device_trace, draw_devices
from memspice.train.losses import Loss
from memspice.train.mapping import conductance_to_theta, theta_to_conductance

CNN = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))


def _network(spec, calibration, seed=0):
    rng = np.random.default_rng(seed)
    blank = TrainedCrossbarNetwork(spec, tuple(np.ones(p.theta_shape) for p in spec.plans), calibration)
    g = tuple(theta_to_conductance(-1.0 + rng.standard_normal(p.theta_shape), blank.window)
              for p in spec.plans)
    return TrainedCrossbarNetwork(spec, g, calibration)


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


@pytest.mark.parametrize("mode", ["static", "coupled"])
@pytest.mark.parametrize("link", ["output", "logit"])
def test_device_last_layer_gradient_matches_finite_differences(calibration, mode, link):
    net = _network(CNN, calibration)
    wiring = network_wiring(CNN)[-1]
    rng = np.random.default_rng(1)
    high = rng.random(wiring.present.shape) < 0.1
    low = ~high & (rng.random(wiring.present.shape) < 0.1)
    model = DeviceLastLayerModel(calibration, wiring, 0, high, low, mode)
    theta = [conductance_to_theta(net.conductances[-1], net.window)]
    x = rng.uniform(VSS, VDD, (5, 2 * wiring.plan.n_sources))
    labels = rng.integers(0, 3, 5)
    loss = Loss("bce", link=link)
    _, grads = model.loss_and_grad(theta, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], theta, 1e-6)
    # atol: the coupled output solve converges to its Newton tolerance, not to round-off
    np.testing.assert_allclose(grads[0], numeric[0], rtol=2e-4, atol=1e-7)


def test_device_model_of_a_dense_layer_is_the_dense_last_layer_model(calibration):
    net = _network(NetworkSpec.dense((4, 5, 3)), calibration, seed=2)
    theta = [conductance_to_theta(net.conductances[-1], net.window)]
    x = np.random.default_rng(3).uniform(VSS, VDD, (6, 10))
    dense = LastLayerModel(calibration, net.conductances[-1].shape, "coupled")
    device = DeviceLastLayerModel(calibration, network_wiring(net.spec)[-1], 0, mode="coupled")
    np.testing.assert_allclose(device.predict(theta, x), dense.predict(theta, x), atol=1e-12)
    np.testing.assert_allclose(device.predict_logits(theta, x), dense.predict_logits(theta, x), atol=1e-9)


def test_device_model_reproduces_the_circuit_model_on_its_own_inputs(calibration):
    """Fed the coupled model's hidden outputs of a programmed CNN (8 levels, stuck devices),
    the last-layer model gives that network's outputs: the output layer loads nothing."""
    net = _network(CNN, calibration, seed=4)
    draw = draw_devices(net, DeviceSettings(levels=8, fault_rate=0.2, seed=5))
    assert draw.stuck_high[-1].any() and draw.stuck_low[-1].any()
    x = np.random.default_rng(6).uniform(VSS, VDD, (4, CNN.n_inputs))
    trace = device_trace(net, draw.conductances, x)
    hidden = np.concatenate([trace.layers[0].outp, trace.layers[0].outn], axis=1)
    model = DeviceLastLayerModel(calibration, network_wiring(CNN)[-1], 8, draw.stuck_high[-1],
                                 draw.stuck_low[-1], "coupled")
    theta = conductance_to_theta(net.conductances[-1], net.window)
    np.testing.assert_array_equal(model.devices(theta), draw.conductances[-1])
    np.testing.assert_allclose(model.predict([theta], hidden), trace.output, atol=1e-9)
    with pytest.raises(ConfigError, match="input voltages"):
        model.predict([theta], hidden[:, :-1])


def test_bad_hybrid_inputs_are_refused():
    cal = phax_reference_calibration()
    net = _network(CNN, cal)
    check_hybrid_inputs(net, DeviceSettings(levels=8), 0.1)
    with pytest.raises(ConfigError, match="levels must be at least 2"):
        check_hybrid_inputs(net, DeviceSettings(levels=0), 0.1)
    for fraction in (0.0, 0.11, -0.1, float("nan")):
        with pytest.raises(ConfigError, match=r"data fraction must be in \(0, 0.1\]"):
            check_hybrid_inputs(net, DeviceSettings(levels=8), fraction)
    conv_last = NetworkSpec((1, 3, 3), (Conv2d(2, 3), Conv2d(10, 1), Flatten()))
    with pytest.raises(ConfigError, match="must be dense; this network's is conv2d"):
        check_hybrid_inputs(_network(conv_last, cal), DeviceSettings(levels=8), 0.1)
    with pytest.raises(ConfigError, match="at least two crossbar layers"):
        check_hybrid_inputs(_network(NetworkSpec.dense((4, 3)), cal), DeviceSettings(levels=8), 0.1)
    with pytest.raises(ConfigError, match="must be dense"):
        DeviceLastLayerModel(cal, network_wiring(CNN)[0], 8)
    per_device = dataclasses.replace(net, devices=tuple(net.device_conductances()))
    with pytest.raises(ConfigError, match="already programmed device by device"):
        check_hybrid_inputs(per_device, DeviceSettings(levels=8), 0.1)


def _save(spec, tmp_path, name):
    from memspice.train.conv_io import save_layered_network

    directory = tmp_path / name
    save_layered_network(_network(spec, phax_reference_calibration()), directory)
    return directory


def test_cli_refuses_bad_transfer_options_with_one_line(tmp_path, capsys):
    from memspice.cli import main

    net = _save(CNN, tmp_path, "cnn")
    for bad, needle in ((["--levels", "1"], "--levels"), (["--levels", "0"], "--levels"),
                        (["--data-fraction", "0.2"], "--data-fraction"),
                        (["--data-fraction", "0"], "--data-fraction")):
        with pytest.raises(SystemExit) as exit_info:
            main(["hybrid", str(net), "--out", str(tmp_path / "run"), *bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("memspice: error:") and needle in err and len(err.strip().splitlines()) == 1
    conv_last = NetworkSpec((1, 3, 3), (Conv2d(2, 3), Conv2d(10, 1), Flatten()))
    status = main(["hybrid", str(_save(conv_last, tmp_path, "convlast")), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("memspice: error:") and "must be dense" in err
    assert not (tmp_path / "run").exists()


def test_cli_bound_is_the_procedure_bound():
    from memspice.loop import command, hybrid

    assert command.MAX_DATA_FRACTION == hybrid.MAX_DATA_FRACTION


def test_hybrid_refuses_bad_data_and_models_before_any_simulation(tmp_path):
    from memspice.loop.hybrid import hybrid_train_layered
    from memspice.tech import builtin

    cal = phax_reference_calibration()  # no inverter current model
    net = _network(CNN, cal)
    x = np.zeros((20, CNN.n_inputs))
    y = np.zeros(20, dtype=int)
    with pytest.raises(ConfigError, match="do not fit a network of 36 inputs"):
        hybrid_train_layered(net, builtin(), x[:, :-1], y, x, y)
    with pytest.raises(ConfigError, match="do not fit"):
        hybrid_train_layered(net, builtin(), x, y, x, y[:5])
    with pytest.raises(ConfigError, match="inverter current model"):
        hybrid_train_layered(net, builtin(), x, y, x, y, mode="coupled", out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_model_can_stand_in_for_spice_in_every_step(calibration, tmp_path):
    """``simulator="model"``: software and transfer are the coupled model's accuracies on the
    ideal and the drawn devices, three rounds refit the last layer, nothing else changes."""
    from memspice.loop.hybrid import hybrid_train_layered
    from memspice.tech import builtin

    net = _network(CNN, calibration, seed=4)
    rng = np.random.default_rng(5)
    x = rng.uniform(VSS, VDD, (60, CNN.n_inputs))
    y = rng.integers(0, 3, 60)
    settings = DeviceSettings(levels=4, variation_sigma=0.2, seed=3)
    result = hybrid_train_layered(net, builtin(), x[:50], y[:50], x[50:], y[50:], devices=settings,
                                  simulator="model", out_dir=tmp_path / "run")

    def acc(devices):
        return float(np.mean(device_trace(net, devices, x[50:]).output.argmax(axis=1) == y[50:]))

    assert result.software == acc(net.device_conductances()) == result.software_model
    assert result.transfer == acc(draw_devices(net, settings).conductances)
    assert result.hybrid == acc(result.hybrid_devices)
    assert list(result.iterations["iteration"]) == [1, 2, 3] and result.spice_samples == 10 + 10 + 3 * 5 + 10
    np.testing.assert_array_equal(result.hybrid_devices[0], result.transfer_devices[0])
    with pytest.raises(ConfigError, match="unknown simulator"):
        hybrid_train_layered(net, builtin(), x[:50], y[:50], x[50:], y[50:], simulator="xyce")
    with pytest.raises(ConfigError, match="inverter current model"):
        hybrid_train_layered(_network(CNN, phax_reference_calibration()), builtin(), x[:50], y[:50], x[50:], y[50:],
                             simulator="model", mode="static")
