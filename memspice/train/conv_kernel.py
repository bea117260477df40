"""Compiled kernels of the elimination solver (:mod:`memspice.train.conv_solve`).

For given next column voltages ``c'`` every neuron of a loaded layer is an independent pair of
scalar equations,

    I(c, outn)    − b_n·outn + inj_n = 0
    I(outn, outp) − b_p·outp + inj_p = 0      (inj = Pᵀ c', the load's injected current, A)

each strictly decreasing in its unknown (the inverter sources less current as its output rises,
and the load draws more). :func:`eliminate` solves all of them, every sample and neuron of a
batch in one call: Newton safeguarded by a bracket (a step that leaves the bracket bisects it),
stopping when a node's step is below the tolerance and then applying that step, as the layer
Newton does. It also returns what the Newton iteration on ``c'`` needs, summed over each group
of neurons with identical load columns: the outputs and the entries of ``D⁻¹``.
:func:`arnoldi` and :func:`gmres_update` are the per-sample scalar work of the batched GMRES
(the products with the capacitance stay batched matrix products).

Compiled on first use (:func:`compiled`, with :mod:`memspice.train.coupled_kernel`'s current
surface) and cached on disk. Without numba the solver does not use them.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from memspice.train import coupled_kernel

_KERNELS = ("eliminate", "apply_move", "arnoldi", "gmres_update", "linearize")
_compiled: SimpleNamespace | None = None


def compiled() -> SimpleNamespace | None:
    """The compiled kernels (attributes named as the functions below), or None without numba."""
    global _compiled
    if not coupled_kernel.available():
        return None
    if _compiled is None:
        import numba

        coupled_kernel.compiled()  # compiles the shared helpers, which these kernels call
        module = globals()
        for name in ("_surface", "_dot", "_axpy"):
            module[name] = getattr(coupled_kernel, name)
        jit = numba.njit(cache=True, nogil=True)
        _compiled = SimpleNamespace(**{name: jit(module[name]) for name in _KERNELS})
    return _compiled


_surface = coupled_kernel._surface
_dot = coupled_kernel._dot
_axpy = coupled_kernel._axpy


def eliminate(coeffs: np.ndarray, grid: np.ndarray, column: np.ndarray, group: np.ndarray,
              inject: np.ndarray, b: np.ndarray, u: np.ndarray, lo: float, hi: float, tol: float,
              max_iter: int, inverse: np.ndarray, sums: np.ndarray, inverse_sums: np.ndarray
              ) -> int:
    """Solve every neuron's two outputs for fixed injected currents, in place.

    Args:
        coeffs: the current surface's per-cell coefficients (``CurrentSurface.coefficients``).
        grid: its uniform grid ``[x0, 1/Δx, y0, 1/Δy]``.
        column: ``(B, M)`` column voltages (V).
        group: ``(M,)`` each neuron's group (neurons of a group have equal load columns).
        inject: ``(B, 2G)`` the load's current into ``[outn | outp]`` of each group, ``Pᵀ c'`` (A).
        b: ``(2M,)`` each output node's conductance into the load (S).
        u: ``(B, 2M)`` start ``[outn | outp]`` (V); overwritten with the solution.
        lo, hi: the voltage range the outputs are clipped to (V).
        tol: a node is solved once its Newton step is below this (V); the step is applied.
        max_iter: iteration cap per node.
        inverse: ``(B, 3M)`` filled with ``D⁻¹ = [[α, 0], [ε, δ]]`` per neuron, ``[α | δ | ε]``
            (1/S), at each node's last evaluation (within one final step of the solution).
        sums: ``(B, 2G)`` filled with ``[Σ outn | Σ outp]`` per group (V).
        inverse_sums: ``(B, 3G)`` filled with ``[Σ α | Σ δ | Σ ε]`` per group (1/S).

    Returns:
        The most iterations any node took, or −1 when some node did not converge.
    """
    x0, inv_hx, y0, inv_hy = grid[0], grid[1], grid[2], grid[3]
    n_samples, m = column.shape
    groups = sums.shape[1] // 2
    slowest = 0
    for sample in range(n_samples):
        for q in range(2 * groups):
            sums[sample, q] = 0.0
        for q in range(3 * groups):
            inverse_sums[sample, q] = 0.0
        for j in range(m):
            g = group[j]
            e = 0.0
            for half in range(2):
                node = half * m + j
                v_in = column[sample, j] if half == 0 else u[sample, j]
                load = b[node]
                source = inject[sample, half * groups + g]
                v = min(max(u[sample, node], lo), hi)
                below, above = lo, hi  # the root lies in [below, above]
                done = -1
                slope = -1.0
                for iteration in range(1, max_iter + 1):
                    value, slope_in, slope_out = _surface(coeffs, x0, inv_hx, y0, inv_hy, v_in, v)
                    f = value - load * v + source
                    slope = slope_out - load
                    if half == 1:
                        e = slope_in
                    if f > 0.0:  # the residual falls with v: the root is above
                        below = v
                    else:
                        above = v
                    new = v - f / slope if slope < 0.0 else np.nan
                    if not (below <= new <= above):  # NaN too
                        new = 0.5 * (below + above)
                    step = abs(new - v)
                    v = new
                    if step < tol:
                        done = iteration
                        break
                u[sample, node] = v
                sums[sample, half * groups + g] += v
                inverse[sample, half * m + j] = 1.0 / slope
                if done < 0:
                    slowest = -1
                elif slowest >= 0 and done > slowest:
                    slowest = done
            alpha, delta = inverse[sample, j], inverse[sample, m + j]
            eps = -e * alpha * delta
            inverse[sample, 2 * m + j] = eps
            inverse_sums[sample, g] += alpha
            inverse_sums[sample, groups + g] += delta
            inverse_sums[sample, 2 * groups + g] += eps
    return slowest


def apply_move(group: np.ndarray, move: np.ndarray, inverse: np.ndarray, u: np.ndarray,
               lo: float, hi: float, largest: np.ndarray) -> None:
    """Move the outputs to first order for the next columns' change ``Δc' = −s``, in place:
    ``Δu = D⁻¹ Pᵀ s`` from ``move`` ``(B, 2G)`` = ``Pᵀ s`` per group (A) and the per-neuron
    ``inverse`` ``[α | δ | ε]``; clipped to ``[lo, hi]``. ``largest`` ``(B,)`` receives each
    sample's largest ``|Δu|`` (V) before clipping."""
    n_samples, width = u.shape
    m = width // 2
    groups = move.shape[1] // 2
    for sample in range(n_samples):
        biggest = 0.0
        for j in range(m):
            g = group[j]
            t_n, t_p = move[sample, g], move[sample, groups + g]
            d_n = inverse[sample, j] * t_n
            d_p = inverse[sample, 2 * m + j] * t_n + inverse[sample, m + j] * t_p
            biggest = max(biggest, abs(d_n), abs(d_p))
            u[sample, j] = min(max(u[sample, j] + d_n, lo), hi)
            u[sample, m + j] = min(max(u[sample, m + j] + d_p, lo), hi)
        largest[sample] = biggest


def linearize(coeffs: np.ndarray, grid: np.ndarray, column: np.ndarray, group: np.ndarray,
              u: np.ndarray, b: np.ndarray, i1_in: np.ndarray, inverse: np.ndarray,
              inverse_sums: np.ndarray) -> None:
    """The layer Jacobian's per-neuron blocks at outputs ``u`` ``(B, 2M)``: ``i1_in`` ``(B, M)``
    receives ``∂I₁/∂c`` (S), ``inverse`` ``(B, 3M)`` and ``inverse_sums`` ``(B, 3G)`` the
    per-neuron ``D⁻¹`` and its group sums as :func:`eliminate` fills them."""
    x0, inv_hx, y0, inv_hy = grid[0], grid[1], grid[2], grid[3]
    n_samples, m = column.shape
    groups = inverse_sums.shape[1] // 3
    for sample in range(n_samples):
        for q in range(3 * groups):
            inverse_sums[sample, q] = 0.0
        for j in range(m):
            _, slope_in, slope_out = _surface(coeffs, x0, inv_hx, y0, inv_hy, column[sample, j],
                                              u[sample, j])
            i1_in[sample, j] = slope_in
            alpha = 1.0 / (slope_out - b[j])
            e, slope_out = _surface(coeffs, x0, inv_hx, y0, inv_hy, u[sample, j],
                                    u[sample, m + j])[1:]
            delta = 1.0 / (slope_out - b[m + j])
            eps = -e * alpha * delta
            inverse[sample, j], inverse[sample, m + j], inverse[sample, 2 * m + j] = alpha, delta, eps
            g = group[j]
            inverse_sums[sample, g] += alpha
            inverse_sums[sample, groups + g] += delta
            inverse_sums[sample, 2 * groups + g] += eps


def arnoldi(basis: np.ndarray, j: int, w: np.ndarray, hessenberg: np.ndarray, cos: np.ndarray,
            sin: np.ndarray, g: np.ndarray, target: np.ndarray) -> bool:
    """Step ``j`` of GMRES for every sample: orthogonalize ``w`` ``(B, K)`` (the operator
    applied to ``basis[j]``) against ``basis[:j + 1]`` (classical Gram-Schmidt, twice), store
    it as ``basis[j + 1]``, rotate the new Hessenberg column ``hessenberg[:, :j + 2, j]``
    with the earlier Givens rotations, add one and update the residual norms ``g``
    ``(B, n + 1)``. Returns whether every sample's residual ``|g[:, j + 1]|`` is within its
    ``target``."""
    n_samples = w.shape[0]
    h = np.empty(j + 2)
    every = True
    for sample in range(n_samples):
        vector = w[sample]
        for i in range(j + 2):
            h[i] = 0.0
        for _ in range(2):
            for i in range(j + 1):
                coefficient = _dot(basis[i, sample], vector)
                h[i] += coefficient
                _axpy(-coefficient, basis[i, sample], vector)
        norm = math.sqrt(_dot(vector, vector))
        h[j + 1] = norm
        scale = 1.0 / norm if norm > 0.0 else 1.0
        for q in range(vector.shape[0]):
            basis[j + 1, sample, q] = vector[q] * scale
        for i in range(j):
            a, b = h[i], h[i + 1]
            h[i] = cos[sample, i] * a + sin[sample, i] * b
            h[i + 1] = cos[sample, i] * b - sin[sample, i] * a
        radius = math.hypot(h[j], h[j + 1])
        if radius > 0.0:
            cos[sample, j], sin[sample, j] = h[j] / radius, h[j + 1] / radius
        else:
            cos[sample, j], sin[sample, j] = 1.0, 0.0
            radius = h[j]
        h[j], h[j + 1] = radius, 0.0
        for i in range(j + 2):
            hessenberg[sample, i, j] = h[i]
        g[sample, j + 1] = -sin[sample, j] * g[sample, j]
        g[sample, j] = cos[sample, j] * g[sample, j]
        if not abs(g[sample, j + 1]) <= target[sample]:
            every = False
    return every


def gmres_update(basis: np.ndarray, n: int, hessenberg: np.ndarray, g: np.ndarray,
                 x: np.ndarray) -> None:
    """``x += basis[:n]ᵀ y`` per sample with ``y`` the solution of the rotated (triangular)
    Hessenberg system ``hessenberg[:, :n, :n] y = g[:, :n]``."""
    n_samples, k = x.shape
    y = np.empty(n)
    for sample in range(n_samples):
        for i in range(n - 1, -1, -1):
            acc = g[sample, i]
            for q in range(i + 1, n):
                acc -= hessenberg[sample, i, q] * y[q]
            y[i] = acc / hessenberg[sample, i, i]
        for i in range(n):
            _axpy(y[i], basis[i, sample], x[sample])
