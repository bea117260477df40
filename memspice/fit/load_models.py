"""Load-aware activation and inverter output-current models fitted from SPICE sweeps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memspice.errors import FitError
from memspice.fit.calibration import InverterCurrentModel, LoadAwareActivation
from memspice.fit.tanh_fit import TanhFit

#: Conductance unit inside the load-aware model's logarithm: ``u = ln(G / 1 µS)``.
G_SCALE_SIEMENS = 1e-6


def fit_load_aware(
    g_load_siemens: Sequence[float],
    fits: Sequence[TanhFit],
    v_in: np.ndarray,
    curves: Sequence[np.ndarray],
    degree: int = 3,
) -> LoadAwareActivation:
    """Fit ``c1``, ``ln|c2|``, ``c3``, ``ln c4`` as polynomials in ``ln(G_load / 1 µS)``.

    Args:
        g_load_siemens: load conductance of each curve (S).
        fits: the per-load tanh fits, same order.
        v_in: shared input sweep (V).
        curves: the SPICE output of each load (V), same order.
        degree: polynomial degree (≤ number of loads − 1).

    Returns:
        The model, with the RMS and max error (V) of the reconstructed curves against SPICE.

    Raises:
        FitError: fewer than two loads, mismatched lengths, or a degree the data cannot support.
    """
    g = np.asarray(g_load_siemens, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or len(fits) != g.size or len(curves) != g.size:
        raise FitError("a load-aware fit needs at least two loads, each with a fit and a curve")
    if len(np.unique(g)) < degree + 1:
        raise FitError(f"degree {degree} needs at least {degree + 1} distinct loads, got {len(np.unique(g))}")
    if np.any(g <= 0) or not np.all(np.isfinite(g)):
        raise FitError("load conductances must be finite and positive")
    u = np.log(g / G_SCALE_SIEMENS)
    c2 = np.array([f.activation.c2 for f in fits])
    if not (np.all(c2 > 0) or np.all(c2 < 0)):
        raise FitError("the per-load fits disagree on the stage's polarity")
    series = {
        "c1": np.array([f.activation.c1 for f in fits]),
        "log_abs_c2": np.log(np.abs(c2)),
        "c3": np.array([f.activation.c3 for f in fits]),
        "log_c4": np.log(np.array([f.activation.c4 for f in fits])),
    }
    coeffs = {name: tuple(float(c) for c in np.polynomial.polynomial.polyfit(u, values, degree))
              for name, values in series.items()}
    common = {"c2_sign": float(np.sign(c2[0])), "g_scale_siemens": G_SCALE_SIEMENS,
              "g_load_min_siemens": float(g.min()), "g_load_max_siemens": float(g.max())}
    # Residual of the whole model (polynomials + tanh) against the SPICE curves.
    x = np.asarray(v_in, dtype=np.float64)
    partial = LoadAwareActivation(**coeffs, **common, rms_v=0.0, max_abs_v=0.0)
    e = np.concatenate([partial.at(float(g_k))(x) - np.asarray(curve, dtype=np.float64)
                        for g_k, curve in zip(g, curves)])
    return LoadAwareActivation(**coeffs, **common, rms_v=float(np.sqrt(np.mean(e * e))),
                               max_abs_v=float(np.max(np.abs(e))))


def fit_current_model(v_in: np.ndarray, v_out: np.ndarray, current_a: np.ndarray) -> InverterCurrentModel:
    """Tabulate the inverter current on every other grid point and test it on the rest.

    The model keeps the even-indexed rows and columns of the fine grid; a bicubic spline
    through them is evaluated at all the held-out (odd-indexed) points, whose SPICE values
    give the interpolation error.

    Args:
        v_in: fine input grid (V), increasing, odd length ≥ 9.
        v_out: fine output grid (V), increasing, odd length ≥ 9.
        current_a: ``(len(v_in), len(v_out))`` currents (A).

    Raises:
        FitError: grids too small or shapes that disagree.
    """
    from scipy.interpolate import RectBivariateSpline

    xi = np.asarray(v_in, dtype=np.float64)
    xo = np.asarray(v_out, dtype=np.float64)
    table = np.asarray(current_a, dtype=np.float64)
    if table.shape != (xi.size, xo.size):
        raise FitError(f"current table shape {table.shape} does not match grids ({xi.size}, {xo.size})")
    if xi.size < 9 or xo.size < 9 or xi.size % 2 == 0 or xo.size % 2 == 0:
        raise FitError("the current sweep needs odd grid sizes of at least 9 points per axis")
    coarse_in, coarse_out, coarse = xi[::2], xo[::2], table[::2, ::2]
    spline = RectBivariateSpline(coarse_in, coarse_out, coarse, kx=3, ky=3, s=0)
    held = np.ones(table.shape, dtype=bool)
    held[::2, ::2] = False
    ii, jj = np.nonzero(held)
    err = spline.ev(xi[ii], xo[jj]) - table[ii, jj]
    return InverterCurrentModel(
        v_in=tuple(float(v) for v in coarse_in),
        v_out=tuple(float(v) for v in coarse_out),
        current_a=tuple(tuple(float(c) for c in row) for row in coarse),
        interp_rms_a=float(np.sqrt(np.mean(err * err))),
        interp_max_a=float(np.max(np.abs(err))),
    )
