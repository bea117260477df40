"""Fault-aware training with every replica programmed on its own: exact per-device gradients,
the shared model when the replicas agree, and the devices the validation builds."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_faults import FaultAwareCrossbarNetwork, ReplicaFaultAwareNetwork, replica_thetas
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.layered_devices import device_trace, seeded_device_faults
from memspice.train.losses import LOSS_LINKS, Loss

from analytic_inverter import VDD, VSS, synthetic_calibration
from gradcheck import assert_directional_gradient, central_gradient, relative_error

STACK = NetworkSpec((1, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                AvgPool2d(2), Flatten(), Dense(3)))


def _data(spec, seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng, rng.uniform(VSS, VDD, (batch, spec.n_inputs)), rng.integers(0, 3, batch)


def _shared_start(cal, faults, rng, evaluator="static"):
    shared = FaultAwareCrossbarNetwork(cal, STACK, faults, evaluator=evaluator, init_std=0.7)
    params = shared.init_params(rng)
    sigma = shared.conductances(params)[0]
    return shared, params, replica_thetas(network_wiring(STACK), sigma, shared.window)


@pytest.mark.parametrize("evaluator", ["static", pytest.param("coupled", marks=pytest.mark.slow)])
def test_replicas_at_their_kernel_are_the_shared_fault_aware_model(evaluator):
    cal = synthetic_calibration()
    faults = seeded_device_faults(STACK, 0.2, 1)
    rng, x, labels = _data(STACK, 1)
    shared, params, thetas = _shared_start(cal, faults, rng, evaluator)
    model = ReplicaFaultAwareNetwork(cal, STACK, faults, evaluator=evaluator)
    np.testing.assert_allclose(model.predict(thetas, x), shared.predict(params, x), rtol=0, atol=1e-12)
    loss = Loss("softmax_ce", link="logit")
    value, grads = model.loss_and_grad(thetas, x, labels, loss)
    assert value == pytest.approx(shared.loss_and_grad(params, x, labels, loss)[0], rel=1e-12)
    # summed over each kernel entry's replicas, the per-device gradient is the shared one
    _, shared_grads = shared.loss_and_grad(params, x, labels, loss)
    for wiring, grad, want in zip(network_wiring(STACK), grads, shared_grads):
        total = np.bincount(wiring.theta_index.ravel(), weights=grad.ravel(), minlength=want.size)
        np.testing.assert_allclose(total.reshape(want.shape), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("link", LOSS_LINKS)
def test_static_gradient_matches_finite_differences(link):
    cal = phax_reference_calibration()
    faults = seeded_device_faults(STACK, 0.2, 2)
    model = ReplicaFaultAwareNetwork(cal, STACK, faults, init_std=0.7)
    rng, x, labels = _data(STACK, 2)
    params = model.init_params(rng)
    grads = assert_directional_gradient(model, params, x, labels, Loss("softmax_ce", link=link), rng)
    # every single device of the smallest layer, one by one
    last = len(params) - 1
    f = lambda p: model.loss_and_grad(p, x, labels, Loss("softmax_ce", link=link))[0]  # noqa: E731
    coarse = central_gradient(lambda q: f(params[:last] + q), params[last:], 1e-3)[0]
    fine = central_gradient(lambda q: f(params[:last] + q), params[last:], 5e-4)[0]
    assert relative_error([grads[last]], [(4 * fine - coarse) / 3]) <= 1e-6
    for grad, wiring, high, low in zip(grads, network_wiring(STACK), faults.stuck_high, faults.stuck_low):
        assert np.all(grad[high | low | ~wiring.present] == 0.0)
        assert np.count_nonzero(grad) > grad.size // 2


@pytest.mark.slow
def test_coupled_gradient_matches_directional_differences():
    model = ReplicaFaultAwareNetwork(synthetic_calibration(), STACK, seeded_device_faults(STACK, 0.2, 3),
                                     evaluator="coupled", init_std=0.7)
    rng, x, labels = _data(STACK, 3)
    assert_directional_gradient(model, model.init_params(rng), x, labels, Loss("softmax_ce", link="logit"), rng)


def test_devices_are_the_ones_the_model_evaluates_with_the_stuck_values():
    cal = synthetic_calibration()
    faults = seeded_device_faults(STACK, 0.2, 4)
    model = ReplicaFaultAwareNetwork(cal, STACK, faults, evaluator="coupled", init_std=0.7)
    rng, x, _ = _data(STACK, 4, batch=5)
    params = model.init_params(rng)
    devices = model.devices(params)
    d = cal.device
    for wiring, g, high, low in zip(network_wiring(STACK), devices, faults.stuck_high, faults.stuck_low):
        np.testing.assert_array_equal(g[high], (wiring.scale * d.g_max_siemens)[high])
        np.testing.assert_array_equal(g[low], (wiring.scale * d.g_min_siemens)[low])
        healthy = wiring.present & ~high & ~low
        assert np.all(g[healthy] >= wiring.scale[healthy] * d.g_min_siemens)
        assert np.all(g[healthy] <= wiring.scale[healthy] * d.g_max_siemens)
        assert np.all(g[~wiring.present] == 0.0)
    network = TrainedCrossbarNetwork(STACK, tuple(np.full(p.theta_shape, 1e-6) for p in STACK.plans), cal, "coupled")
    np.testing.assert_allclose(model.predict(params, x), device_trace(network, devices, x, "coupled").output,
                               rtol=0, atol=1e-12)


def test_parameters_of_the_wrong_shape_are_refused():
    model = ReplicaFaultAwareNetwork(phax_reference_calibration(), STACK, seeded_device_faults(STACK, 0.1, 0))
    _, x, _ = _data(STACK, 0)
    with pytest.raises(ConfigError, match="per-device θ shapes"):
        model.predict([np.zeros(p.theta_shape) for p in STACK.plans], x)
