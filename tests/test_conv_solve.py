"""The elimination solver of the coupled conv evaluator gives the layer Newton's answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train import conv_kernel, conv_solve
from memspice.train.conv_coupled import LayeredCoupledEvaluator, row_column_matrix
from memspice.train.conv_solve import Capacitance, MergedLoad, gmres
from memspice.train.coupled_solve import BlockInverse, Load, SolverError

from analytic_inverter import VDD, VSS, synthetic_calibration

# conv(pad 1) → pool → conv → pool → flatten → dense: merged pool inputs, padding, sharing.
STACK = NetworkSpec((1, 8, 8), (Conv2d(3, 3, padding=1), AvgPool2d(2), Conv2d(4, 3),
                                AvgPool2d(2), Flatten(), Dense(3)))


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


def _devices(spec, seed, per_device=False):
    """Conductances from random σ per θ (shared kernels, pools folded onto equal devices), or
    drawn device by device (as after variation: nothing to merge)."""
    rng = np.random.default_rng(seed)
    wirings = network_wiring(spec)
    if per_device:
        devices = [np.where(w.present, rng.uniform(1e-7, 5e-6, w.source.shape), 0.0)
                   for w in wirings]
    else:
        devices = [w.conductances(rng.uniform(1e-7, 5e-6, w.plan.theta_shape)) for w in wirings]
    return rng, wirings, devices


def _compare(calibration, spec, seed, batch=5, per_device=False):
    rng, wirings, devices = _devices(spec, seed, per_device)
    new = LayeredCoupledEvaluator(calibration, wirings)
    old = LayeredCoupledEvaluator(calibration, wirings, solver="newton")
    x = rng.uniform(VSS, VDD, (batch, spec.n_inputs))
    ours, theirs = new.forward_devices(devices, x), old.forward_devices(devices, x)
    for a, b in zip(ours.layers, theirs.layers):
        for name in ("column", "outn", "outp"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
    grad_output = rng.standard_normal(ours.output.shape)
    grad_column = rng.standard_normal(ours.output.shape)
    for a, b in zip(new.backward_devices(ours, grad_output, grad_column),
                    old.backward_devices(theirs, grad_output, grad_column)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
    return new


@pytest.mark.parametrize("direct_max", [0, 1000], ids=["gmres", "direct"])
def test_elimination_gives_the_layer_newton_answers(calibration, monkeypatch, direct_max):
    monkeypatch.setattr(conv_solve, "DIRECT_MAX_COLUMNS", direct_max)
    new = _compare(calibration, STACK, 1)
    assert new._eliminates() and new.iterations[0] <= 8  # from the static fits, no warm start
    _compare(calibration, STACK, 9, per_device=True)


def test_elimination_with_masks_and_the_layer_newton_without_numba(calibration, monkeypatch):
    theta_mask = np.ones(STACK.plans[1].theta_shape, dtype=bool)
    theta_mask[0, 3:9] = False
    spec = STACK.with_masks((None, CrossbarMask(theta=theta_mask), None))
    monkeypatch.setattr(conv_solve, "DIRECT_MAX_COLUMNS", 0)
    assert _compare(calibration, spec, 2)._eliminates()
    monkeypatch.setattr(conv_kernel, "compiled", lambda: None)
    assert not _compare(calibration, spec, 3)._eliminates()


def test_elimination_from_the_load_aware_start(calibration):
    from test_conv_load_aware import load_aware_calibration

    with_model = dataclasses.replace(calibration, load_aware=load_aware_calibration().load_aware)
    _, wirings, devices = _devices(STACK, 10)
    evaluator = LayeredCoupledEvaluator(with_model, wirings)
    merged = evaluator._merged_load([row_column_matrix(w, g) for w, g in zip(wirings, devices)], 0)
    column = np.linspace(VSS, VDD, 2 * wirings[0].plan.n_columns).reshape(2, -1)
    static = calibration.activation.noninverting(column)
    assert np.abs(evaluator._start(column, merged)[1] - static).max() > 1e-3  # really used
    _compare(with_model, STACK, 10)


def test_a_failed_elimination_is_solved_by_layer_newton(calibration, monkeypatch):
    def fail(*args, **kwargs):
        raise SolverError(0, np.arange(1), np.ones(1), 1)

    monkeypatch.setattr("memspice.train.conv_coupled.solve_eliminated", fail)
    _compare(calibration, STACK, 4, batch=3)


def test_merged_load_equals_the_plain_load():
    _, wirings, devices = _devices(STACK, 5)
    matrix = row_column_matrix(wirings[1], devices[1])
    merged = MergedLoad.of(matrix, VDD, VSS)
    s = wirings[1].plan.n_sources
    plain = Load(matrix[:, s : 2 * s], matrix[:, :s], matrix[:, 2 * s] * VDD + matrix[:, 2 * s + 1] * VSS,
                 matrix.sum(axis=1))
    # the 2×2 pool folds four neurons onto identical devices
    assert merged.n_groups * 4 == s and merged.merged
    rng = np.random.default_rng(6)
    u = rng.uniform(VSS, VDD, (3, 2 * s))
    np.testing.assert_allclose(merged.next_columns(u), plain.next_columns(u[:, :s], u[:, s:]),
                               rtol=1e-13)
    v = rng.standard_normal((3, len(plain.total)))
    np.testing.assert_allclose(merged.transpose_product(v), v @ plain.stacked, rtol=1e-13)
    np.testing.assert_array_equal(merged.b, plain.b)
    inverse = BlockInverse(-rng.uniform(1e4, 1e6, (3, 2 * s)), rng.normal(0, 1e5, (3, s)))
    cap = Capacitance.of(merged, inverse)
    left = np.concatenate((plain.p_n * inverse.inv[:, None, :s] + plain.p_p * inverse.eps[:, None, :],
                           plain.p_p * inverse.inv[:, None, s:]), axis=2)
    want = left @ plain.stacked_t + np.diag(plain.total)
    np.testing.assert_allclose(cap.dense(), want, rtol=0, atol=1e-13 * np.abs(want).max())
    for transpose in (False, True):
        product = np.einsum("bkl,bl->bk", want.transpose(0, 2, 1) if transpose else want, v)
        np.testing.assert_allclose(cap.scaled_product(v, transpose) * plain.total, product,
                                   rtol=0, atol=1e-13 * np.abs(product).max())


def test_gmres_solves_to_its_tolerance_and_reports_failure():
    rng = np.random.default_rng(8)
    k, batch = 30, 4
    a = np.eye(k) + 0.3 * rng.standard_normal((batch, k, k)) / np.sqrt(k)
    rhs = rng.standard_normal((batch, k))
    x, converged = gmres(lambda v: np.einsum("bkl,bl->bk", a, v), rhs, 1e-13)
    assert converged
    want = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-11 * np.abs(want).max())
    # too few Krylov vectors and no restarts: not converged, and said so
    _, converged = gmres(lambda v: np.einsum("bkl,bl->bk", a, v), rhs, 1e-13, krylov=3,
                         restarts=0)
    assert not converged
