"""Finite-difference gradients for the evaluator gradient checks (test helper)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def richardson_gradient(loss: Callable[[list[np.ndarray]], float], g: Sequence[np.ndarray],
                        rel_step: float = 2e-4) -> list[np.ndarray]:
    """``∂loss/∂g`` by central differences in each conductance, Richardson-extrapolated.

    Steps of ``rel_step`` and ``rel_step/2`` relative to each entry; the extrapolation
    ``(4·D(h/2) − D(h))/3`` cancels the O(h²) term, leaving O(h⁴) truncation error.
    """
    numeric = []
    for index, matrix in enumerate(g):
        out = np.zeros_like(matrix)
        for idx in np.ndindex(matrix.shape):
            estimates = []
            for h in (rel_step * matrix[idx], 0.5 * rel_step * matrix[idx]):
                values = []
                for sign in (1.0, -1.0):
                    moved = [m.copy() for m in g]
                    moved[index][idx] += sign * h
                    values.append(loss(moved))
                estimates.append((values[0] - values[1]) / (2 * h))
            out[idx] = (4 * estimates[1] - estimates[0]) / 3
        numeric.append(out)
    return numeric


def central_gradient(f: Callable[[list[np.ndarray]], float], params: list[np.ndarray],
                     step: float = 1e-5) -> list[np.ndarray]:
    """``∂f/∂params`` by central differences of absolute ``step`` in each entry (edits in place, restores)."""
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            keep = p[idx]
            p[idx] = keep + step
            up = f(params)
            p[idx] = keep - step
            down = f(params)
            p[idx] = keep
            g[idx] = (up - down) / (2 * step)
        grads.append(g)
    return grads


def relative_error(analytic: Sequence[np.ndarray], numeric: Sequence[np.ndarray]) -> float:
    """‖analytic − numeric‖ / ‖numeric‖ over all arrays together."""
    a = np.concatenate([g.ravel() for g in analytic])
    n = np.concatenate([g.ravel() for g in numeric])
    return float(np.linalg.norm(a - n) / np.linalg.norm(n))


def assert_directional_gradient(model, params: list[np.ndarray], x: np.ndarray, labels: np.ndarray, loss,
                                rng: np.random.Generator, directions: int = 3) -> list[np.ndarray]:
    """``model.loss_and_grad``'s gradient along random directions against Richardson-extrapolated
    central differences (rel 1e-6); returns the analytic gradient."""
    import pytest

    _, grads = model.loss_and_grad(params, x, labels, loss)
    f = lambda p: model.loss_and_grad(p, x, labels, loss)[0]  # noqa: E731
    for _ in range(directions):
        direction = [rng.standard_normal(p.shape) for p in params]
        analytic = sum(np.sum(g * d) for g, d in zip(grads, direction))
        estimates = []
        for h in (1e-3, 5e-4):
            up = f([p + h * d for p, d in zip(params, direction)])
            down = f([p - h * d for p, d in zip(params, direction)])
            estimates.append((up - down) / (2 * h))
        numeric = (4 * estimates[1] - estimates[0]) / 3
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9 * abs(numeric) + 1e-12)
    return grads


def assert_full_gradient(model, params: list[np.ndarray], x: np.ndarray, labels: np.ndarray, loss,
                         rtol: float = 1e-5, atol: float = 1e-9) -> list[np.ndarray]:
    """``model.loss_and_grad``'s gradient, every entry, against central differences
    (:func:`central_gradient`); returns the analytic gradient."""
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    for got, want in zip(grads, numeric):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return grads
