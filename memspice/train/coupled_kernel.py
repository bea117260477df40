"""One layer's damped Newton loop compiled with numba: the coupled solver's fast path.

:func:`memspice.train.coupled_solve.newton_layer` runs the same algorithm as batched NumPy
operations; on the small layers of training (a batch of 16, tens of neurons) each of its
~40 array operations per iteration costs more in call overhead than in arithmetic. This kernel
runs every sample's whole Newton loop in one compiled call: the same residual (bicubic current
surface + dense load), the same Jacobian (per-neuron 2×2 blocks ``D`` plus ``Pᵀ diag(1/S) P``,
solved by Woodbury with the ``K × K`` capacitance ``C = diag(S) + P D⁻¹ Pᵀ``), the same damping,
clipping and stopping rule, per sample. Results agree with the NumPy loop to round-off
(the sums run in a different order).

Compiled on first use (:func:`compiled`) and cached on disk; numba is imported only then, so
importing the solver stays light. Without numba the NumPy loop runs instead.
"""

from __future__ import annotations

import functools
import importlib.util
from types import SimpleNamespace

import numpy as np

#: Helpers the kernels call, compiled first so that the kernels call their compiled versions.
_HELPERS = ("_locate", "_surface", "_dot", "_axpy", "_lu_solve", "_hermite")
#: The entry points :func:`compiled` returns.
_KERNELS = ("newton", "woodbury_solve", "unloaded_pair", "warm_guess", "warm_store")
#: Floating-point licences per helper, each changing round-off only (NaN and infinity keep their
#: meaning): dot products may sum in any order (vectorized), the surface's Horner steps may fuse
#: multiply-adds.
_FASTMATH = {"_dot": {"reassoc"}, "_surface": {"contract"}}
_compiled: SimpleNamespace | None = None


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can run (numba is installed)."""
    return importlib.util.find_spec("numba") is not None


def compiled() -> SimpleNamespace | None:
    """The compiled kernels (attributes named as the functions below), or None without numba.

    The first call imports numba and compiles every kernel, or loads it from numba's disk
    cache (``cache=True``: a fresh checkout compiles once, later processes load).
    """
    global _compiled
    if not available():
        return None
    if _compiled is None:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        module = globals()
        for name in _HELPERS:
            if not isinstance(module[name], numba.core.dispatcher.Dispatcher):
                fastmath = _FASTMATH.get(name, False)
                module[name] = numba.njit(cache=True, nogil=True, fastmath=fastmath)(module[name])
        _compiled = SimpleNamespace(**{name: jit(module[name]) for name in _KERNELS})
    return _compiled


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


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """``x · y`` for 1-D arrays (compiled with reassociation, so that it vectorizes)."""
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * y[i]
    return total


def _axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += alpha · x`` for 1-D arrays."""
    for i in range(y.shape[0]):
        y[i] += alpha * x[i]


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


def newton(coeffs: np.ndarray, grid: np.ndarray, column: np.ndarray, u: np.ndarray,
           p: np.ndarray, p_t: np.ndarray, bias: np.ndarray, total: np.ndarray, b: np.ndarray,
           lo: float, hi: float, tol: float, max_step: float, max_iter: int, diagonal: np.ndarray,
           d_in: np.ndarray, inv_out: np.ndarray, eps_out: np.ndarray, capacitance: np.ndarray,
           iterations: np.ndarray, last_step: np.ndarray) -> int:
    """Every sample's damped Newton loop (:func:`memspice.train.coupled_solve.newton_layer`);
    the outputs are written into ``u``, the last iterate's linearization and factor into
    ``diagonal``, ``d_in``, ``inv_out``, ``eps_out`` and ``capacitance``, each sample's
    iteration count (−1: not converged) and last step into ``iterations`` and ``last_step``.

    Returns:
        The most iterations any sample took, or −1 when some sample did not converge.
    """
    x0, inv_hx, y0, inv_hy = grid[0], grid[1], grid[2], grid[3]
    slowest = 0
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
                for q in range(k):
                    c_next[q] = (_dot(p[q], v) + bias[q]) / total[q]
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
                for q in range(k):
                    w[q] = _dot(p[q], y)
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
        if iterations[sample] < 0 or slowest < 0:
            slowest = -1
        elif iterations[sample] > slowest:
            slowest = iterations[sample]
    return slowest


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


def woodbury_solve(inv: np.ndarray, eps: np.ndarray, capacitance: np.ndarray, p: np.ndarray,
                   r: np.ndarray, transpose: bool, x: np.ndarray) -> None:
    """``x = J⁻¹ r`` (or ``J⁻ᵀ r``) per sample for ``J = D + Pᵀ diag(1/S) P``, from ``D⁻¹``
    (``inv`` = ``[α | δ]``, ``eps``) and the capacitance ``C``: :class:`WoodburyFactor`'s solve."""
    n_samples, width = r.shape
    m = width // 2
    k = p.shape[0]
    lu = np.empty((k, k))
    w = np.empty(k)
    z = np.empty(width)
    piv = np.empty(k, dtype=np.int64)
    for sample in range(n_samples):
        a, e, rhs, out = inv[sample], eps[sample], r[sample], x[sample]
        for j in range(m):  # y = D⁻¹ r (or D⁻ᵀ r)
            if transpose:
                out[j] = a[j] * rhs[j] + e[j] * rhs[m + j]
                out[m + j] = a[m + j] * rhs[m + j]
            else:
                out[j] = a[j] * rhs[j]
                out[m + j] = a[m + j] * rhs[m + j] + e[j] * rhs[j]
        for q in range(k):
            w[q] = _dot(p[q], out)
        if transpose:
            lu[:, :] = capacitance[sample].T
        else:
            lu[:, :] = capacitance[sample]
        if not _lu_solve(lu, w, piv):
            w[:] = np.nan
        z[:] = 0.0
        for q in range(k):
            _axpy(w[q], p[q], z)
        for j in range(m):  # x = y − D⁻¹ z (or D⁻ᵀ z)
            if transpose:
                out[j] -= a[j] * z[j] + e[j] * z[m + j]
                out[m + j] -= a[m + j] * z[m + j]
            else:
                out[j] -= a[j] * z[j]
                out[m + j] -= a[m + j] * z[m + j] + e[j] * z[j]


def warm_guess(table: np.ndarray, slots: np.ndarray, column: np.ndarray, outn: np.ndarray,
               outp: np.ndarray) -> None:
    """Overwrite the rows of ``outn``/``outp`` whose ``slots`` are ≥ 0 with the stored solution
    moved to first order for the column's change: :meth:`WarmStarts.guess`."""
    m = column.shape[1]
    for sample in range(slots.shape[0]):
        slot = slots[sample]
        if slot < 0:
            continue
        stored = table[slot]
        for j in range(m):
            move = stored[3, j] * (column[sample, j] - stored[2, j])
            outn[sample, j] = stored[0, j] + move
            outp[sample, j] = stored[1, j] + stored[4, j] * move


def warm_store(table: np.ndarray, slots: np.ndarray, outn: np.ndarray, outp: np.ndarray,
               column: np.ndarray, i1_in: np.ndarray, a: np.ndarray, e: np.ndarray,
               d: np.ndarray) -> None:
    """Store each sample's outputs, column and own slopes: :meth:`WarmStarts.store`."""
    m = column.shape[1]
    for sample in range(slots.shape[0]):
        stored = table[slots[sample]]
        for j in range(m):
            stored[0, j] = outn[sample, j]
            stored[1, j] = outp[sample, j]
            stored[2, j] = column[sample, j]
            stored[3, j] = -i1_in[sample, j] / a[sample, j]
            stored[4, j] = -e[sample, j] / d[sample, j]
