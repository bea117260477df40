"""Batched tanh fits give the answers of one fit_tanh per curve, errors included."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.errors import FitError
from memspice.fit.tanh_batch import fit_tanh_many
from memspice.fit.tanh_fit import fit_tanh

X = np.linspace(-0.25, 0.25, 251)


def _curves() -> np.ndarray:
    rng = np.random.default_rng(5)
    rows = [0.01 - 0.24 * np.tanh(k * (X - c)) + 0.003 * np.sin(30 * X + p)
            for k, c, p in zip(rng.uniform(5, 400, 12), rng.uniform(-0.1, 0.1, 12), rng.uniform(0, 6, 12))]
    rows.append(0.2 * np.tanh(30 * X) + 0.002 * X)                                  # non-inverting
    rows.append(-0.125 * np.tanh(200 * (X + 0.1)) - 0.125 * np.tanh(200 * (X - 0.1)))  # double step
    rows.append(-0.3 * X)                                                             # nearly linear
    rows.append(np.zeros_like(X))                                                     # flat: an error
    rows.append(np.where(X < 0, 0.2, 0.1))                                            # never crosses 0
    with_nan = 0.05 - 0.2 * np.tanh(50 * X)
    with_nan[7] = np.nan
    rows.append(with_nan)                                                             # fitted on its own
    return np.array(rows)


def test_batched_fits_equal_single_fits() -> None:
    curves = _curves()
    many = fit_tanh_many(X, curves, midpoint=0.0)
    assert len(many) == len(curves)
    for curve, batched in zip(curves, many):
        try:
            single = fit_tanh(X, curve, midpoint=0.0)
        except FitError as exc:
            assert isinstance(batched, FitError) and str(batched) == str(exc)
            continue
        assert not isinstance(batched, FitError)
        assert batched.rms_v == pytest.approx(single.rms_v, rel=1e-9, abs=1e-15)
        assert batched.max_abs_v == pytest.approx(single.max_abs_v, rel=1e-6, abs=1e-12)
        a, b = single.activation, batched.activation
        for name in ("c1", "c2", "c3", "c4"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-4, abs=1e-9), name
        assert batched.n_points == single.n_points
    assert sum(isinstance(m, FitError) for m in many) == 2
