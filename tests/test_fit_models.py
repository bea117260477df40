"""Tanh fits, VTC metrics, load-aware and inverter-current models on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memspice.characterize.metrics import supply_metrics, vtc_metrics
from memspice.errors import FitError
from memspice.fit.load_models import fit_current_model, fit_load_aware
from memspice.fit.tanh_fit import fit_tanh, midpoint_crossing

X = np.linspace(-0.25, 0.25, 501)


def test_fit_tanh_recovers_known_parameters() -> None:
    y = 0.01 - 0.24 * np.tanh(40.0 * (X - 0.02))
    fit = fit_tanh(X, y, midpoint=0.0)
    a = fit.activation
    assert a.c1 == pytest.approx(0.01, abs=1e-7)
    assert a.c2 == pytest.approx(-0.24, abs=1e-7)
    assert a.c3 == pytest.approx(0.02, abs=1e-7)
    assert a.c4 == pytest.approx(40.0, rel=1e-6)
    assert fit.rms_v < 1e-8 and fit.max_abs_v < 1e-7 and fit.n_points == X.size


def test_fit_tanh_reports_residual_of_a_non_tanh_curve() -> None:
    y = 0.2 * np.clip(30 * X, -1, 1)  # a hard-clipped ramp is not a tanh
    fit = fit_tanh(X, y)
    assert fit.activation.c2 > 0
    assert 1e-4 < fit.rms_v <= fit.max_abs_v


def test_curve_that_never_crosses_the_midpoint_is_a_fit_error() -> None:
    y = 0.15 + 0.05 * np.tanh(30 * X)  # stays above mid-rail 0 V
    with pytest.raises(FitError, match="never crosses the midpoint"):
        fit_tanh(X, y, midpoint=0.0)
    with pytest.raises(FitError):
        midpoint_crossing(X, y, 0.0)


def test_flat_or_tiny_curves_are_fit_errors() -> None:
    with pytest.raises(FitError):
        fit_tanh(X, np.zeros_like(X))
    with pytest.raises(FitError):
        fit_tanh(X[:3], X[:3])


def test_vtc_metrics_of_an_ideal_tanh_inverter() -> None:
    gain = 10.0
    y = -0.25 * np.tanh(gain / 0.25 * X)
    m = vtc_metrics(X, y)
    assert m["v_m"] == pytest.approx(0.0, abs=1e-9)
    assert m["peak_gain"] == pytest.approx(gain, rel=1e-3)
    # unity gain where sech^2(kx) = 1/gain
    x1 = math.acosh(math.sqrt(gain)) / (gain / 0.25)
    assert m["v_il"] == pytest.approx(-x1, abs=2e-4)
    assert m["v_ih"] == pytest.approx(x1, abs=2e-4)
    assert m["nm_l"] == pytest.approx(m["v_il"] - m["v_ol"])
    assert m["nm_h"] == pytest.approx(m["v_oh"] - m["v_ih"])
    assert m["inverting"] == 1.0


def test_supply_metrics_sign_convention() -> None:
    # ngspice: the VDD source's branch current is negative when it delivers current.
    m = supply_metrics(np.full(5, -1e-6), np.full(5, 1e-6), 0.25, -0.25)
    assert m["i_dd_mean_a"] == pytest.approx(1e-6)
    assert m["power_mean_w"] == pytest.approx(0.5e-6)


def test_load_aware_model_reproduces_a_smooth_family() -> None:
    g = np.geomspace(0.5e-6, 10e-6, 7)
    curves, fits = [], []
    for gk in g:
        u = math.log(gk / 1e-6)
        y = -0.24 * math.exp(-0.04 * u) * np.tanh(40 * math.exp(-0.1 * u + 0.01 * u * u) * (X - 0.001 * u))
        curves.append(y)
        fits.append(fit_tanh(X, y, midpoint=0.0))
    model = fit_load_aware(g, fits, X, curves, degree=2)
    assert model.rms_v < 1e-5
    mid = model.at(2e-6)
    assert mid.c4 == pytest.approx(40 * math.exp(-0.1 * math.log(2) + 0.01 * math.log(2) ** 2), rel=1e-4)
    assert mid.c2 == pytest.approx(-0.24 * math.exp(-0.04 * math.log(2)), rel=1e-4)
    with pytest.raises(FitError):
        fit_load_aware(g[:2], fits[:2], X, curves[:2], degree=3)


def test_current_model_interpolates_with_small_error() -> None:
    v = np.linspace(-0.25, 0.25, 41)
    vi, vo = np.meshgrid(v, v, indexing="ij")
    table = 1e-6 * np.tanh(-20 * vi) - 2e-6 * vo
    model = fit_current_model(v, v, table)
    assert len(model.v_in) == 21 and model.interp_max_a < 1e-8
    spline = model.interpolant()
    assert spline.ev(0.0, 0.1, dy=1) == pytest.approx(-2e-6, rel=1e-3)
    with pytest.raises(FitError):
        fit_current_model(v[:40], v, table[:40])
