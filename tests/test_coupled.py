"""The coupled evaluator: KCL solution, Woodbury solves, implicit gradients, registry.

These tests use an analytic (EKV-style) inverter tabulated on a grid, so they need no
ngspice; ``test_coupled_spice.py`` checks the model against the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from memspice.errors import ConfigError
from memspice.fit.calibration import (
    Calibration,
    phax_reference_calibration,
)
from memspice.train.coupled import CoupledEvaluator
from memspice.train.coupled_solve import (
    CurrentSurface,
    Load,
    NewtonSettings,
    SolverError,
    jacobian_solve,
    residual,
)
from memspice.train.forward import EVALUATORS, make_evaluator
from memspice.train.losses import LOSS_NAMES, Loss
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import TrainedNetwork

TOPOLOGIES = {1: (4, 3), 2: (4, 5, 3), 3: (4, 5, 4, 3)}
from analytic_inverter import VDD, VSS, synthetic_calibration
from gradcheck import richardson_gradient


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return synthetic_calibration()


def random_network(topology, seed=0):
    rng = np.random.default_rng(seed)
    g_lo, g_hi = 0.12e-6, 8e-6
    return [np.exp(rng.uniform(np.log(g_lo), np.log(g_hi), (m, 2 * n + 2)))
            for n, m in zip(topology[:-1], topology[1:])]


def test_solution_satisfies_kirchhoff(calibration):
    """Recompute every node's net current by hand, node by node, from the returned voltages."""
    g = random_network(TOPOLOGIES[3], seed=1)
    x = np.random.default_rng(2).uniform(VSS, VDD, (5, 4))
    trace = CoupledEvaluator(calibration).forward(g, x)
    spline = calibration.inverter_current.interpolant()
    for index, state in enumerate(trace.layers):
        assert np.allclose(state.column, (state.rows @ g[index].T) / g[index].sum(axis=1), atol=1e-15)
        for b in range(len(x)):
            for j in range(state.outn.shape[1]):
                into_n = spline.ev(state.column[b, j], state.outn[b, j])
                into_p = spline.ev(state.outn[b, j], state.outp[b, j])
                if index + 1 < len(g):
                    nxt = trace.layers[index + 1]
                    m = state.outn.shape[1]
                    into_n -= np.sum(g[index + 1][:, m + j] * (state.outn[b, j] - nxt.column[b]))
                    into_p -= np.sum(g[index + 1][:, j] * (state.outp[b, j] - nxt.column[b]))
                assert abs(into_n) < 1e-15 and abs(into_p) < 1e-15


def test_unloaded_output_is_the_spline_root(calibration):
    g = random_network(TOPOLOGIES[1], seed=3)
    x = np.random.default_rng(4).uniform(VSS, VDD, (4, 4))
    state = CoupledEvaluator(calibration).forward(g, x).layers[0]
    spline = calibration.inverter_current.interpolant()
    for b, j in np.ndindex(state.outn.shape):
        outn = brentq(lambda v: float(spline.ev(state.column[b, j], v)), VSS, VDD, xtol=1e-14)
        outp = brentq(lambda v: float(spline.ev(outn, v)), VSS, VDD, xtol=1e-14)
        assert state.outn[b, j] == pytest.approx(outn, abs=1e-11)
        assert state.outp[b, j] == pytest.approx(outp, abs=1e-11)


@pytest.mark.parametrize("transpose", [False, True])
def test_woodbury_solve_matches_dense_jacobian(calibration, transpose):
    rng = np.random.default_rng(5)
    batch, m = 3, 5
    g_next = random_network((m, 4), seed=6)[0]
    load = Load.of(g_next, VDD, VSS)
    column = rng.uniform(-0.05, 0.05, (batch, m))
    outn, outp = rng.uniform(VSS, VDD, (2, batch, m))
    surface = CurrentSurface(calibration.inverter_current)
    _, _, lin = residual(surface, column, outn, outp, load)
    r_n, r_p = rng.standard_normal((2, batch, m))
    x_n, x_p = jacobian_solve(lin, load, r_n, r_p, transpose=transpose)
    # Dense Jacobian by central differences of the residual itself.
    for b in range(batch):
        jac = np.zeros((2 * m, 2 * m))
        for k in range(2 * m):
            h = 1e-6
            step = np.zeros(2 * m)
            step[k] = h
            up = residual(surface, column[b:b + 1], outn[b:b + 1] + step[:m], outp[b:b + 1] + step[m:], load)
            dn = residual(surface, column[b:b + 1], outn[b:b + 1] - step[:m], outp[b:b + 1] - step[m:], load)
            jac[:, k] = (np.concatenate([up[0][0], up[1][0]]) - np.concatenate([dn[0][0], dn[1][0]])) / (2 * h)
        matrix = jac.T if transpose else jac
        expected = np.linalg.solve(matrix, np.concatenate([r_n[b], r_p[b]]))
        assert np.allclose(np.concatenate([x_n[b], x_p[b]]), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def _loss(evaluator, g, x, labels, loss):
    out = evaluator.forward(g, x).output
    return loss.value_and_grad(out, labels, VSS, VDD)


def _richardson_gradient(evaluator, g, x, labels, loss, rel_step=2e-4):
    return richardson_gradient(lambda moved: _loss(evaluator, moved, x, labels, loss)[0], g, rel_step)


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
@pytest.mark.parametrize("depth", sorted(TOPOLOGIES))
def test_implicit_gradient_matches_finite_differences(calibration, depth, loss_name):
    topology = TOPOLOGIES[depth]
    g = random_network(topology, seed=depth)
    rng = np.random.default_rng(10 + depth)
    x = rng.uniform(VSS, VDD, (6, topology[0]))
    labels = rng.integers(0, topology[-1], 6)
    loss = Loss(loss_name)
    evaluator = CoupledEvaluator(calibration)
    _, grad_out = _loss(evaluator, g, x, labels, loss)
    analytic = evaluator.backward(evaluator.forward(g, x), grad_out)
    numeric = _richardson_gradient(evaluator, g, x, labels, loss)
    for a, n, gl in zip(analytic, numeric, g):
        # Compare G·∂L/∂G (= ∂L/∂ln G) so devices of every size count alike.
        assert np.linalg.norm((a - n) * gl) <= 1e-6 * np.linalg.norm(n * gl)


def test_gradient_through_the_next_layer_load_is_needed(calibration, monkeypatch):
    """Without the loading term ∂L/∂G of the next layer is wrong: the check above can fail."""
    g = random_network(TOPOLOGIES[2], seed=7)
    x = np.random.default_rng(8).uniform(VSS, VDD, (6, 4))
    labels = np.arange(6) % 3
    evaluator = CoupledEvaluator(calibration)
    _, grad_out = _loss(evaluator, g, x, labels, Loss("mse"))
    trace = evaluator.forward(g, x)
    numeric = _richardson_gradient(evaluator, g, x, labels, Loss("mse"))[1]
    full = evaluator.backward(trace, grad_out)[1]
    monkeypatch.setattr(CoupledEvaluator, "_load_vjp", staticmethod(lambda g_next, *rest: np.zeros_like(g_next)))
    partial = evaluator.backward(trace, grad_out)[1]
    assert np.linalg.norm(full - numeric) <= 1e-6 * np.linalg.norm(numeric)
    assert np.linalg.norm(partial - numeric) > 1e-2 * np.linalg.norm(numeric)


def test_non_convergence_names_the_samples(calibration):
    g = random_network(TOPOLOGIES[2], seed=9)
    x = np.random.default_rng(9).uniform(VSS, VDD, (4, 4))
    evaluator = CoupledEvaluator(calibration, NewtonSettings(max_iter=1))
    with pytest.raises(SolverError) as info:
        evaluator.forward(g, x)
    assert info.value.layer == 0
    assert len(info.value.samples) > 0 and set(info.value.samples) <= set(range(4))


def test_registry_and_users(calibration):
    assert make_evaluator("coupled", calibration).name == "coupled"
    assert {"static", "load-aware", "coupled"} <= set(EVALUATORS)
    with pytest.raises(ConfigError, match="inverter current"):
        make_evaluator("coupled", phax_reference_calibration())
    model = PhaxNetwork(calibration, (4, 5, 3), evaluator="coupled")
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    x = rng.uniform(VSS, VDD, (6, 4))
    value, grads = model.loss_and_grad(params, x, np.arange(6) % 3, Loss("bce"))
    assert np.isfinite(value) and [g.shape for g in grads] == [p.shape for p in params]
    conductances, _ = model.conductances(params)
    network = TrainedNetwork((4, 5, 3), tuple(conductances), calibration, evaluator="coupled")
    coupled = network.layer_voltages(x)
    static = network.layer_voltages(x, "static")
    assert np.allclose(coupled[-1].outp, model.predict(params, x), atol=1e-12)
    assert not np.allclose(coupled[0].outp, static[0].outp, atol=1e-3)
