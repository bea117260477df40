"""Many tanh fits at once: the same least-squares problem as :func:`~memspice.fit.tanh_fit.fit_tanh`,
solved for K curves on one input grid by a vectorized Levenberg-Marquardt iteration.

A sizing sweep fits two curves per size × load point, thousands of them; one scipy call per
curve costs ≈ 8 ms, mostly Python overhead, and was half the sweep's wall time. Here every
iteration is a few NumPy operations on a ``(K, N)`` array and a batched 4 × 4 solve. Each curve
starts from :func:`~memspice.fit.tanh_fit.fit_start`; a curve whose answer is not strictly
inside ``fit_tanh``'s bounds with the right polarity, or that does not converge, is handed to
``fit_tanh`` itself, so every answer is a minimum of the same bounded problem.
"""

from __future__ import annotations

import numpy as np

from memspice.errors import FitError
from memspice.fit.calibration import TanhActivation
from memspice.fit.tanh_fit import TanhFit, _clean, fit_start, fit_tanh

_MAX_ITERATIONS = 300
#: Stop when a step changes no parameter by more than this relative amount (fit_tanh: xtol 1e-12).
_STEP_TOL = 1e-12
#: ... or when the cost stops falling by more than this relative amount (fit_tanh: ftol 1e-12).
_COST_TOL = 1e-12


def fit_tanh_many(v_in: np.ndarray, v_out: np.ndarray, midpoint: float | None = None) -> list[TanhFit | FitError]:
    """Fit every row of ``v_out`` (``(K, N)``, V) against the common input ``v_in`` (``(N,)``, V).

    Returns:
        One :class:`TanhFit` per row, or the :class:`FitError` that row's fit raised (a flat
        curve, one that never crosses the midpoint, or one that did not converge).
    """
    v_out = np.atleast_2d(np.asarray(v_out, dtype=np.float64))
    results: list[TanhFit | FitError | None] = [None] * v_out.shape[0]
    starts, bounds, rows = [], [], []
    x = None
    for k, curve in enumerate(v_out):
        try:
            xk, yk = _clean(v_in, curve)
            if xk.size != v_out.shape[1]:
                raise FitError("non-finite points: fitted on its own")
            p0, lower, upper, sign = fit_start(xk, yk, midpoint)
        except FitError as exc:
            results[k] = _single(v_in, curve, midpoint) if "non-finite" in str(exc) else exc
            continue
        x = xk
        starts.append(p0)
        bounds.append((lower, upper, sign))
        rows.append(k)
    if rows:
        assert x is not None
        order = np.argsort(np.asarray(v_in, dtype=np.float64).ravel())
        y = v_out[rows][:, order]
        params, converged = _levenberg_marquardt(x, y, np.array(starts))
        for i, k in enumerate(rows):
            lower, upper, sign = bounds[i]
            p = params[i]
            inside = bool(np.all(p > np.asarray(lower)) and np.all(p < np.asarray(upper)))
            if not (converged[i] and inside and sign * p[1] > 0):
                results[k] = _single(v_in, v_out[k], midpoint)
                continue
            r = p[0] + p[1] * np.tanh(p[3] * (x - p[2])) - y[i]
            results[k] = TanhFit(TanhActivation(*(float(v) for v in p)), float(np.sqrt(np.mean(r * r))),
                                 float(np.max(np.abs(r))), int(x.size))
    return [r if r is not None else FitError("not fitted") for r in results]


def _single(v_in: np.ndarray, v_out: np.ndarray, midpoint: float | None) -> TanhFit | FitError:
    try:
        return fit_tanh(v_in, v_out, midpoint=midpoint)
    except FitError as exc:
        return exc


def _levenberg_marquardt(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimize ``Σ (c1 + c2·tanh(c4·(x − c3)) − y)²`` per row; returns ``(params, converged)``."""
    k = y.shape[0]
    damping = np.full(k, 1e-3)
    active = np.ones(k, dtype=bool)
    converged = np.zeros(k, dtype=bool)
    cost = _cost(x, y, p)
    for _ in range(_MAX_ITERATIONS):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        pa, ya = p[idx], y[idx]
        d = x[None, :] - pa[:, 2:3]
        t = np.tanh(pa[:, 3:4] * d)
        s = 1.0 - t * t
        r = pa[:, 0:1] + pa[:, 1:2] * t - ya
        jac = np.stack([np.ones_like(t), t, -pa[:, 1:2] * pa[:, 3:4] * s, pa[:, 1:2] * d * s], axis=2)
        jac_t = jac.swapaxes(1, 2)
        jtj = jac_t @ jac
        jtr = (jac_t @ r[..., None])[..., 0]
        diag = np.einsum("kii->ki", jtj)
        lhs = jtj + damping[idx, None, None] * np.einsum("ki,ij->kij", np.maximum(diag, 1e-30), np.eye(4))
        try:
            step = -np.linalg.solve(lhs, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            active[idx] = False
            break
        trial = pa + step
        new_cost = _cost(x, ya, trial)
        better = np.isfinite(new_cost) & (new_cost <= cost[idx])
        gain = np.where(better, (cost[idx] - new_cost) / np.maximum(cost[idx], 1e-300), 0.0)
        small_step = np.all(np.abs(step) <= _STEP_TOL * (np.abs(pa) + _STEP_TOL), axis=1)
        accepted = idx[better]
        p[accepted] = trial[better]
        cost[accepted] = new_cost[better]
        damping[idx] = np.where(better, np.maximum(damping[idx] / 3.0, 1e-12), np.minimum(damping[idx] * 4.0, 1e12))
        done = (better & (gain <= _COST_TOL)) | small_step
        converged[idx[done]] = True
        active[idx[done]] = False
        stuck = ~better & (damping[idx] >= 1e12)
        active[idx[stuck]] = False
    return p, converged


def _cost(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    r = p[:, 0:1] + p[:, 1:2] * np.tanh(p[:, 3:4] * (x[None, :] - p[:, 2:3])) - y
    return np.einsum("kn,kn->k", r, r)
