"""Fit ``V_out = c1 + c2·tanh(c4·(V_in − c3))`` to a transfer curve, with residuals.

Every fit reports its residual RMS and maximum (V) over the points it was fitted to, so a
calibration never carries a fit without saying how good it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.errors import FitError
from memspice.fit.calibration import TanhActivation


@dataclass(frozen=True, slots=True)
class TanhFit:
    """A fitted activation and how well it fits.

    Attributes:
        activation: the fitted curve.
        rms_v: residual root-mean-square (V).
        max_abs_v: largest absolute residual (V).
        n_points: number of points fitted.
    """

    activation: TanhActivation
    rms_v: float
    max_abs_v: float
    n_points: int

    def as_row(self, prefix: str = "") -> dict[str, float]:
        """Flat dict for tables: ``c1..c4``, ``gain``, ``rms_v``, ``max_abs_v``."""
        a = self.activation
        return {
            f"{prefix}c1": a.c1, f"{prefix}c2": a.c2, f"{prefix}c3": a.c3, f"{prefix}c4": a.c4,
            f"{prefix}fit_gain": a.gain, f"{prefix}rms_v": self.rms_v, f"{prefix}max_abs_v": self.max_abs_v,
        }


def _clean(v_in: np.ndarray, v_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(v_in, dtype=np.float64).ravel()
    y = np.asarray(v_out, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise FitError(f"input and output have different lengths ({x.size} and {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 5:
        raise FitError(f"a tanh fit needs at least 5 finite points, got {x.size}")
    order = np.argsort(x)
    return x[order], y[order]


def midpoint_crossing(v_in: np.ndarray, v_out: np.ndarray, level: float) -> float:
    """Input voltage (V) where ``v_out`` first crosses ``level`` (linear interpolation).

    Raises:
        FitError: the curve never crosses ``level``.
    """
    x, y = _clean(v_in, v_out)
    d = y - level
    sign_change = np.nonzero(np.signbit(d[:-1]) != np.signbit(d[1:]))[0]
    if sign_change.size == 0:
        raise FitError(
            f"the transfer curve never crosses the midpoint {level:+.4f} V "
            f"(output spans {y.min():+.4f}..{y.max():+.4f} V): nothing to fit"
        )
    i = int(sign_change[0])
    if d[i + 1] == d[i]:
        return float(x[i])
    return float(x[i] - d[i] * (x[i + 1] - x[i]) / (d[i + 1] - d[i]))


def fit_start(x: np.ndarray, y: np.ndarray, midpoint: float | None = None
              ) -> tuple[np.ndarray, list[float], list[float], float]:
    """Start point, bounds and polarity of the tanh fit of a cleaned curve (``x`` increasing).

    Returns:
        ``(p0, lower, upper, sign)``: ``p0 = (c1, c2, c3, c4)`` inside the bounds, and ``sign``
        −1 for an inverting curve, +1 otherwise.

    Raises:
        FitError: a flat curve or one that never crosses the midpoint.
    """
    lo, hi = float(y.min()), float(y.max())
    swing = hi - lo
    if swing <= 0:
        raise FitError("the transfer curve is flat: nothing to fit")
    level = 0.5 * (lo + hi) if midpoint is None else float(midpoint)
    c3 = midpoint_crossing(x, y, level)
    inverting = np.mean(y[x < c3]) > np.mean(y[x >= c3]) if np.any(x < c3) and np.any(x >= c3) else y[0] > y[-1]
    slope = np.gradient(y, x)
    peak = float(np.max(np.abs(slope)))
    c2 = -0.5 * swing if inverting else 0.5 * swing
    c4 = max(peak / (0.5 * swing), 1e-3)
    span = float(x[-1] - x[0])
    sign = -1.0 if inverting else 1.0
    # |c2| ≤ swing: a nearly linear curve cannot trade an ever larger c2 for an ever smaller c4.
    lower = [lo - swing, -swing if inverting else 1e-9, x[0] - span, 1e-6]
    upper = [hi + swing, -1e-9 if inverting else swing, x[-1] + span, 1e6]
    p0 = np.array([0.5 * (lo + hi), c2, c3, c4])
    p0 = np.clip(p0, np.array(lower) + 1e-12, np.array(upper) - 1e-12)
    return p0, lower, upper, sign


def fit_tanh(v_in: np.ndarray, v_out: np.ndarray, midpoint: float | None = None) -> TanhFit:
    """Least-squares tanh fit of a transfer curve (scipy ``least_squares``, soft bounds).

    Args:
        v_in: input voltages (V).
        v_out: output voltages (V), same length.
        midpoint: output level whose crossing seeds ``c3`` (V); default the mean of the
            curve's extremes.

    Returns:
        The fit with its residual RMS and max (V).

    Raises:
        FitError: too few points, a curve that never crosses the midpoint, or no convergence.
    """
    from scipy.optimize import least_squares

    x, y = _clean(v_in, v_out)
    p0, lower, upper, sign = fit_start(x, y, midpoint)

    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] + p[1] * np.tanh(p[3] * (x - p[2])) - y

    result = least_squares(residual, p0, bounds=(lower, upper), x_scale="jac", xtol=1e-12, ftol=1e-12,
                           gtol=1e-12, max_nfev=2000)
    if not result.success and result.status <= 0:
        raise FitError(f"tanh fit did not converge: {result.message}")
    c1, c2, c3, c4 = (float(v) for v in result.x)
    if sign * c2 <= 0:
        raise FitError("tanh fit converged to the wrong polarity")
    r = residual(result.x)
    return TanhFit(TanhActivation(c1, c2, c3, c4), float(np.sqrt(np.mean(r * r))), float(np.max(np.abs(r))), int(x.size))
