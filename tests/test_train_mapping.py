"""Mapping round trips, quantization, hardware non-idealities and the wiring contract."""

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.train.forward import make_evaluator
from memspice.train.hardware import FaultMap, HardwareConfig, draw_fault_map, realize_conductances
from memspice.train.mapping import (
    ConductanceWindow,
    column_weights,
    conductance_to_theta,
    quantize_conductance,
    signed_weights,
    theta_to_conductance,
)

WINDOW = ConductanceWindow(1.2e-7, 8e-6)


def test_theta_conductance_round_trip_is_exact_inside_the_window():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(WINDOW.g_min_siemens, WINDOW.g_max_siemens, (50, 30))
    sigma = sigma[(sigma > WINDOW.g_min_siemens * 1.01) & (sigma < WINDOW.g_max_siemens * 0.99)]
    back = theta_to_conductance(conductance_to_theta(sigma, WINDOW), WINDOW)
    assert np.max(np.abs(back - sigma) / sigma) < 1e-12
    theta = rng.uniform(-8, 8, 100)
    again = conductance_to_theta(theta_to_conductance(theta, WINDOW), WINDOW)
    assert np.max(np.abs(again - theta)) < 1e-6


def test_window_edges_map_to_infinite_theta():
    theta = conductance_to_theta(np.array([WINDOW.g_min_siemens, WINDOW.g_max_siemens]), WINDOW)
    assert theta[0] == -np.inf and theta[1] == np.inf


def test_column_weights_sum_to_one_and_signed_weights_follow_wiring():
    g = np.array([[4e-6, 1e-6, 1e-6, 2e-6, 1e-6, 1e-6]])  # N = 2: ip0 ip1 in0 in1 bp bn
    w = column_weights(g)
    assert w.sum() == pytest.approx(1.0)
    signed, bias = signed_weights(g)
    np.testing.assert_allclose(signed, [[3e-6 / 10e-6, -1e-6 / 10e-6]])
    assert bias == pytest.approx(0.0)


def test_quantization_uses_uniform_levels_including_the_edges():
    sigma = np.linspace(0, 9e-6, 200)
    q = quantize_conductance(sigma, WINDOW, 5)
    levels = np.linspace(WINDOW.g_min_siemens, WINDOW.g_max_siemens, 5)
    assert set(np.round(np.unique(q) / 1e-12)) == set(np.round(levels / 1e-12))
    assert quantize_conductance(sigma, WINDOW, 0) is sigma
    with pytest.raises(ConfigError):
        quantize_conductance(sigma, WINDOW, 1)


def test_static_evaluator_matches_the_column_equation_and_row_wiring():
    cal = phax_reference_calibration()
    rng = np.random.default_rng(1)
    g0 = rng.uniform(1e-7, 8e-6, (3, 2 * 4 + 2))
    g1 = rng.uniform(1e-7, 8e-6, (2, 2 * 3 + 2))
    x = rng.uniform(-0.25, 0.25, (5, 4))
    trace = make_evaluator("static", cal).forward([g0, g1], x)
    rows0 = np.concatenate([x, -x, np.full((5, 1), 0.25), np.full((5, 1), -0.25)], axis=1)
    np.testing.assert_allclose(trace.layers[0].rows, rows0)
    v0 = rows0 @ g0.T / g0.sum(axis=1)
    np.testing.assert_allclose(trace.layers[0].column, v0)
    outp = cal.activation.noninverting(v0)
    outn = cal.activation.inverting(v0)
    rows1 = np.concatenate([outp, outn, np.full((5, 1), 0.25), np.full((5, 1), -0.25)], axis=1)
    np.testing.assert_allclose(trace.layers[1].rows, rows1)
    np.testing.assert_allclose(trace.output, cal.activation.noninverting(rows1 @ g1.T / g1.sum(1)))
    with pytest.raises(ConfigError, match="unknown network evaluator"):
        make_evaluator("coupled-typo", cal)


def test_faults_override_conductances_and_block_gradients():
    rng = np.random.default_rng(2)
    faults = draw_fault_map([(20, 30)], 0.1, 0.2, rng)
    assert 0.2 < faults.fraction < 0.4
    sigma = np.full((20, 30), 4e-6)
    (g,), (slope,) = realize_conductances([sigma], WINDOW, HardwareConfig(), faults)
    assert np.all(g[faults.stuck_high[0]] == WINDOW.g_max_siemens)
    assert np.all(g[faults.stuck_low[0]] == WINDOW.g_min_siemens)
    assert np.all(slope[faults.stuck_high[0] | faults.stuck_low[0]] == 0)
    with pytest.raises(ConfigError):
        FaultMap((np.ones((2, 2), bool),), (np.ones((2, 2), bool),))
    with pytest.raises(ConfigError):
        draw_fault_map([(2, 2)], 0.7, 0.7, rng)


def test_variation_is_seeded_and_multiplicative():
    sigma = [np.full((50, 40), 2e-6)]
    config = HardwareConfig(variation_sigma=0.1)
    a, _ = realize_conductances(sigma, WINDOW, config, rng=np.random.default_rng(7))
    b, _ = realize_conductances(sigma, WINDOW, config, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    assert np.std(np.log(a[0] / 2e-6)) == pytest.approx(0.1, rel=0.1)
    gauss = HardwareConfig(variation_sigma=0.1, variation_kind="gaussian")
    c, _ = realize_conductances(sigma, WINDOW, gauss, rng=np.random.default_rng(7))
    assert np.std(c[0] / 2e-6) == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ConfigError):
        realize_conductances(sigma, WINDOW, config)
    with pytest.raises(ConfigError):
        HardwareConfig(variation_kind="uniform")
