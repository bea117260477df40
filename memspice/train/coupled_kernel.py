"""One layer's damped Newton loop compiled with numba: the coupled solver's fast path.

:func:`memspice.train.coupled_solve.newton_layer` runs the same algorithm as batched NumPy
operations; on the small layers of training (a batch of 16, tens of neurons) each of its
~40 array operations per iteration costs more in call overhead than in arithmetic. This kernel
runs every sample's whole Newton loop in one compiled call: the same residual (bicubic current
surface + dense load), the same Jacobian (per-neuron 2×2 blocks ``D`` plus ``Pᵀ diag(1/S) P``,
solved by Woodbury with the ``K × K`` capacitance ``C = diag(S) + P D⁻¹ Pᵀ``), the same damping,
clipping and stopping rule, per sample. Results agree with the NumPy loop to round-off
(the sums run in a different order).

Compiled on first use and cached on disk (``cache=True``); numba is imported only then, so
``import memspice`` stays light. Without numba the NumPy loop runs instead.
"""

from __future__ import annotations

import numpy as np

try:  # a dependency, but the NumPy loop is a complete fallback
    import numba
except ImportError:  # pragma: no cover - numba missing
    numba = None

_jit = numba.njit(cache=True, nogil=True) if numba is not None else (lambda function: function)


def available() -> bool:
    """Whether the compiled kernel can run (numba is importable)."""
    return numba is not None


@_jit
def _locate(v: float, origin: float, inv_step: float, cells: int) -> tuple[int, float]:
    """Cell index and local coordinate in [0, 1] of ``v`` on a uniform grid of ``cells``
    cells, clipped onto it (NaN stays NaN, in cell 0)."""
    t = (v - origin) * inv_step
    if t < 0.0:
        t = 0.0
    elif t > cells:
        t = float(cells)
    if t == t:
        cell = int(t)
        if cell > cells - 1:
            cell = cells - 1
    else:
        cell = 0
    return cell, t - cell


@_jit
def _surface(coeffs: np.ndarray, x0: float, inv_hx: float, y0: float, inv_hy: float,
             v_in: float, v_out: float) -> tuple[float, float, float]:
    """Current, ``∂I/∂V_in`` and ``∂I/∂V_out`` at one point: :meth:`CurrentSurface._flat_eval`."""
    i, s = _locate(v_in, x0, inv_hx, coeffs.shape[0])
    j, t = _locate(v_out, y0, inv_hy, coeffs.shape[1])
    c = coeffs[i, j]  # c[p, q] multiplies s^p t^q
    ct0 = ((c[0, 3] * t + c[0, 2]) * t + c[0, 1]) * t + c[0, 0]
    ct1 = ((c[1, 3] * t + c[1, 2]) * t + c[1, 1]) * t + c[1, 0]
    ct2 = ((c[2, 3] * t + c[2, 2]) * t + c[2, 1]) * t + c[2, 0]
    ct3 = ((c[3, 3] * t + c[3, 2]) * t + c[3, 1]) * t + c[3, 0]
    dt0 = (3.0 * c[0, 3] * t + 2.0 * c[0, 2]) * t + c[0, 1]
    dt1 = (3.0 * c[1, 3] * t + 2.0 * c[1, 2]) * t + c[1, 1]
    dt2 = (3.0 * c[2, 3] * t + 2.0 * c[2, 2]) * t + c[2, 1]
    dt3 = (3.0 * c[3, 3] * t + 2.0 * c[3, 2]) * t + c[3, 1]
    value = ((ct3 * s + ct2) * s + ct1) * s + ct0
    d_in = ((3.0 * ct3 * s + 2.0 * ct2) * s + ct1) * inv_hx
    d_out = (((dt3 * s + dt2) * s + dt1) * s + dt0) * inv_hy
    return value, d_in, d_out


@_jit
def _axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += alpha · x`` for 1-D arrays."""
    for i in range(y.shape[0]):
        y[i] += alpha * x[i]


@_jit
def _lu_solve(a: np.ndarray, r: np.ndarray, piv: np.ndarray) -> bool:
    """Solve ``a x = r`` in place (``a`` becomes its LU factors, ``r`` the solution) by
    Gaussian elimination with partial pivoting; False if ``a`` is singular."""
    n = a.shape[0]
    for col in range(n):
        best = col
        size = abs(a[col, col])
        for row in range(col + 1, n):
            if abs(a[row, col]) > size:
                best, size = row, abs(a[row, col])
        if not size > 0.0:
            return False
        piv[col] = best
        if best != col:
            for q in range(n):
                a[col, q], a[best, q] = a[best, q], a[col, q]
            r[col], r[best] = r[best], r[col]
        inv = 1.0 / a[col, col]
        for row in range(col + 1, n):
            factor = a[row, col] * inv
            if factor != 0.0:
                a[row, col] = factor
                for q in range(col + 1, n):
                    a[row, q] -= factor * a[col, q]
                r[row] -= factor * r[col]
            else:
                a[row, col] = 0.0
    for row in range(n - 1, -1, -1):
        acc = r[row]
        for q in range(row + 1, n):
            acc -= a[row, q] * r[q]
        r[row] = acc / a[row, row]
    return True


@_jit
def newton(coeffs: np.ndarray, grid: np.ndarray, column: np.ndarray, u: np.ndarray,
            p: np.ndarray, p_t: np.ndarray, bias: np.ndarray, total: np.ndarray, b: np.ndarray,
            limits: np.ndarray, max_iter: int, diagonal: np.ndarray, d_in: np.ndarray,
            inv_out: np.ndarray, eps_out: np.ndarray, capacitance: np.ndarray,
            iterations: np.ndarray, last_step: np.ndarray) -> None:
    """Every sample's damped Newton loop; see :func:`memspice.train.coupled_solve.newton_layer`. Writes the outputs into ``u``."""
    x0, inv_hx, y0, inv_hy = grid[0], grid[1], grid[2], grid[3]
    lo, hi, tol, max_step = limits[0], limits[1], limits[2], limits[3]
    n_samples, m = column.shape
    width = 2 * m
    k = p.shape[0]
    f = np.empty(width)
    dg = np.empty(width)
    di = np.empty(width)
    inv = np.empty(width)
    eps = np.empty(m)
    y = np.empty(width)
    x = np.empty(width)
    z = np.empty(width)
    left = np.empty((k, width))
    cap = np.empty((k, k))
    lu = np.empty((k, k))
    c_next = np.empty(k)
    w = np.empty(k)
    piv = np.empty(k, dtype=np.int64)
    for sample in range(n_samples):
        v = u[sample]
        for j in range(width):
            if v[j] < lo:
                v[j] = lo
            elif v[j] > hi:
                v[j] = hi
        iterations[sample] = -1
        step = 0.0
        for iteration in range(1, max_iter + 1):
            # residual: both inverters of every neuron, then the load's currents
            for j in range(width):
                v_in = column[sample, j] if j < m else v[j - m]
                value, slope_in, slope_out = _surface(coeffs, x0, inv_hx, y0, inv_hy, v_in, v[j])
                f[j] = value
                di[j] = slope_in
                dg[j] = slope_out - b[j]
            if k > 0:
                # loops ordered so that the innermost runs along contiguous rows without
                # a reduction (the compiler vectorizes them)
                for q in range(k):
                    c_next[q] = bias[q]
                for j in range(width):
                    _axpy(v[j], p_t[j], c_next)
                for q in range(k):
                    c_next[q] /= total[q]
                for j in range(width):
                    f[j] -= b[j] * v[j]
                for q in range(k):
                    _axpy(c_next[q], p[q], f)
            # D⁻¹ per neuron: [[α, 0], [ε, δ]]
            for j in range(width):
                inv[j] = 1.0 / dg[j]
            for j in range(m):
                eps[j] = -di[m + j] * inv[j] * inv[m + j]
                y[j] = inv[j] * f[j]
                y[m + j] = inv[m + j] * f[m + j] + eps[j] * f[j]
            if k > 0:
                # Woodbury: C = diag(S) + (P D⁻¹) Pᵀ, w = C⁻¹ P y, x = y − D⁻¹ Pᵀ w
                for q in range(k):
                    for j in range(m):
                        left[q, j] = p[q, j] * inv[j] + p[q, m + j] * eps[j]
                        left[q, m + j] = p[q, m + j] * inv[m + j]
                cap = left @ p_t
                for q in range(k):
                    cap[q, q] += total[q]
                w[:] = 0.0
                for j in range(width):
                    _axpy(y[j], p_t[j], w)
                lu[:, :] = cap
                if not _lu_solve(lu, w, piv):
                    w[:] = np.nan
                z[:] = 0.0
                for q in range(k):
                    _axpy(w[q], p[q], z)
                for j in range(m):
                    x[j] = y[j] - inv[j] * z[j]
                    x[m + j] = y[m + j] - (inv[m + j] * z[m + j] + eps[j] * z[j])
            else:
                for j in range(width):
                    x[j] = y[j]
            step = 0.0
            for j in range(width):
                size = abs(x[j])
                if size > step or size != size:
                    step = size
                if step != step:
                    break
            if step > max_step:  # damping: shorten the step to max_step
                scale = max_step / step
                for j in range(width):
                    x[j] *= scale
            for j in range(width):
                new = v[j] - x[j]
                if new < lo:
                    new = lo
                elif new > hi:
                    new = hi
                v[j] = new
                diagonal[sample, j] = dg[j]
                d_in[sample, j] = di[j]
                inv_out[sample, j] = inv[j]
            for j in range(m):
                eps_out[sample, j] = eps[j]
            if step < tol:
                iterations[sample] = iteration
                break
        if k > 0:
            capacitance[sample] = cap
        last_step[sample] = step


@_jit
def _hermite(v: float, grid: np.ndarray, step: float, value: np.ndarray, slope: np.ndarray) -> float:
    """One point of :meth:`CurrentSurface.unloaded_output`'s cubic Hermite interpolation."""
    last = grid.shape[0] - 1
    if v < grid[0]:
        v = grid[0]
    elif v > grid[last]:
        v = grid[last]
    r = (v - grid[0]) * (1.0 / step)
    cell = 0
    if r == r:
        cell = min(max(int(r), 0), last - 1)
    t = (v - grid[cell]) * (1.0 / step)
    t2 = t * t
    t3 = t2 * t
    h01 = 3.0 * t2 - 2.0 * t3
    return (value[cell] + h01 * (value[cell + 1] - value[cell])
            + step * ((t3 - 2.0 * t2 + t) * slope[cell] + (t3 - t2) * slope[cell + 1]))


@_jit
def unloaded_pair(grid: np.ndarray, step: float, value: np.ndarray, slope: np.ndarray,
                  column: np.ndarray, u: np.ndarray) -> None:
    """Both unloaded inverters of every neuron: ``u = [outn | outp]`` with ``outn`` the
    unloaded output at ``column`` and ``outp`` the one at ``outn``."""
    n_samples, m = column.shape
    for sample in range(n_samples):
        for j in range(m):
            outn = _hermite(column[sample, j], grid, step, value, slope)
            u[sample, j] = outn
            u[sample, m + j] = _hermite(outn, grid, step, value, slope)
