"""The compiled Newton loop (numba) gives the NumPy loop's answers.

:mod:`memspice.train.coupled_kernel` runs :func:`~memspice.train.coupled_solve.newton_layer`'s
algorithm per sample in compiled code; these tests compare every output of the fast path with
the plain batched NumPy loop (``compiled=False``, or numba reported missing) and check that the
fast path did run.
"""

from __future__ import annotations

import numpy as np
import pytest
from analytic_inverter import VDD, VSS, synthetic_calibration

import memspice.train.coupled_kernel as coupled_kernel
from memspice.train.coupled import CoupledEvaluator
from memspice.train.coupled_solve import (
    CurrentSurface,
    Load,
    NewtonSettings,
    SolverError,
    factor_jacobian,
    newton_layer,
)
from memspice.train.losses import Loss

pytest.importorskip("numba")

TOPOLOGY = (6, 5, 4, 3)


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the compiled kernel's calls."""
    calls = []
    kernels = coupled_kernel.compiled()
    newton = kernels.newton

    def counting(*args):
        calls.append(args[2].shape)
        return newton(*args)

    monkeypatch.setattr(kernels, "newton", counting)
    return calls


def _layer(calibration, batch, m, k, seed):
    rng = np.random.default_rng(seed)
    column = rng.uniform(-0.1, 0.1, (batch, m))
    g_next = np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (k, 2 * m + 2)))
    load = Load.of(g_next, VDD, VSS) if k else None
    start = (calibration.activation.inverting(column), calibration.activation.noninverting(column))
    return column, load, start


@pytest.mark.parametrize(("m", "k"), [(7, 4), (12, 1), (5, 0)])
def test_compiled_layer_solve_equals_the_numpy_loop(calibration, kernel_calls, m, k):
    surface = CurrentSurface(calibration.inverter_current)
    column, load, (outn, outp) = _layer(calibration, 9, m, k, seed=m + k)
    outn[0] += 0.2  # one sample starts far off: samples finish in different iterations
    fast = newton_layer(surface, column, outn, outp, load, NewtonSettings())
    plain = newton_layer(surface, column, outn, outp, load, NewtonSettings(), compiled=False)
    assert kernel_calls == [(9, m)]
    assert fast.iterations == plain.iterations
    np.testing.assert_allclose(fast.outn, plain.outn, rtol=0, atol=1e-14)
    np.testing.assert_allclose(fast.outp, plain.outp, rtol=0, atol=1e-14)
    for name in ("a", "e", "d", "i1_in"):
        expected = getattr(plain.lin, name)
        np.testing.assert_allclose(getattr(fast.lin, name), expected, rtol=1e-12, atol=0)
    # the compiled factor (its capacitance from the kernel) solves like a fresh NumPy factor
    rhs = np.random.default_rng(1).standard_normal((9, 2 * m))
    reference = factor_jacobian(plain.lin, load)
    for transpose in (False, True):
        got = fast.factor.solve_stacked(rhs.copy(), transpose)
        want = reference.solve_stacked(rhs.copy(), transpose)
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


def test_sparse_and_wide_loads_take_the_numpy_loop(calibration, kernel_calls, monkeypatch):
    from memspice.train import coupled_solve
    from memspice.train.coupled_solve import SparseLoad

    surface = CurrentSurface(calibration.inverter_current)
    column, load, start = _layer(calibration, 4, 6, 3, seed=8)
    sparse = SparseLoad(load.p_n, load.p_p, load.bias, load.total)
    a = newton_layer(surface, column, *start, sparse, NewtonSettings())
    monkeypatch.setattr(coupled_solve, "COMPILED_MAX_COLUMNS", 2)
    b = newton_layer(surface, column, *start, load, NewtonSettings())
    assert kernel_calls == []
    np.testing.assert_allclose(a.outp, b.outp, rtol=0, atol=1e-14)


def test_compiled_solve_reports_the_samples_that_fail_like_the_numpy_loop(calibration, kernel_calls):
    surface = CurrentSurface(calibration.inverter_current)
    column, load, (outn, outp) = _layer(calibration, 6, 4, 3, seed=3)
    outn[[1, 4], 2] = np.nan  # Newton cannot converge from a NaN
    settings = NewtonSettings(max_iter=8)
    errors = []
    for compiled in (True, False):
        with pytest.raises(SolverError) as info:
            newton_layer(surface, column, outn, outp, load, settings, layer=2, compiled=compiled)
        errors.append(info.value)
    assert len(kernel_calls) == 1
    for error in errors:
        assert error.layer == 2 and list(error.samples) == [1, 4]
        assert "did not converge in 8 Newton iterations" in str(error)


def test_compiled_unloaded_starts_equal_the_numpy_interpolation(calibration, monkeypatch):
    surface = CurrentSurface(calibration.inverter_current)
    column = np.random.default_rng(4).uniform(VSS - 0.05, VDD + 0.05, (5, 7))
    column[0, 0] = np.nan
    fast = surface.unloaded_pair(column)
    outn = surface.unloaded_output(column)
    expected = np.concatenate((outn, surface.unloaded_output(outn)), axis=1)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-15)
    assert np.isnan(fast[0, 0]) and np.isnan(fast[0, 7])
    monkeypatch.setattr(coupled_kernel, "available", lambda: False)
    np.testing.assert_array_equal(surface.unloaded_pair(column), expected)


@pytest.mark.parametrize("warm_start", [True, False])
def test_evaluator_with_and_without_the_kernel_gives_the_same_outputs_and_gradients(
        calibration, monkeypatch, kernel_calls, warm_start):
    rng = np.random.default_rng(5)
    g = [np.exp(rng.uniform(np.log(0.12e-6), np.log(8e-6), (m, 2 * n + 2)))
         for n, m in zip(TOPOLOGY[:-1], TOPOLOGY[1:])]
    x = rng.uniform(VSS, VDD, (10, TOPOLOGY[0]))
    labels = rng.integers(0, TOPOLOGY[-1], 10)
    results = []
    for available in (True, False):
        monkeypatch.setattr(coupled_kernel, "available", lambda: available)
        evaluator = CoupledEvaluator(calibration, warm_start=warm_start)
        for _ in range(2):  # the second pass starts from the first one's warm starts
            trace = evaluator.forward(g, x)
        _, grad_out = Loss("bce").value_and_grad(trace.output, labels, VSS, VDD)
        results.append((trace, evaluator.backward(trace, grad_out), list(evaluator.iterations)))
    assert len(kernel_calls) == 2 * len(g)  # two passes with the kernel, none without
    (fast, fast_grads, fast_iterations), (plain, plain_grads, plain_iterations) = results
    assert fast_iterations == plain_iterations
    for a, b in zip(fast.layers, plain.layers):
        np.testing.assert_allclose(a.outn, b.outn, rtol=0, atol=1e-13)
        np.testing.assert_allclose(a.outp, b.outp, rtol=0, atol=1e-13)
    for a, b in zip(fast_grads, plain_grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
