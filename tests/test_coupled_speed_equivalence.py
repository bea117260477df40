"""The coupled solver's fast paths give the answers of the plain algorithm.

Warm starts, the arithmetic cell lookup, the tabulated unloaded roots, the Woodbury factor
reused by the backward pass and the outer-product capacitance only change how fast Newton gets
to the solution, never the solution: these tests compare them with warm starts off, with a
dense per-sample Newton written here from scratch, with FITPACK and with the other code path.
"""

from __future__ import annotations

import numpy as np
import pytest
from analytic_inverter import VDD, VSS, ekv_inverter_current, synthetic_calibration
from scipy.optimize import brentq

import memspice.train.coupled_solve as coupled_solve
from memspice.fit.calibration import InverterCurrentModel
from memspice.train.coupled import CoupledEvaluator, WarmStarts
from memspice.train.coupled_solve import CurrentSurface, Load, jacobian_solve, residual
from memspice.train.model import PhaxNetwork
from memspice.train.trainer import TrainConfig, train

TOPOLOGY = (6, 5, 4, 3)


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


def _dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(VSS, VDD, (n, TOPOLOGY[0]))
    return x, (x[:, 0] > x[:, 1]).astype(int) + (x[:, 2] > 0.1)


def _train(calibration, warm_start: bool, epochs=3):
    model = PhaxNetwork(calibration, TOPOLOGY, evaluator="coupled", init_mean=-1.0)
    if not warm_start:
        model.evaluator.warm_starts = None
    x, labels = _dataset()
    config = TrainConfig(epochs=epochs, batch_size=8, lr=0.05, seed=3, val_fraction=0.25, progress=False)
    return model, train(model, x, labels, config)


def test_training_curve_is_the_same_with_and_without_warm_starts(calibration):
    warm_model, warm = _train(calibration, warm_start=True)
    cold_model, cold = _train(calibration, warm_start=False)
    assert warm_model.evaluator.warm_starts is not None and len(warm_model.evaluator.warm_starts._slots) > 0
    for column in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(warm.history[column], cold.history[column], rtol=1e-9, atol=1e-12)
    for w, c in zip(warm.params, cold.params):
        np.testing.assert_allclose(w, c, rtol=1e-8, atol=1e-10)


def _dense_newton(surface_model: InverterCurrentModel, g, x):
    """Every layer's outputs, one sample at a time, with the full Jacobian by FITPACK."""
    spline = surface_model.interpolant()
    outputs = []
    for sample in x:
        v_pos, v_neg = sample, -sample
        layers = []
        for index, g_l in enumerate(g):
            rows = np.concatenate([v_pos, v_neg, [VDD, VSS]])
            column = g_l @ rows / g_l.sum(axis=1)
            m = len(column)
            nxt = g[index + 1] if index + 1 < len(g) else None
            u = np.zeros(2 * m)
            for _ in range(100):
                outn, outp = u[:m], u[m:]
                f = np.concatenate([spline.ev(column, outn), spline.ev(outn, outp)])
                jac = np.diag(np.concatenate([spline.ev(column, outn, dy=1), spline.ev(outn, outp, dy=1)]))
                jac[m:, :m] = np.diag(spline.ev(outn, outp, dx=1))
                if nxt is not None:
                    p = np.concatenate([nxt[:, m : 2 * m], nxt[:, :m]], axis=1)  # in rows, ip rows
                    bias = nxt[:, 2 * m] * VDD + nxt[:, 2 * m + 1] * VSS
                    total = nxt.sum(axis=1)
                    c_next = (p @ u + bias) / total
                    f += p.T @ c_next - p.sum(axis=0) * u
                    jac += p.T @ (p / total[:, None]) - np.diag(p.sum(axis=0))
                step = np.linalg.solve(jac, -f)
                scale = min(1.0, 0.05 / np.abs(step).max()) if np.abs(step).max() > 0 else 1.0
                u = np.clip(u + scale * step, VSS, VDD)
                if np.abs(step).max() < 1e-13:
                    break
            layers.append(u.copy())
            v_pos, v_neg = u[m:], u[:m]
        outputs.append(layers)
    return outputs


def test_trained_network_outputs_match_a_dense_newton(calibration):
    model, result = _train(calibration, warm_start=True, epochs=2)
    g, _ = model.conductances(result.params)
    x, _ = _dataset(8, seed=5)
    model.evaluator.forward(g, x)  # fill the warm starts for these inputs
    trace = model.evaluator.forward(g, x)  # solved from warm starts
    assert model.evaluator.iterations[0] <= 2
    expected = _dense_newton(calibration.inverter_current, g, x)
    for b in range(len(x)):
        for index, state in enumerate(trace.layers):
            got = np.concatenate([state.outn[b], state.outp[b]])
            np.testing.assert_allclose(got, expected[b][index], rtol=0, atol=1e-12)


def test_a_wrong_warm_start_changes_nothing_but_the_iterations(calibration):
    g = [np.exp(np.random.default_rng(s).uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for s, (n, m) in enumerate(zip(TOPOLOGY[:-1], TOPOLOGY[1:]))]
    x, _ = _dataset(10, seed=7)
    cold = CoupledEvaluator(calibration, warm_start=False).forward(g, x)
    evaluator = CoupledEvaluator(calibration)
    evaluator.forward(g, x)
    for table in evaluator.warm_starts._tables.values():  # poison every stored start
        table[:, 0:2] = VDD
        table[:, 3:5] = 0.0
    warm = evaluator.forward(g, x)
    for a, b in zip(warm.layers, cold.layers):
        np.testing.assert_allclose(a.outn, b.outn, rtol=0, atol=1e-13)
        np.testing.assert_allclose(a.outp, b.outp, rtol=0, atol=1e-13)


def test_warm_starts_share_slots_for_repeated_rows_and_forget_on_overflow_or_new_shape():
    cache = WarmStarts(capacity=4)
    x = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    keys, slots = cache.lookup(x, (2,))
    assert list(slots) == [-1, -1, -1]
    from memspice.train.coupled_solve import Linearization
    from memspice.train.forward import LayerState

    outn = np.array([[0.1, 0.2], [0.3, 0.4], [0.1, 0.2]])
    state = LayerState(np.zeros((3, 6)), np.zeros((3, 2)), outn, -outn)
    lin = Linearization(*[np.ones((3, 2))] * 4)
    cache.store(keys, slots, {0: (state, lin)})
    assert len(cache._slots) == 2 and slots[0] == slots[2]
    keys, slots = cache.lookup(x, (2,))
    guess_n, guess_p = np.zeros((3, 2)), np.zeros((3, 2))
    cache.guess(slots, 0, np.zeros((3, 2)), guess_n, guess_p)
    np.testing.assert_array_equal(guess_n, outn)
    np.testing.assert_array_equal(guess_p, -outn)
    more = np.arange(6.0).reshape(3, 2) + 10
    keys, slots = cache.lookup(more, (2,))
    cache.store(keys, slots, {0: (state, lin)})  # 2 + 3 > 4: start again
    assert len(cache._slots) == 3
    cache.lookup(more, (3,))
    assert len(cache._slots) == 0


@pytest.mark.parametrize("uniform", [True, False])
def test_current_surface_matches_fitpack_with_derivatives(uniform):
    grid = np.linspace(VSS, VDD, 21)
    if not uniform:
        grid = VSS + (VDD - VSS) * np.sin(np.linspace(0.0, np.pi / 2, 21)) ** 2
    table = ekv_inverter_current(grid[:, None], grid[None, :])
    model = InverterCurrentModel(tuple(grid), tuple(grid), tuple(map(tuple, table)), 0.0, 0.0)
    surface = CurrentSurface(model)
    spline = model.interpolant()
    rng = np.random.default_rng(1)
    v_in = np.concatenate([rng.uniform(VSS, VDD, 300), grid, [VSS - 0.01, VDD + 0.01]])
    v_out = np.concatenate([rng.uniform(VSS, VDD, 300), grid[::-1], [VDD + 0.02, VSS - 0.02]])
    value, d_in, d_out = surface(v_in, v_out)
    a, b = np.clip(v_in, VSS, VDD), np.clip(v_out, VSS, VDD)
    scale = np.abs(table).max()
    np.testing.assert_allclose(value, spline.ev(a, b), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(d_in, spline.ev(a, b, dx=1), rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(d_out, spline.ev(a, b, dy=1), rtol=0, atol=1e-9 * scale)


def test_unloaded_output_starts_within_microvolts_of_the_root(calibration):
    surface = CurrentSurface(calibration.inverter_current)
    spline = calibration.inverter_current.interpolant()
    for v_in in np.linspace(-0.2, 0.2, 23):
        root = brentq(lambda v: float(spline.ev(v_in, v)), VSS, VDD, xtol=1e-14)
        assert abs(surface.unloaded_output(np.array([v_in]))[0] - root) < 1e-5


@pytest.mark.parametrize("transpose", [False, True])
def test_capacitance_from_outer_products_equals_the_batched_product(calibration, monkeypatch, transpose):
    rng = np.random.default_rng(2)
    batch, m = 4, 6
    g_next = np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (5, 2 * m + 2)))
    column = rng.uniform(-0.05, 0.05, (batch, m))
    outn, outp = rng.uniform(VSS, VDD, (2, batch, m))
    surface = CurrentSurface(calibration.inverter_current)
    r_n, r_p = rng.standard_normal((2, batch, m))
    fast_load = Load.of(g_next, VDD, VSS)
    assert fast_load.outer is not None
    _, _, lin = residual(surface, column, outn, outp, fast_load)
    fast = jacobian_solve(lin, fast_load, r_n, r_p, transpose)
    monkeypatch.setattr(coupled_solve, "_OUTER_LIMIT", 0)
    slow_load = Load.of(g_next, VDD, VSS)
    assert slow_load.outer is None
    slow = jacobian_solve(lin, slow_load, r_n, r_p, transpose)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_backward_without_the_solver_state_gives_the_same_gradient(calibration):
    """The stored Jacobian (last iterate) and one recomputed at the returned outputs agree."""
    from dataclasses import replace

    from memspice.train.losses import Loss

    g = [np.exp(np.random.default_rng(s).uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for s, (n, m) in enumerate(zip(TOPOLOGY[:-1], TOPOLOGY[1:]))]
    x, labels = _dataset(6, seed=9)
    evaluator = CoupledEvaluator(calibration)
    trace = evaluator.forward(g, x)
    _, grad_out = Loss("bce").value_and_grad(trace.output, labels, VSS, VDD)
    reused = evaluator.backward(trace, grad_out)
    recomputed = evaluator.backward(replace(trace, solver_state=()), grad_out)
    for a, b in zip(reused, recomputed):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())


def test_a_warm_start_that_fails_is_retried_from_the_static_fit(calibration):
    g = [np.exp(np.random.default_rng(s).uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for s, (n, m) in enumerate(zip(TOPOLOGY[:-1], TOPOLOGY[1:]))]
    x, _ = _dataset(5, seed=11)
    cold = CoupledEvaluator(calibration, warm_start=False).forward(g, x)
    evaluator = CoupledEvaluator(calibration)
    evaluator.forward(g, x)
    for table in evaluator.warm_starts._tables.values():
        table[:, 0] = np.nan  # Newton cannot converge from here
    warm = evaluator.forward(g, x)
    for a, b in zip(warm.layers, cold.layers):
        np.testing.assert_allclose(a.outp, b.outp, rtol=0, atol=1e-13)


def test_long_batches_are_solved_in_chunks_with_the_same_answers_and_gradients(calibration):
    from memspice.train.losses import Loss

    g = [np.exp(np.random.default_rng(s).uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for s, (n, m) in enumerate(zip(TOPOLOGY[:-1], TOPOLOGY[1:]))]
    x, labels = _dataset(11, seed=13)
    whole = CoupledEvaluator(calibration, warm_start=False)
    chunked = CoupledEvaluator(calibration, warm_start=False)
    chunked.chunk = 4
    a, b = whole.forward(g, x), chunked.forward(g, x)
    assert b.solver_state == () and len(b.output) == len(x)
    for left, right in zip(a.layers, b.layers):
        for name in ("rows", "column", "outn", "outp"):
            np.testing.assert_allclose(getattr(left, name), getattr(right, name), rtol=0, atol=1e-13)
    _, grad_out = Loss("mse").value_and_grad(a.output, labels, VSS, VDD)
    for u, v in zip(whole.backward(a, grad_out), chunked.backward(b, grad_out)):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9 * np.abs(u).max())
