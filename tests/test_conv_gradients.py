"""Exact gradients of conv → pool → conv → pool → dense stacks against finite differences."""

from dataclasses import replace

import numpy as np
import pytest

from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.train.conv_model import CrossbarNetwork, TanhConvNet
from memspice.train.hardware import HardwareConfig
from memspice.train.losses import LOSS_LINKS, LOSS_NAMES, Loss
from memspice.train.mapping import theta_to_conductance_vjp
from gradcheck import central_gradient, relative_error

# conv(pad 1) → pool → conv → pool → flatten → dense: padding, folding and sharing all at once.
STACK = NetworkSpec((1, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                AvgPool2d(2), Flatten(), Dense(3)))
# strided conv, overlapping pool, two input channels.
STRIDED = NetworkSpec((2, 7, 7), (Conv2d(2, 3, stride=2), AvgPool2d(2, stride=1), Flatten(),
                                  Dense(3)))


def _gentle_calibration():
    """The reference calibration with inverters 10× less steep.

    At the reference gain (≈ 48 per neuron) three layers saturate and the gradient falls to
    ~1e-5, where central differences lose digits to round-off; the gradient's correctness does
    not depend on the steepness.
    """
    cal = phax_reference_calibration()
    act = cal.activation
    gentle = replace(act, inverting=replace(act.inverting, c4=act.inverting.c4 / 10),
                     noninverting=replace(act.noninverting, c4=act.noninverting.c4 / 10))
    return replace(cal, activation=gentle)


def _data(spec, seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng, rng.uniform(-0.25, 0.25, (batch, spec.n_inputs)), rng.integers(0, 3, batch)


@pytest.mark.parametrize("link", LOSS_LINKS)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("spec", [STACK, STRIDED], ids=["stack", "strided"])
def test_crossbar_gradient_matches_finite_differences(spec, loss_name, link):
    model = CrossbarNetwork(_gentle_calibration(), spec, init_std=0.7)
    rng, x, labels = _data(spec, 1)
    params = model.init_params(rng)
    loss = Loss(loss_name, link=link)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert [g.shape for g in grads] == [p.theta_shape for p in spec.plans]
    assert relative_error(grads, numeric) <= 1e-6


def test_masked_gradient_is_zero_on_absent_devices_and_exact_elsewhere():
    plan = STACK.plans[1]
    theta_mask = np.ones(plan.theta_shape, dtype=bool)
    theta_mask[0, :5] = False  # part of kernel 0 removed at every position
    spec = STACK.with_masks((None, CrossbarMask(theta=theta_mask), None))
    model = CrossbarNetwork(_gentle_calibration(), spec, init_std=0.7)
    rng, x, labels = _data(spec, 2)
    params = model.init_params(rng)
    loss = Loss("bce")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert np.all(grads[1][~theta_mask] == 0)
    assert np.abs(grads[1][theta_mask]).max() > 0
    assert relative_error(grads, numeric) <= 1e-6


def test_quantized_gradient_is_straight_through():
    cal = phax_reference_calibration()
    model = CrossbarNetwork(cal, STACK, hardware=HardwareConfig(levels=8), init_std=0.7)
    rng, x, labels = _data(STACK, 3)
    params = model.init_params(rng)
    g, _ = model.conductances(params)
    levels = np.linspace(cal.device.g_min_siemens, cal.device.g_max_siemens, 8)
    for gi in g:
        assert np.abs(gi.ravel()[:, None] - levels).min(axis=1).max() <= 1e-18
    loss = Loss("bce")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    # straight-through: ∂L/∂G at the quantized conductances, pulled back through the sigmoid
    trace = model.forward(g, x)
    _, grad_out = loss.value_and_grad(trace.output, labels, *model.output_range)
    expected = [theta_to_conductance_vjp(t, model.window, gg)
                for t, gg in zip(params, model.backward(trace, grad_out))]
    for got, want in zip(grads, expected):
        np.testing.assert_array_equal(got, want)
    # and quantization did move the conductances
    assert not np.array_equal(g[0], CrossbarNetwork(cal, STACK).conductances(params)[0][0])


@pytest.mark.parametrize("link", LOSS_LINKS)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_float_baseline_gradient_matches_finite_differences(loss_name, link):
    model = TanhConvNet(STACK, -0.25, 0.25)
    rng, x, labels = _data(STACK, 4)
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in model.init_params(rng)]
    loss = Loss(loss_name, link=link)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    assert relative_error(grads, numeric) <= 1e-6
