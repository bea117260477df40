"""The load-aware evaluator: loads from the next crossbar, clamping, exact gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gradcheck import richardson_gradient

from memspice.errors import ConfigError
from memspice.fit.calibration import (
    Calibration,
    LoadAwareActivation,
    LoadAwareNeuron,
    NeuronActivation,
    phax_reference_calibration,
)
from memspice.train.forward import StaticEvaluator, make_evaluator
from memspice.train.load_aware import LoadAwareEvaluator, activation_parameters
from memspice.train.losses import LOSS_NAMES, Loss

TOPOLOGIES = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 4, 3)}
VDD, VSS = 0.25, -0.25
G_LO, G_HI = 0.5e-6, 100e-6


def _activation(c1, c2, c3, c4) -> LoadAwareActivation:
    """Polynomials for c1..c4 in either layout (log-polynomials for |c2| and c4 when stored so)."""
    common = dict(g_scale_siemens=1e-6, g_load_min_siemens=G_LO, g_load_max_siemens=G_HI, rms_v=0.0, max_abs_v=0.0)
    names = {f.name for f in dataclasses.fields(LoadAwareActivation)}
    if "log_c4" not in names:
        return LoadAwareActivation(c1, c2, c3, c4, **common)
    # Same leading behaviour: ln|c2| and ln c4 as polynomials with matching value and slope at u = 0.
    log_c2 = (np.log(abs(c2[0])),) + tuple(c / c2[0] for c in c2[1:])
    log_c4 = (np.log(c4[0]),) + tuple(c / c4[0] for c in c4[1:])
    return LoadAwareActivation(c1=c1, log_abs_c2=log_c2, c3=c3, log_c4=log_c4, c2_sign=float(np.sign(c2[0])),
                               **common)


def load_aware_calibration(constant: bool = False) -> Calibration:
    """Gain falling with load, as measured; ``constant`` drops every load dependence."""
    if constant:
        inv = _activation((0.001,), (-0.24,), (-0.01,), (30.0,))
        non = _activation((-0.002,), (0.245,), (-0.008,), (150.0,))
    else:
        inv = _activation((0.001, 0.0005), (-0.24, 0.002, -0.001), (-0.01, 0.001), (34.0, -12.0, 1.5))
        non = _activation((-0.002, 0.0003), (0.245, -0.003, 0.0008), (-0.008, 0.0005), (200.0, -60.0, 5.0))
    base = phax_reference_calibration()
    return Calibration(base.rails, base.activation, base.device,
                       load_aware=LoadAwareNeuron(inverting=inv, noninverting=non))


def random_network(topology, seed=0):
    rng = np.random.default_rng(seed)
    return [np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
            for n, m in zip(topology[:-1], topology[1:])]


def test_parameters_follow_the_polynomial_and_clamp():
    model = load_aware_calibration().load_aware.inverting
    g = np.array([1e-7, 2e-6, 30e-6, 1e-3])
    params, slopes = activation_parameters(model, g)
    assert params[3, 1] == pytest.approx(model.at(2e-6).c4)
    assert params[3, 0] == pytest.approx(model.at(G_LO).c4)
    assert params[3, 3] == pytest.approx(model.at(G_HI).c4)
    assert np.all(slopes[:, [0, 3]] == 0) and np.all(slopes[3, [1, 2]] != 0)
    h = 1e-9
    up, _ = activation_parameters(model, g + h)
    down, _ = activation_parameters(model, g - h)
    assert np.allclose(slopes[:, 1:3], ((up - down) / (2 * h))[:, 1:3], rtol=1e-6)


def test_constant_model_equals_static():
    cal = load_aware_calibration(constant=True)
    la = cal.load_aware
    static_cal = Calibration(cal.rails, NeuronActivation(la.inverting.at(3e-6), la.noninverting.at(3e-6)), cal.device)
    g = random_network(TOPOLOGIES[3], seed=1)
    x = np.random.default_rng(1).uniform(VSS, VDD, (5, 4))
    a = LoadAwareEvaluator(cal).forward(g, x)
    b = StaticEvaluator(static_cal).forward(g, x)
    for sa, sb in zip(a.layers, b.layers):
        assert np.allclose(sa.outn, sb.outn, atol=1e-14) and np.allclose(sa.outp, sb.outp, atol=1e-14)


def test_loads_come_from_the_next_crossbar():
    cal = load_aware_calibration()
    g = random_network(TOPOLOGIES[2], seed=2)
    evaluator = LoadAwareEvaluator(cal)
    g_n, g_p = evaluator.loads(g, 0)
    assert np.allclose(g_n, g[1][:, 5:10].sum(axis=0)) and np.allclose(g_p, g[1][:, :5].sum(axis=0))
    last_n, last_p = evaluator.loads(g, 1)
    assert np.all(last_n == G_LO) and np.all(last_p == G_LO)
    # A heavier load on neuron 0 of layer 0 changes that neuron only, and only through its load.
    x = np.random.default_rng(3).uniform(VSS, VDD, (50, 4))
    heavy = [g[0], g[1].copy()]
    heavy[1][:, [0, 5]] *= 8.0
    light_out = evaluator.forward(g, x).layers[0]
    heavy_out = evaluator.forward(heavy, x).layers[0]
    assert np.max(np.abs(heavy_out.outp[:, 0] - light_out.outp[:, 0])) > 1e-2
    params, _ = activation_parameters(cal.load_aware.noninverting, heavy[1][:, :5].sum(axis=0))
    c1, c2, c3, c4 = params[:, 0]
    assert np.allclose(heavy_out.outp[:, 0], c1 + c2 * np.tanh(c4 * (heavy_out.column[:, 0] - c3)), atol=1e-15)
    assert np.allclose(heavy_out.outp[:, 1:], light_out.outp[:, 1:])


def _loss(evaluator, g, x, labels, loss):
    return loss.value_and_grad(evaluator.forward(g, x).output, labels, VSS, VDD)


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("depth", sorted(TOPOLOGIES))
def test_gradient_matches_finite_differences(depth, loss_name):
    topology = TOPOLOGIES[depth]
    g = random_network(topology, seed=depth)
    rng = np.random.default_rng(20 + depth)
    x = rng.uniform(VSS, VDD, (6, topology[0]))
    labels = rng.integers(0, topology[-1], 6)
    loss = Loss(loss_name)
    evaluator = LoadAwareEvaluator(load_aware_calibration())
    _, grad_out = _loss(evaluator, g, x, labels, loss)
    analytic = evaluator.backward(evaluator.forward(g, x), grad_out)
    numerics = richardson_gradient(lambda moved: _loss(evaluator, moved, x, labels, loss)[0], g)
    for index, (matrix, numeric) in enumerate(zip(g, numerics)):
        assert np.linalg.norm((analytic[index] - numeric) * matrix) <= 1e-6 * np.linalg.norm(numeric * matrix)


def test_needs_a_load_aware_model():
    with pytest.raises(ConfigError, match="load-aware"):
        make_evaluator("load-aware", phax_reference_calibration())
    assert make_evaluator("load-aware", load_aware_calibration()).name == "load-aware"
