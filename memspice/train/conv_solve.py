"""A loaded layer solved by nonlinear elimination through its next columns.

The unknowns of a loaded layer are its outputs ``u = [outn | outp]`` ``(B, 2M)`` and, through
the load, the next layer's column voltages ``c' = (P u + bias)/S`` ``(B, K)``
(:mod:`memspice.train.coupled_solve`). Held at fixed ``c'``, every neuron is on its own: two
scalar monotone equations (:mod:`memspice.train.conv_kernel`). So the layer is solved as
``K`` equations in ``c'`` alone,

    R(c') = S ⊙ c' − P u(c') − bias = 0      (A)

with ``u(c')`` the per-neuron solution. ``∂u/∂c' = −D⁻¹Pᵀ`` (``D`` the per-neuron 2×2 blocks),
so Newton's matrix on ``c'`` is ``C = diag(S) + P D⁻¹ Pᵀ``: the Woodbury capacitance of the
layer Newton, whose root it shares. Eliminating the neurons exactly makes Newton on ``c'``
converge from the static fits in about five iterations with no damping, where Newton on ``u``
needs a long warm start.

``C`` is never factored for a wide load. ``S⁻¹C`` is well conditioned (on trained MNIST conv
layers its eigenvalues lie in about [0.3, 1], clustered at 1), so GMRES solves it in 5–15
products with ``C``, each two ``(B, K) × (K, 2G)`` matrix products. Neurons that drive
identical devices (the ``P²`` inputs of one folded pool window) are merged into one of ``G``
groups: their columns of ``P`` are equal, so ``P D⁻¹ Pᵀ`` needs only their summed ``D⁻¹``.
Newton's linear solves are inexact early (relative residual ``min(1e-2, |Δ|²)``, at least
1e-6) and the loop ends when no node moved by more than ``tol_v``, after one more elimination
at the final ``c'`` — so, as in the layer Newton, the returned outputs are within about
``tol_v²`` of the exact root. Narrow loads (a dense next layer) form and solve ``C`` directly.

The backward pass solves ``Jᵀ λ = g`` for ``J = D + Pᵀ diag(1/S) P`` by Woodbury with the same
matrix-free ``C`` (:class:`EliminatedFactor`), to a relative residual of 1e-14.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memspice.train import conv_kernel
from memspice.train.coupled_solve import (
    BlockInverse,
    CurrentSurface,
    Linearization,
    NewtonSettings,
    SolverError,
    _batched_solve,
    _PairSolve,
)

#: Loads of at most this many next columns form ``C`` and solve it directly (below it the
#: ``K × K`` products are cheaper than GMRES's iterations).
DIRECT_MAX_COLUMNS = 32

#: Largest change of any next column in one Newton iteration (V); longer steps are scaled
#: down per sample. From the static fits the first step is ~60 mV on MNIST conv layers.
_MAX_COLUMN_STEP_V = 0.1

#: Relative residual of Newton's first linear solves and the floor of later ones.
_FIRST_RTOL = 1e-2
_LAST_RTOL = 1e-6

#: Relative residual of the backward pass's solves.
ADJOINT_RTOL = 1e-14

#: GMRES: Krylov vectors kept before a restart, and restarts allowed.
_KRYLOV = 40
_RESTARTS = 4


@dataclass(frozen=True, slots=True)
class MergedLoad:
    """The next crossbar seen from a layer's outputs, with neurons merged into groups of
    identical load columns.

    Attributes:
        total: ``(K,)`` column conductance sums ``S`` (S).
        bias: ``(K,)`` current the rail rows inject into each next column at 0 V (A).
        b: ``(2M,)`` each output node's conductance into the load, ``[b_n | b_p]`` (S).
        group: ``(M,)`` the group of each neuron.
        p: ``(K, 2G)`` ``[P_n | P_p]`` on the groups (S).
        p_t: ``(2G, K)`` its transpose.
    """

    total: np.ndarray
    bias: np.ndarray
    b: np.ndarray
    group: np.ndarray
    p: np.ndarray
    p_t: np.ndarray
    _order: np.ndarray = field(repr=False, compare=False)
    _starts: np.ndarray = field(repr=False, compare=False)

    @classmethod
    def of(cls, matrix: np.ndarray, vdd: float, vss: float) -> MergedLoad:
        """From the next layer's row-column matrix ``(K, 2M + 3)`` (S), rows
        ``[p…, n…, VDD, VSS, 0 V]``."""
        m = (matrix.shape[1] - 3) // 2
        p_p, p_n = matrix[:, :m], matrix[:, m : 2 * m]
        _, first, group = np.unique(np.concatenate((p_n, p_p)).T, axis=0, return_index=True,
                                    return_inverse=True)
        # groups numbered by their first neuron, so that the merge keeps the neurons' order
        rank = np.empty(len(first), dtype=np.intp)
        rank[np.argsort(first)] = np.arange(len(first))
        group = rank[group.ravel()]
        representative = np.sort(first)
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], np.arange(len(first)))
        p = np.ascontiguousarray(np.concatenate((p_n[:, representative], p_p[:, representative]),
                                                axis=1))
        b = np.concatenate((p_n.sum(axis=0), p_p.sum(axis=0)))
        return cls(matrix.sum(axis=1), matrix[:, 2 * m] * vdd + matrix[:, 2 * m + 1] * vss, b,
                   group, p, np.ascontiguousarray(p.T), order, starts)

    @property
    def n_groups(self) -> int:
        """``G``."""
        return self.p.shape[1] // 2

    @property
    def merged(self) -> bool:
        """Whether some group holds more than one neuron."""
        return self.n_groups < len(self.group)

    def sum_groups(self, x: np.ndarray) -> np.ndarray:
        """``(B, M)`` per neuron → ``(B, G)`` summed per group."""
        if not self.merged:
            return x
        return np.add.reduceat(x[:, self._order], self._starts, axis=1)

    def product(self, u: np.ndarray) -> np.ndarray:
        """``P u`` ``(B, K)`` for ``u`` ``(B, 2M)`` ``[n | p]``."""
        m = len(self.group)
        return np.concatenate((self.sum_groups(u[:, :m]), self.sum_groups(u[:, m:])),
                              axis=1) @ self.p_t

    def transpose_product(self, v: np.ndarray) -> np.ndarray:
        """``Pᵀ v`` ``(B, 2M)`` for ``v`` ``(B, K)``."""
        t = v @ self.p
        if not self.merged:
            return t
        g = self.n_groups
        return np.concatenate((t[:, :g][:, self.group], t[:, g:][:, self.group]), axis=1)

    def next_columns(self, u: np.ndarray) -> np.ndarray:
        """The next layer's column voltages ``(B, K)`` (V) for outputs ``u`` ``(B, 2M)``."""
        return (self.product(u) + self.bias) / self.total


@dataclass(frozen=True, slots=True)
class Capacitance:
    """``C = diag(S) + P D⁻¹ Pᵀ`` per sample, applied without forming it.

    Attributes:
        load: the merged load.
        alpha, delta, eps: ``(B, G)`` the entries of ``D⁻¹ = [[α, 0], [ε, δ]]`` summed per
            group (1/S).
    """

    load: MergedLoad
    alpha: np.ndarray
    delta: np.ndarray
    eps: np.ndarray

    @classmethod
    def of(cls, load: MergedLoad, inverse: BlockInverse) -> Capacitance:
        m = len(load.group)
        return cls(load, load.sum_groups(inverse.inv[:, :m]), load.sum_groups(inverse.inv[:, m:]),
                   load.sum_groups(inverse.eps))

    def scaled_product(self, v: np.ndarray, transpose: bool = False) -> np.ndarray:
        """``S⁻¹ C v`` (or ``S⁻¹ Cᵀ v``) for ``v`` ``(B, K)``."""
        g = self.load.n_groups
        t = v @ self.load.p
        t_n, t_p = t[:, :g], t[:, g:]
        if transpose:
            y = np.concatenate((self.alpha * t_n + self.eps * t_p, self.delta * t_p), axis=1)
        else:
            y = np.concatenate((self.alpha * t_n, self.eps * t_n + self.delta * t_p), axis=1)
        return v + (y @ self.load.p_t) / self.load.total

    def dense(self) -> np.ndarray:
        """``C`` ``(B, K, K)`` (S), formed."""
        load = self.load
        g = load.n_groups
        p_n, p_p = load.p[:, :g], load.p[:, g:]
        left = np.concatenate((p_n * self.alpha[:, None, :] + p_p * self.eps[:, None, :],
                               p_p * self.delta[:, None, :]), axis=2)
        capacitance = left @ load.p_t
        diagonal = np.arange(load.p.shape[0])
        capacitance[:, diagonal, diagonal] += load.total
        return capacitance

    def solve(self, r: np.ndarray, rtol: np.ndarray | float, transpose: bool = False
              ) -> tuple[np.ndarray, bool]:
        """``C x = r`` (or ``Cᵀ x = r``) for ``r`` ``(B, K)`` (A): ``(x, converged)``.

        Directly for narrow loads, else by GMRES on ``S⁻¹C`` to the relative residual
        ``rtol`` (per sample or one for all).
        """
        if self.load.p.shape[0] <= DIRECT_MAX_COLUMNS:
            c = self.dense()
            if transpose:
                c = c.transpose(0, 2, 1)
            return _batched_solve(c, r[:, :, None])[:, :, 0], True
        return gmres(lambda v: self.scaled_product(v, transpose), r / self.load.total, rtol)


def gmres(matvec, rhs: np.ndarray, rtol: np.ndarray | float, krylov: int = _KRYLOV,
          restarts: int = _RESTARTS) -> tuple[np.ndarray, bool]:
    """Restarted GMRES for ``A x = rhs``, every sample's own Krylov space, batched.

    Args:
        matvec: ``v (B, K) → A v`` for every sample at once.
        rhs: ``(B, K)``.
        rtol: relative residual ``‖rhs − A x‖ / ‖rhs‖`` to reach, per sample ``(B,)`` or one.
        krylov: Krylov vectors per cycle.
        restarts: further cycles allowed.

    Returns:
        ``(x, converged)``: the iterate (the best of the last cycle) and whether every sample
        reached its tolerance. All samples iterate together until the slowest has converged.
    """
    batch, k = rhs.shape
    target = np.broadcast_to(np.asarray(rtol, dtype=np.float64), (batch,)) * np.linalg.norm(rhs, axis=1)
    x = np.zeros_like(rhs)
    r = rhs
    for _ in range(restarts + 1):
        beta = np.linalg.norm(r, axis=1)
        if np.all(beta <= target):
            return x, True
        basis = np.empty((krylov + 1, batch, k))
        basis[0] = r / np.where(beta > 0, beta, 1.0)[:, None]
        hessenberg = np.zeros((krylov + 1, krylov, batch))
        cos, sin = np.empty((krylov, batch)), np.empty((krylov, batch))
        g = np.zeros((krylov + 1, batch))
        g[0] = beta
        for j in range(krylov):
            w = matvec(basis[j])
            # classical Gram-Schmidt, twice (as accurate as modified, in two products)
            h = np.einsum("ibk,bk->ib", basis[: j + 1], w)
            w -= np.einsum("ib,ibk->bk", h, basis[: j + 1])
            h2 = np.einsum("ibk,bk->ib", basis[: j + 1], w)
            w -= np.einsum("ib,ibk->bk", h2, basis[: j + 1])
            column = np.empty((j + 2, batch))
            column[: j + 1] = h + h2
            column[j + 1] = np.linalg.norm(w, axis=1)
            basis[j + 1] = w / np.where(column[j + 1] > 0, column[j + 1], 1.0)[:, None]
            for i in range(j):  # earlier rotations
                a, b = column[i], column[i + 1]
                column[i], column[i + 1] = cos[i] * a + sin[i] * b, cos[i] * b - sin[i] * a
            norm = np.hypot(column[j], column[j + 1])
            norm = np.where(norm > 0, norm, 1.0)
            cos[j], sin[j] = column[j] / norm, column[j + 1] / norm
            column[j], column[j + 1] = norm, 0.0
            hessenberg[: j + 2, j] = column
            g[j + 1] = -sin[j] * g[j]
            g[j] = cos[j] * g[j]
            converged = bool(np.all(np.abs(g[j + 1]) <= target))
            if converged:
                break
        n = j + 1
        y = np.empty((n, batch))
        for i in range(n - 1, -1, -1):
            y[i] = (g[i] - np.einsum("jb,jb->b", hessenberg[i, i + 1 : n], y[i + 1 : n])) / hessenberg[i, i]
        x = x + np.einsum("ib,ibk->bk", y, basis[:n])
        if converged:  # by the recurrence's residual, which equals the true one to round-off
            return x, True
        r = rhs - matvec(x)
    return x, bool(np.all(np.linalg.norm(r, axis=1) <= target))


@dataclass(frozen=True, slots=True)
class EliminatedFactor(_PairSolve):
    """The layer Jacobian ``J = D + Pᵀ diag(1/S) P`` for Woodbury solves with a matrix-free
    ``C``: ``J⁻¹ = D⁻¹ − D⁻¹Pᵀ C⁻¹ P D⁻¹`` (``J⁻ᵀ`` likewise with ``D⁻ᵀ`` and ``Cᵀ``)."""

    inverse: BlockInverse
    capacitance: Capacitance
    layer: int = 0

    @classmethod
    def of(cls, lin: Linearization, load: MergedLoad, layer: int = 0) -> EliminatedFactor:
        inverse = lin.inverse()
        return cls(inverse, Capacitance.of(load, inverse), layer)

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        load = self.capacitance.load
        y = self.inverse.apply(r, transpose)
        w, converged = self.capacitance.solve(load.product(y), ADJOINT_RTOL, transpose)
        if not converged:
            raise SolverError(self.layer, np.arange(len(r)), np.full(len(r), np.nan), _KRYLOV)
        y -= self.inverse.apply(load.transpose_product(w), transpose)
        return y


def _local_solve(surface: CurrentSurface, column: np.ndarray, inject: np.ndarray, b: np.ndarray,
                 u: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Every neuron's outputs for fixed injected currents (in place in ``u``): the compiled
    kernel, or the same safeguarded Newton as NumPy operations. Returns ``∂I/∂V_in``,
    ``∂I/∂V_out`` at each node's last evaluation and the most iterations (−1: failed)."""
    d_in, d_out = np.empty(u.shape), np.empty(u.shape)
    grid = surface.uniform_grid
    kernels = conv_kernel.compiled()
    if kernels is not None and grid is not None:
        worst = kernels.local_solve(surface.coefficients, grid, column, inject, b, u,
                                    surface.v_lo, surface.v_hi, tol, max_iter, d_in, d_out)
        return d_in, d_out, worst
    m = column.shape[1]
    worst = 0
    for half in (slice(0, m), slice(m, 2 * m)):
        v_in = column if half.start == 0 else u[:, :m]
        v = np.clip(u[:, half], surface.v_lo, surface.v_hi)
        below, above = np.full_like(v, surface.v_lo), np.full_like(v, surface.v_hi)
        active = np.ones(v.shape, dtype=bool)
        for iteration in range(1, max_iter + 1):
            value, slope_in, slope_out = surface(v_in, v)
            f = value - b[half] * v + inject[:, half]
            slope = slope_out - b[half]
            d_in[:, half] = np.where(active, slope_in, d_in[:, half])
            d_out[:, half] = np.where(active, slope_out, d_out[:, half])
            below = np.where(active & (f > 0), v, below)
            above = np.where(active & (f <= 0), v, above)
            with np.errstate(divide="ignore", invalid="ignore"):
                new = np.where(slope < 0, v - f / slope, np.nan)
            inside = (new >= below) & (new <= above)
            new = np.where(inside, new, 0.5 * (below + above))
            new = np.where(active, new, v)
            step = np.abs(new - v)
            v = new
            active &= ~(step < tol)
            if not active.any():
                worst = max(worst, iteration)
                break
        else:
            worst = -1
        u[:, half] = v
        if worst < 0:
            break
    return d_in, d_out, worst


def solve_eliminated(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray,
                     outp: np.ndarray, load: MergedLoad, settings: NewtonSettings, layer: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Outputs ``(outn, outp)`` ``(B, M)`` (V) of a loaded layer and the Newton iterations taken
    on ``c'`` (see the module notes), starting from ``outn``/``outp``.

    Raises:
        SolverError: some sample did not converge (its neurons or its columns).
    """
    lo, hi = surface.v_lo, surface.v_hi
    column = np.ascontiguousarray(column, dtype=np.float64)
    m = column.shape[1]
    u = np.clip(np.concatenate((outn, outp), axis=1), lo, hi)
    c_next = load.next_columns(u)
    rtol = np.full(len(u), _FIRST_RTOL)
    finished = False
    for iteration in range(1, settings.max_iter + 1):
        inject = load.transpose_product(c_next)
        d_in, d_out, worst = _local_solve(surface, column, inject, load.b, u, settings.tol_v,
                                          settings.max_iter)
        if worst < 0:
            break
        if finished:
            return u[:, :m], u[:, m:], iteration - 1
        diagonal = d_out - load.b
        lin = Linearization(diagonal[:, :m], d_in[:, m:], diagonal[:, m:], d_in[:, :m], diagonal)
        inverse = lin.inverse()
        residual = load.total * c_next - load.product(u) - load.bias
        step_c, _ = Capacitance.of(load, inverse).solve(residual, rtol)
        size = np.abs(step_c).max(axis=1)
        step_c *= np.minimum(1.0, _MAX_COLUMN_STEP_V / np.maximum(size, 1e-300))[:, None]
        c_next = c_next - step_c
        # first-order move of the neurons with their columns: the next elimination's start
        move = inverse.apply(load.transpose_product(step_c))
        u = np.clip(u + move, lo, hi)
        step = np.maximum(size, np.abs(move).max(axis=1))
        rtol = np.clip(step * step, _LAST_RTOL, _FIRST_RTOL)
        finished = bool(step.max() < settings.tol_v)
    raise SolverError(layer, np.arange(len(u)), np.full(len(u), np.nan), settings.max_iter)
