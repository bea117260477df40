"""Analytic gradients of the PHAX network and the float baseline against finite differences."""

import numpy as np
import pytest
from analytic_inverter import synthetic_calibration

from memspice.fit.calibration import phax_reference_calibration
from memspice.train.hardware import HardwareConfig, draw_fault_map
from memspice.train.losses import LOSS_NAMES, Loss
from memspice.train.mapping import (
    ConductanceWindow,
    column_weights,
    column_weights_vjp,
    theta_to_conductance,
    theta_to_conductance_vjp,
)
from memspice.train.model import PhaxNetwork, TanhMLP
from gradcheck import central_gradient, relative_error

TOPOLOGIES = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 4, 3)}


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_phax_gradient_matches_finite_differences(loss_name, n_layers):
    cal = phax_reference_calibration()
    model = PhaxNetwork(cal, TOPOLOGIES[n_layers], init_std=0.7)
    rng = np.random.default_rng(n_layers)
    params = model.init_params(rng)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss(loss_name)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_baseline_gradient_matches_finite_differences(loss_name, n_layers):
    model = TanhMLP(TOPOLOGIES[n_layers], -0.25, 0.25)
    rng = np.random.default_rng(10 + n_layers)
    params = model.init_params(rng)
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in params]
    x = rng.uniform(-0.25, 0.25, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss(loss_name)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def test_mapping_vjps_match_finite_differences():
    window = ConductanceWindow(1.2e-7, 8e-6)
    rng = np.random.default_rng(3)
    theta = rng.standard_normal((3, 6))
    upstream = rng.standard_normal((3, 6))

    def objective(params):
        return float((column_weights(theta_to_conductance(params[0], window)) * upstream).sum())

    sigma = theta_to_conductance(theta, window)
    analytic = theta_to_conductance_vjp(theta, window, column_weights_vjp(sigma, upstream))
    numeric = central_gradient(objective, [theta.copy()])
    assert relative_error([analytic], numeric) <= 1e-6


def test_fault_aware_gradient_is_zero_on_stuck_devices_and_exact_elsewhere():
    cal = phax_reference_calibration()
    rng = np.random.default_rng(5)
    shapes = [(5, 10), (3, 12)]
    faults = draw_fault_map(shapes, 0.15, 0.15, rng)
    model = PhaxNetwork(cal, (4, 5, 3), faults=faults)
    params = model.init_params(rng)
    x = rng.uniform(-0.25, 0.25, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss("bce")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    for g, high, low in zip(grads, faults.stuck_high, faults.stuck_low):
        assert np.all(g[high | low] == 0.0)
        assert np.any(g[~(high | low)] != 0.0)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def test_variation_gradient_is_exact_for_a_fixed_draw():
    cal = phax_reference_calibration()
    model = PhaxNetwork(cal, (4, 5, 3), hardware=HardwareConfig(variation_sigma=0.1))
    rng = np.random.default_rng(8)
    params = model.init_params(rng)
    x = rng.uniform(-0.25, 0.25, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss("mse")

    def f(p):
        return model.loss_and_grad(p, x, labels, loss, np.random.default_rng(42))[0]

    _, grads = model.loss_and_grad(params, x, labels, loss, np.random.default_rng(42))
    assert relative_error(grads, central_gradient(f, params)) <= 1e-6


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_phax_logit_gradient_matches_finite_differences(loss_name, n_layers, temperature):
    cal = phax_reference_calibration()
    model = PhaxNetwork(cal, TOPOLOGIES[n_layers], init_std=0.7)
    rng = np.random.default_rng(20 + n_layers)
    params = model.init_params(rng)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss(loss_name, link="logit", temperature=temperature)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


@pytest.mark.parametrize("temperature", [1.0, 0.4])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_baseline_logit_gradient_matches_finite_differences(loss_name, n_layers, temperature):
    model = TanhMLP(TOPOLOGIES[n_layers], -0.25, 0.25)
    rng = np.random.default_rng(30 + n_layers)
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in model.init_params(rng)]
    x = rng.uniform(-0.25, 0.25, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss(loss_name, link="logit", temperature=temperature)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def _load_aware_calibration():
    from test_load_aware import load_aware_calibration

    return load_aware_calibration()


@pytest.mark.parametrize("evaluator,calibration", [
    ("coupled", synthetic_calibration), ("load-aware", _load_aware_calibration)])
def test_logit_gradient_is_exact_under_every_evaluator(evaluator, calibration):
    """The extra ∂L/∂column of the last layer enters each evaluator's backward pass."""
    cal = calibration()
    model = PhaxNetwork(cal, (4, 5, 3), evaluator=evaluator, init_std=0.7, init_mean=-1.0)
    rng = np.random.default_rng(41)
    params = model.init_params(rng)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 4))
    labels = rng.integers(0, 3, 6)
    loss = Loss("bce", link="logit", temperature=1.5)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def _soft_targets(rng, batch, classes, loss_name):
    """Random distillation targets of a teacher's logits mixed with random labels."""
    from memspice.train.losses import distillation_targets

    return distillation_targets(3.0 * rng.standard_normal((batch, classes)), rng.integers(0, classes, batch),
                                loss_name, 0.6, 2.0)


@pytest.mark.parametrize("link", ["output", "logit"])
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_soft_target_gradients_match_finite_differences(loss_name, link):
    """Distillation targets through both models and both links."""
    cal = phax_reference_calibration()
    rng = np.random.default_rng(50)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 4))
    targets = _soft_targets(rng, 6, 3, loss_name)
    loss = Loss(loss_name, link=link)
    circuit = PhaxNetwork(cal, (4, 5, 3), init_std=0.7)
    floating = TanhMLP((4, 5, 3), cal.rails.vss, cal.rails.vdd)
    for model, params in ((circuit, circuit.init_params(rng)),
                          (floating, [p + 0.1 * rng.standard_normal(p.shape) for p in floating.init_params(rng)])):
        _, grads = model.loss_and_grad(params, x, targets, loss)
        numeric = central_gradient(lambda p: model.loss_and_grad(p, x, targets, loss)[0], params)
        assert relative_error(grads, numeric) <= 1e-6


@pytest.mark.parametrize("evaluator,calibration", [
    ("coupled", synthetic_calibration), ("load-aware", _load_aware_calibration)])
def test_soft_target_gradient_is_exact_under_every_evaluator(evaluator, calibration):
    """Distillation targets on the logits of the load-aware and coupled evaluators (the two the
    sky130 example trains in)."""
    cal = calibration()
    model = PhaxNetwork(cal, (4, 5, 3), evaluator=evaluator, init_std=0.7, init_mean=-1.0)
    rng = np.random.default_rng(51)
    params = model.init_params(rng)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 4))
    targets = _soft_targets(rng, 6, 3, "bce")
    loss = Loss("bce", link="logit")
    _, grads = model.loss_and_grad(params, x, targets, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, targets, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6
