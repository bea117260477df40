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
converge from the static fits in about four iterations with no warm start, where Newton on
``u`` needs a long one. After each step the neurons move to first order with their columns
(``Δu = −D⁻¹Pᵀ Δc'``), which starts the next elimination; the loop ends when no column and no
neuron moved by more than ``tol_v`` — so, as in the layer Newton, the returned outputs are
within about ``tol_v²`` of the exact root.

``C`` is never factored for a wide load. Neurons that drive identical devices (the ``P²``
inputs of one folded pool window) are merged into one of ``G`` groups: their columns of ``P``
are equal, so ``P D⁻¹ Pᵀ`` needs only their summed ``D⁻¹``. GMRES solves ``C`` with two
``(B, K) × (K, 2G)`` matrix products per iteration, right-preconditioned by the inverse of the
batch's mean capacitance (``diag(S) + P D̄⁻¹ Pᵀ``, one ``K × K`` inverse per solve): on trained
MNIST conv layers that clusters the spectrum within a few percent of 1, so a solve to a
relative residual of 1e-6 takes about 4 iterations and one to 1e-14 about 8. Newton's linear
solves are inexact early (relative residual ``min(1e-2, Δ²)`` for a last step ``Δ`` in volts,
at least 1e-6), the neurons' first eliminations loose (``max(Δ², tol_v)``, at most 1 mV), and
one preconditioner, from the first iteration, serves every later one. Narrow loads (a dense
next layer) form ``C`` and solve it directly.

The backward pass solves ``Jᵀ λ = g`` for ``J = D + Pᵀ diag(1/S) P`` by Woodbury with the same
matrix-free ``C`` (:class:`EliminatedFactor`), to a relative residual of 1e-14.

The solver runs compiled (:func:`available`); without numba or on a non-uniform current table
the coupled evaluator uses its layer-Newton solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memspice.train import conv_kernel
from memspice.train.coupled_solve import (
    BlockInverse,
    CurrentSurface,
    NewtonSettings,
    SolverError,
    _batched_solve,
    _PairSolve,
)

#: Loads of at most this many next columns form ``C`` and solve it directly (below it the
#: ``K × K`` products cost less than GMRES's iterations).
DIRECT_MAX_COLUMNS = 32

#: Largest change of any next column in one Newton iteration (V); longer steps are scaled
#: down per sample. From the static fits the first step is ~60 mV on MNIST conv layers.
_MAX_COLUMN_STEP_V = 0.1

#: Relative residual of Newton's first linear solves and the floor of later ones.
_FIRST_RTOL = 1e-2
_LAST_RTOL = 1e-6

#: Step (V) below which a neuron counts as solved in the first elimination; later ones use
#: the square of the last Newton step in volts (the error a Newton stop leaves is about the
#: square of its last step, so a looser stop early changes nothing Newton on ``c'`` can see),
#: and ``tol_v`` at the end.
_FIRST_LOCAL_TOL_V = 1e-3

#: Relative residual of the backward pass's solves.
ADJOINT_RTOL = 1e-14

#: GMRES: Krylov vectors kept before a restart, and restarts allowed.
_KRYLOV = 30
_RESTARTS = 4


def available(surface: CurrentSurface) -> bool:
    """Whether the elimination solver runs for this surface (numba, a uniform table)."""
    return surface.uniform_grid is not None and conv_kernel.compiled() is not None


@dataclass(frozen=True, slots=True)
class MergedLoad:
    """The next crossbar seen from a layer's outputs, with neurons merged into groups of
    identical load columns.

    Attributes:
        total: ``(K,)`` column conductance sums ``S`` (S).
        bias: ``(K,)`` current the rail rows inject into each next column at 0 V (A).
        b: ``(2M,)`` each output node's conductance into the load, ``[b_n | b_p]`` (S).
        group: ``(M,)`` the group of each neuron, numbered in order of first appearance.
        p: ``(K, 2G)`` ``[P_n | P_p]`` on the groups (S).
        p_t: ``(2G, K)`` its transpose.
    """

    total: np.ndarray
    bias: np.ndarray
    b: np.ndarray
    group: np.ndarray
    p: np.ndarray
    p_t: np.ndarray
    _first: np.ndarray = field(repr=False, compare=False)  # (G,) a neuron of each group
    _order: np.ndarray = field(repr=False, compare=False)  # neurons sorted by group
    _starts: np.ndarray = field(repr=False, compare=False)  # where each group starts in it

    @classmethod
    def of(cls, matrix: np.ndarray, vdd: float, vss: float,
           like: MergedLoad | None = None) -> MergedLoad:
        """From the next layer's row-column matrix ``(K, 2M + 3)`` (S), rows
        ``[p…, n…, VDD, VSS, 0 V]``.

        Args:
            like: a load whose grouping is tried first (a training step's load keeps the
                previous step's groups); it is kept only if it still holds exactly.
        """
        m = (matrix.shape[1] - 3) // 2
        columns = np.concatenate((matrix[:, m : 2 * m], matrix[:, :m]))  # (2K, M): [P_n; P_p]
        if like is not None and len(like.group) == m and _groups_hold(columns, like._first,
                                                                      like.group):
            group, first = like.group, like._first
        else:
            group, first = _groups(columns)
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], np.arange(len(first)))
        k = matrix.shape[0]
        p = np.ascontiguousarray(np.concatenate((columns[:k, first], columns[k:, first]), axis=1))
        b = np.concatenate((matrix[:, m : 2 * m].sum(axis=0), matrix[:, :m].sum(axis=0)))
        return cls(matrix.sum(axis=1), matrix[:, 2 * m] * vdd + matrix[:, 2 * m + 1] * vss, b,
                   group, p, np.ascontiguousarray(p.T), first, order, starts)

    @property
    def n_groups(self) -> int:
        """``G``."""
        return len(self._first)

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


#: Seed of the column hash's odd multipliers (any fixed seed: a hash only proposes groups,
#: which are then checked exactly).
_HASH_RNG_SEED = 0


def _groups(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(group, first)``: neurons with identical columns grouped, numbered by first neuron.

    Columns are hashed exactly (their bit patterns times odd multipliers, summed with
    wrap-around), the hash groups checked for equality; a collision falls back to sorting
    the columns themselves.
    """
    bits = np.ascontiguousarray(columns).view(np.uint64)
    multipliers = np.random.default_rng(_HASH_RNG_SEED).integers(
        1, 2**63, len(columns), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    key = (bits * multipliers[:, None]).sum(axis=0)
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    if not _groups_hold(columns, first, group):
        _, first, group = np.unique(columns.T, axis=0, return_index=True, return_inverse=True)
    # number the groups by their first neuron, so that groups follow the neurons' order
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first)] = np.arange(len(first))
    return np.ascontiguousarray(rank[group.ravel()]), np.sort(first)


def _groups_hold(columns: np.ndarray, first: np.ndarray, group: np.ndarray) -> bool:
    """Whether every neuron's column equals its group's first neuron's column exactly."""
    return bool(np.array_equal(columns, columns[:, first[group.ravel()]]))


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
        """From the per-neuron ``D⁻¹``."""
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

    def preconditioner(self) -> np.ndarray:
        """``C̄⁻¹`` ``(K, K)`` (1/S): the inverse of the batch's mean capacitance
        ``diag(S) + P D̄⁻¹ Pᵀ`` (``D̄⁻¹`` averaged over the samples), or ``diag(1/S)`` when that
        is singular."""
        mean = Capacitance(self.load, self.alpha.mean(axis=0, keepdims=True),
                           self.delta.mean(axis=0, keepdims=True),
                           self.eps.mean(axis=0, keepdims=True)).dense()[0]
        try:
            return np.linalg.inv(mean)
        except np.linalg.LinAlgError:
            return np.diag(1.0 / self.load.total)

    def solve(self, r: np.ndarray, rtol: np.ndarray | float, transpose: bool = False,
              preconditioner: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        """``C x = r`` (or ``Cᵀ x = r``) for ``r`` ``(B, K)`` (A): ``(x, converged)``.

        Directly for narrow loads; else by GMRES on ``S⁻¹C`` to the relative residual ``rtol``
        (per sample or one), right-preconditioned by ``preconditioner`` (an approximate
        ``C⁻¹``; by default :meth:`preconditioner`).
        """
        if self.load.p.shape[0] <= DIRECT_MAX_COLUMNS:
            c = self.dense()
            if transpose:
                c = c.transpose(0, 2, 1)
            return _batched_solve(c, r[:, :, None])[:, :, 0], True
        total = self.load.total
        inverse = self.preconditioner() if preconditioner is None else preconditioner
        # z ↦ C̄⁻¹ S z for rows z: z S C̄⁻ᵀ (or z S C̄⁻¹ for the transposed system)
        right = (inverse if transpose else inverse.T) * total[:, None]
        z, converged = gmres(lambda v: self.scaled_product(v @ right, transpose), r / total, rtol)
        return z @ right, converged


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
        ``(x, converged)``: the iterate and whether every sample reached its tolerance. All
        samples iterate together until the slowest has converged.
    """
    kernels = conv_kernel.compiled()
    batch, k = rhs.shape
    target = np.ascontiguousarray(
        np.broadcast_to(np.asarray(rtol, dtype=np.float64), (batch,)) * np.linalg.norm(rhs, axis=1))
    x = np.zeros_like(rhs)
    r = rhs
    for _ in range(restarts + 1):
        beta = np.linalg.norm(r, axis=1)
        if np.all(beta <= target):
            return x, True
        basis = np.empty((krylov + 1, batch, k))
        basis[0] = r / np.where(beta > 0, beta, 1.0)[:, None]
        hessenberg = np.zeros((batch, krylov + 1, krylov))
        cos, sin = np.empty((batch, krylov)), np.empty((batch, krylov))
        g = np.zeros((batch, krylov + 1))
        g[:, 0] = beta
        for j in range(krylov):
            w = np.ascontiguousarray(matvec(basis[j]))
            converged = kernels.arnoldi(basis, j, w, hessenberg, cos, sin, g, target)
            if converged:
                break
        kernels.gmres_update(basis, j + 1, hessenberg, g, x)
        if converged:  # by the recurrence's residual, which equals the true one to round-off
            return x, True
        r = rhs - matvec(x)
    return x, bool(np.all(np.linalg.norm(r, axis=1) <= target))


@dataclass(frozen=True, slots=True)
class EliminatedFactor(_PairSolve):
    """The layer Jacobian ``J = D + Pᵀ diag(1/S) P`` for Woodbury solves with a matrix-free
    ``C``: ``J⁻¹ = D⁻¹ − D⁻¹Pᵀ C⁻¹ P D⁻¹`` (``J⁻ᵀ`` likewise with ``D⁻ᵀ`` and ``Cᵀ``).

    Attributes:
        inverse: ``D⁻¹`` per neuron.
        capacitance: ``C``.
        preconditioner: an approximate ``C⁻¹`` for GMRES, or None (:meth:`Capacitance.solve`).
        layer: the layer's index (for errors).
    """

    inverse: BlockInverse
    capacitance: Capacitance
    preconditioner: np.ndarray | None = None
    layer: int = 0

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        load = self.capacitance.load
        y = self.inverse.apply(r, transpose)
        w, converged = self.capacitance.solve(load.product(y), ADJOINT_RTOL, transpose,
                                              self.preconditioner)
        if not converged:
            raise SolverError(self.layer, np.arange(len(r)), np.full(len(r), np.nan), _KRYLOV)
        y -= self.inverse.apply(load.transpose_product(w), transpose)
        return y


def jacobian(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
             load: MergedLoad, preconditioner: np.ndarray | None = None, layer: int = 0
             ) -> tuple[np.ndarray, EliminatedFactor]:
    """The layer Jacobian at the given outputs (compiled): ``(∂I₁/∂c (B, M) (S), factor)``.

    Args:
        preconditioner: an approximate ``C⁻¹`` (the forward solve's) for the factor's solves.
    """
    column = np.ascontiguousarray(column, dtype=np.float64)
    batch, m = column.shape
    i1_in, inverse = np.empty((batch, m)), np.empty((batch, 3 * m))
    sums = np.empty((batch, 3 * load.n_groups))
    conv_kernel.compiled().linearize(surface.coefficients, surface.uniform_grid, column,
                                     load.group, np.concatenate((outn, outp), axis=1), load.b,
                                     i1_in, inverse, sums)
    g = load.n_groups
    capacitance = Capacitance(load, sums[:, :g], sums[:, g : 2 * g], sums[:, 2 * g :])
    return i1_in, EliminatedFactor(BlockInverse(inverse[:, : 2 * m], inverse[:, 2 * m :]),
                                   capacitance, preconditioner, layer)


@dataclass(frozen=True, slots=True)
class Elimination:
    """A layer solved by :func:`solve_eliminated`.

    Attributes:
        outn, outp: ``(B, M)`` outputs (V).
        iterations: Newton iterations on the next columns.
        preconditioner: the approximate ``C⁻¹`` its GMRES solves used, or None (direct
            solves); it serves the backward pass's solves as well.
    """

    outn: np.ndarray
    outp: np.ndarray
    iterations: int
    preconditioner: np.ndarray | None


def solve_eliminated(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray,
                     outp: np.ndarray, load: MergedLoad, settings: NewtonSettings, layer: int = 0
                     ) -> Elimination:
    """A loaded layer's outputs (see the module notes), starting from ``outn``/``outp`` ``(B, M)``
    (V). Needs :func:`available`.

    Raises:
        SolverError: some sample did not converge (its neurons or its columns).
    """
    kernels = conv_kernel.compiled()
    coeffs, grid = surface.coefficients, surface.uniform_grid
    lo, hi = surface.v_lo, surface.v_hi
    column = np.ascontiguousarray(column, dtype=np.float64)
    batch, m = column.shape
    groups = load.n_groups
    u = np.clip(np.concatenate((outn, outp), axis=1), lo, hi)
    c_next = load.next_columns(u)
    inverse, sums = np.empty((batch, 3 * m)), np.empty((batch, 2 * groups))
    inverse_sums, largest = np.empty((batch, 3 * groups)), np.empty(batch)
    rtol = np.full(batch, _FIRST_RTOL)
    step = np.full(batch, np.inf)
    local_tol = _FIRST_LOCAL_TOL_V
    preconditioner = None
    for iteration in range(1, settings.max_iter + 1):
        worst = kernels.eliminate(coeffs, grid, column, load.group, c_next @ load.p, load.b, u,
                                  lo, hi, local_tol, settings.max_iter, inverse, sums,
                                  inverse_sums)
        if worst < 0:
            break
        residual = load.total * c_next - sums @ load.p_t - load.bias
        capacitance = Capacitance(load, inverse_sums[:, :groups],
                                  inverse_sums[:, groups : 2 * groups], inverse_sums[:, 2 * groups :])
        if preconditioner is None and load.p.shape[0] > DIRECT_MAX_COLUMNS:
            preconditioner = capacitance.preconditioner()
        step_c, _ = capacitance.solve(residual, rtol, preconditioner=preconditioner)
        size = np.abs(step_c).max(axis=1)
        step_c *= np.minimum(1.0, _MAX_COLUMN_STEP_V / np.maximum(size, 1e-300))[:, None]
        c_next = c_next - step_c
        # the neurons follow their columns to first order: the result, or the next start
        kernels.apply_move(load.group, step_c @ load.p, inverse, u, lo, hi, largest)
        step = np.maximum(size, largest)
        if not np.all(np.isfinite(step)):
            break
        largest_step = float(step.max())
        if largest_step < settings.tol_v:
            return Elimination(u[:, :m], u[:, m:], iteration, preconditioner)
        rtol = np.clip(step * step, _LAST_RTOL, _FIRST_RTOL)
        local_tol = min(max(largest_step * largest_step, settings.tol_v), _FIRST_LOCAL_TOL_V)
    failed = ~(step < settings.tol_v)
    raise SolverError(layer, np.flatnonzero(failed), step[failed], settings.max_iter)
