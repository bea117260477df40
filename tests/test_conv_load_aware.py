"""The load-aware evaluator of layer-described networks: per-position loads, exact gradients."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import (
    Calibration,
    LoadAwareActivation,
    LoadAwareNeuron,
    phax_reference_calibration,
)
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.network.wiring import fan_out, network_wiring
from memspice.train.conv_load_aware import LayeredLoadAwareEvaluator
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.load_aware import LoadAwareEvaluator, activation_parameters
from memspice.train.losses import LOSS_LINKS, LOSS_NAMES, Loss
from gradcheck import central_gradient, relative_error

VDD, VSS = 0.25, -0.25
G_LO, G_HI = 0.5e-6, 100e-6

# conv(pad 1) → pool → conv → pool → flatten → dense: padding, folding and sharing all at once.
STACK = NetworkSpec((1, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                AvgPool2d(2), Flatten(), Dense(3)))


def load_aware_calibration(gain: float = 1.0) -> Calibration:
    """Gain and offsets that move with the load, as measured; ``gain`` scales ``c4``."""
    base = phax_reference_calibration()
    common = dict(g_scale_siemens=1e-6, g_load_min_siemens=G_LO, g_load_max_siemens=G_HI,
                  rms_v=0.0, max_abs_v=0.0)
    inv = LoadAwareActivation(c1=(0.001, 0.0005), log_abs_c2=(np.log(0.24), -0.008, 0.004),
                              c3=(-0.01, 0.001), log_c4=(np.log(34.0 * gain), -0.35, 0.04),
                              c2_sign=-1.0, **common)
    non = LoadAwareActivation(c1=(-0.002, 0.0003), log_abs_c2=(np.log(0.245), -0.012, 0.003),
                              c3=(-0.008, 0.0005), log_c4=(np.log(200.0 * gain), -0.3, 0.025),
                              c2_sign=1.0, **common)
    return Calibration(base.rails, base.activation, base.device,
                       load_aware=LoadAwareNeuron(inverting=inv, noninverting=non))


def _extrapolated_gradient(f, params, step=1e-3):
    """Central differences at ``step`` and ``step/2`` in θ, Richardson-extrapolated.

    The load-aware gradients here are ~1e-7 against losses of ~0.5, so a single central
    difference is limited by round-off at small steps and by truncation at large ones.
    """
    coarse = central_gradient(f, params, step)
    fine = central_gradient(f, params, step / 2)
    return [(4 * b - a) / 3 for a, b in zip(coarse, fine)]


def _data(spec, seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng, rng.uniform(VSS, VDD, (batch, spec.n_inputs)), rng.integers(0, 3, batch)


def test_dense_network_equals_the_dense_load_aware_evaluator():
    cal = load_aware_calibration()
    spec = NetworkSpec.dense((6, 4, 3))
    model = CrossbarNetwork(cal, spec, evaluator="load-aware")
    rng, x, labels = _data(spec, 0, batch=5)
    g, _ = model.conductances(model.init_params(rng))
    dense = LoadAwareEvaluator(cal)
    ours, theirs = model.forward(g, x), dense.forward(g, x)
    for a, b in zip(ours.layers, theirs.layers):
        for name in ("column", "outn", "outp"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-14)
    grad_out = Loss("mse").value_and_grad(ours.output, labels, VSS, VDD)[1]
    for a, b in zip(model.backward(ours, grad_out), dense.backward(theirs, grad_out)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


def test_each_conv_position_is_loaded_by_the_devices_it_drives():
    cal = load_aware_calibration()
    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Conv2d(3, 2), Flatten(),
                                   Dense(3)))
    wirings = network_wiring(spec)
    evaluator = LayeredLoadAwareEvaluator(cal, wirings)
    sigma = 2e-6
    matrices = [np.where(w.present, sigma * w.scale, 0.0) for w in wirings]
    from memspice.train.conv_coupled import row_column_matrix

    rc = [row_column_matrix(w, g) for w, g in zip(wirings, matrices)]
    loads = evaluator.loads(rc, 0)
    fold = spec.plans[1].fold
    expected = fan_out(wirings[1]) * sigma / fold
    np.testing.assert_allclose(loads.g_p, expected, rtol=1e-12)
    np.testing.assert_allclose(loads.g_n, expected, rtol=1e-12)
    assert loads.g_p.min() < loads.g_p.max()  # edges of the map drive fewer devices
    last = evaluator.loads(rc, 2)
    assert np.all(last.g_n == G_LO) and np.all(last.g_p == G_LO)
    # every neuron's outputs follow the load-aware tanh at its own load
    x = np.random.default_rng(1).uniform(VSS, VDD, (3, spec.n_inputs))
    state = evaluator.forward_devices(matrices, x).layers[0]
    c1, c2, c3, c4 = activation_parameters(cal.load_aware.noninverting, expected)[0]
    np.testing.assert_allclose(state.outp, c1 + c2 * np.tanh(c4 * (state.column - c3)),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("link", LOSS_LINKS)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_gradient_matches_finite_differences(loss_name, link):
    # gain / 10: at full gain three layers saturate and central differences lose digits
    model = CrossbarNetwork(load_aware_calibration(gain=0.1), STACK, evaluator="load-aware",
                            init_std=0.7)
    rng, x, labels = _data(STACK, 1)
    params = model.init_params(rng)
    loss = Loss(loss_name, link=link)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = _extrapolated_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def test_masked_theta_gets_no_gradient():
    plan = STACK.plans[1]
    theta_mask = np.ones(plan.theta_shape, dtype=bool)
    theta_mask[0, :3] = False
    spec = STACK.with_masks([None, CrossbarMask(theta=theta_mask), None])
    model = CrossbarNetwork(load_aware_calibration(gain=0.1), spec, evaluator="load-aware",
                            init_std=0.7)
    rng, x, labels = _data(spec, 2)
    params = model.init_params(rng)
    loss = Loss("bce", link="logit")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    assert np.all(grads[1][~theta_mask] == 0)
    numeric = _extrapolated_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6


def test_needs_a_load_aware_model():
    with pytest.raises(ConfigError, match="load-aware"):
        CrossbarNetwork(phax_reference_calibration(), STACK, evaluator="load-aware")
    with pytest.raises(ConfigError, match="evaluator"):
        CrossbarNetwork(load_aware_calibration(), STACK, evaluator="exact")
