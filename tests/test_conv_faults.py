"""Fault-aware conv training: stuck replicas at fixed conductances, exact gradients over the
healthy replicas, the same devices the validation builds, and maps checked against the layers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_faults import FaultAwareCrossbarNetwork
from memspice.train.fault_map import check_layer_faults
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.hardware import FaultMap
from memspice.train.layered_devices import (
    DeviceSettings,
    device_trace,
    draw_devices,
    seeded_device_faults,
)
from memspice.train.losses import LOSS_LINKS, Loss

from analytic_inverter import VDD, VSS, synthetic_calibration
from gradcheck import assert_directional_gradient, central_gradient, relative_error
from test_conv_load_aware import load_aware_calibration

# conv(pad 1) → pool → conv → pool → flatten → dense: padding, folding and sharing all at once.
STACK = NetworkSpec((1, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                AvgPool2d(2), Flatten(), Dense(3)))


def _data(spec, seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng, rng.uniform(VSS, VDD, (batch, spec.n_inputs)), rng.integers(0, 3, batch)


def _extrapolated(f, params, step=1e-3):
    coarse = central_gradient(f, params, step)
    fine = central_gradient(f, params, step / 2)
    return [(4 * b - a) / 3 for a, b in zip(coarse, fine)]


def _no_faults(spec):
    shapes = [(p.n_columns, p.devices_per_column) for p in spec.plans]
    empty = tuple(np.zeros(s, dtype=bool) for s in shapes)
    return FaultMap(empty, empty)


def test_without_faults_it_is_the_shared_static_model():
    cal = phax_reference_calibration()
    shared = CrossbarNetwork(cal, STACK, init_std=0.7)
    faulty = FaultAwareCrossbarNetwork(cal, STACK, _no_faults(STACK), init_std=0.7)
    rng, x, labels = _data(STACK, 0)
    params = shared.init_params(rng)
    np.testing.assert_allclose(faulty.predict(params, x), shared.predict(params, x), rtol=0,
                               atol=1e-12)
    for link in LOSS_LINKS:
        loss = Loss("softmax_ce", link=link)
        value, grads = faulty.loss_and_grad(params, x, labels, loss)
        value_shared, grads_shared = shared.loss_and_grad(params, x, labels, loss)
        assert value == pytest.approx(value_shared, rel=1e-12)
        assert relative_error(grads, grads_shared) <= 1e-10


@pytest.mark.parametrize("link", LOSS_LINKS)
def test_static_gradient_matches_finite_differences(link):
    cal = phax_reference_calibration()
    faults = seeded_device_faults(STACK, 0.2, 1)
    model = FaultAwareCrossbarNetwork(cal, STACK, faults, init_std=0.7)
    rng, x, labels = _data(STACK, 1)
    params = model.init_params(rng)
    loss = Loss("softmax_ce", link=link)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = _extrapolated(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6
    # the faults change the gradient: it is not the shared model's
    _, shared = CrossbarNetwork(cal, STACK, init_std=0.7).loss_and_grad(params, x, labels, loss)
    assert relative_error(grads, shared) > 1e-2


@pytest.mark.slow
def test_load_aware_gradient_matches_finite_differences():
    cal = load_aware_calibration(gain=0.1)
    model = FaultAwareCrossbarNetwork(cal, STACK, seeded_device_faults(STACK, 0.2, 2),
                                      evaluator="load-aware", init_std=0.7)
    rng, x, labels = _data(STACK, 2)
    params = model.init_params(rng)
    loss = Loss("bce", link="logit")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = _extrapolated(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


@pytest.mark.slow
def test_coupled_gradient_matches_directional_differences():
    model = FaultAwareCrossbarNetwork(synthetic_calibration(), STACK,
                                      seeded_device_faults(STACK, 0.2, 3), evaluator="coupled",
                                      init_std=0.7)
    rng, x, labels = _data(STACK, 3)
    params = model.init_params(rng)
    loss = Loss("softmax_ce", link="logit")
    assert_directional_gradient(model, params, x, labels, loss, rng)


def test_a_theta_whose_replicas_are_all_stuck_gets_no_gradient():
    cal = phax_reference_calibration()
    faults = seeded_device_faults(STACK, 0.1, 4)
    wirings = network_wiring(STACK)
    target = 5  # θ 5 of the second conv layer: every replica stuck at g_max
    high = faults.stuck_high[1] | (wirings[1].theta_index == target) & wirings[1].present
    low = faults.stuck_low[1] & ~high
    faults = dataclasses.replace(faults, stuck_high=(faults.stuck_high[0], high, faults.stuck_high[2]),
                                 stuck_low=(faults.stuck_low[0], low, faults.stuck_low[2]))
    model = FaultAwareCrossbarNetwork(cal, STACK, faults, init_std=0.7)
    rng, x, labels = _data(STACK, 5)
    params = model.init_params(rng)
    _, grads = model.loss_and_grad(params, x, labels, Loss("bce", link="logit"))
    assert grads[1].ravel()[target] == 0.0
    assert np.count_nonzero(grads[1]) > grads[1].size // 2


@pytest.mark.parametrize("evaluator", ["static", "coupled"])
def test_training_model_sees_the_devices_the_validation_builds(evaluator):
    cal = synthetic_calibration()
    faults = seeded_device_faults(STACK, 0.2, 6)
    model = FaultAwareCrossbarNetwork(cal, STACK, faults, evaluator=evaluator, init_std=0.7)
    rng, x, _ = _data(STACK, 6, batch=5)
    params = model.init_params(rng)
    sigma = model.conductances(params)[0]
    network = TrainedCrossbarNetwork(STACK, tuple(sigma), cal, evaluator)
    draw = draw_devices(network, DeviceSettings(), faults)
    for mine, built in zip(model.device_conductances(sigma), draw.conductances):
        np.testing.assert_array_equal(mine, built)
    expected = device_trace(network, draw.conductances, x, evaluator).output
    np.testing.assert_allclose(model.predict(params, x), expected, rtol=0, atol=1e-12)


def test_map_shapes_are_checked_against_the_layers():
    other = NetworkSpec((1, 6, 6), (Conv2d(3, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                    AvgPool2d(2), Flatten(), Dense(3)))
    faults = seeded_device_faults(other, 0.1, 0)
    with pytest.raises(ConfigError, match=r"layer 0 \(conv2d 2×6×6\) is 108×20"):
        FaultAwareCrossbarNetwork(phax_reference_calibration(), STACK, faults)
    fewer = FaultMap(faults.stuck_high[:2], faults.stuck_low[:2])
    with pytest.raises(ConfigError, match="2 layers, the network has 3 crossbar layers"):
        check_layer_faults(fewer, STACK)
