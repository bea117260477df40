"""Kirchhoff's current law for one layer of inverter outputs, solved by batched Newton.

The unknowns of layer ``l`` are its neurons' outputs ``u = (outn, outp)``, each ``(B, M)`` (V).
Inverter 1 of neuron ``j`` drives ``outn_j`` from the column ``c_j``; inverter 2 drives
``outp_j`` from ``outn_j``. When a next crossbar ``G`` (``K × (2M+2)``, wiring order) loads the
outputs, row ``k`` of it carries ``Σ_m G[m,k]·(r_k − c'_m)`` away from its driving node, where
the next layer's columns ``c' = (G·r)/S`` (``S = Σ_k G[:,k]``; gates draw no DC current) depend
on ``u`` itself. So::

    F_n = I(c, outn)    − b_n ⊙ outn + P_nᵀ c'     (b_n = Σ_m G[m, in_j])
    F_p = I(outn, outp) − b_p ⊙ outp + P_pᵀ c'     (b_p = Σ_m G[m, ip_j])

with ``I(v_in, v_out)`` the inverter's output current (A, sourcing positive). The Jacobian is a
lower-triangular 2×2 block per neuron (``D``) plus ``Pᵀ diag(1/S) P`` with ``P = [P_n P_p]``
(``K × 2M``): rank ``K``. Woodbury turns each Newton step into ``K × K`` solves per sample,
batched with NumPy, never a loop over samples. Layers couple only forwards (a layer's outputs
set the next columns, the next outputs do not load back through a gate), so a network solves
layer by layer. The unknowns travel stacked, ``u = [outn | outp]`` ``(B, 2M)``; the solver sees
the next crossbar only through :class:`Load`'s methods (see ``docs/coupled-solver.md``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Protocol

import numpy as np

from memspice.errors import MemspiceError
from memspice.train import coupled_kernel
from memspice.train.current_surface import CurrentSurface

__all__ = [
    "BlockInverse", "CompiledWoodburyFactor", "CurrentSurface", "JacobianFactor", "LayerSolution",
    "Linearization", "Load",
    "NewtonSettings", "SolverError", "SparseLoad", "UnloadedFactor", "WoodburyFactor",
    "factor_jacobian", "jacobian_solve", "newton_layer", "residual", "residual_stacked", "solve_layer",
]


class SolverError(MemspiceError):
    """Newton did not converge for some samples.

    Attributes:
        layer: index of the layer that failed.
        samples: indices (within the batch) of the samples that did not converge.
        step_v: their last undamped Newton step (largest node, V).
    """

    def __init__(self, layer: int, samples: np.ndarray, step_v: np.ndarray, iterations: int) -> None:
        self.layer = layer
        self.samples = samples
        self.step_v = step_v
        shown = ", ".join(str(int(s)) for s in samples[:8]) + (" …" if len(samples) > 8 else "")
        super().__init__(
            f"coupled DC solve of layer {layer} did not converge in {iterations} Newton iterations "
            f"for {len(samples)} sample(s) [{shown}]; largest last step {float(np.max(step_v)):.3g} V"
        )


@dataclass(frozen=True, slots=True)
class Linearization:
    """Per-neuron derivatives of the residual at a point (all ``(B, M)``, S).

    Attributes:
        a: ``∂F_n/∂outn`` without the low-rank part (``I₁_out − b_n``).
        e: ``∂F_p/∂outn`` (``I₂_in``).
        d: ``∂F_p/∂outp`` without the low-rank part (``I₂_out − b_p``).
        i1_in: ``∂I₁/∂c`` (the column's influence on inverter 1).
        diagonal: ``[a | d]`` ``(B, 2M)`` when the solver has it stacked (``a`` and ``d`` are
            then views of it), else None.
    """

    a: np.ndarray
    e: np.ndarray
    d: np.ndarray
    i1_in: np.ndarray
    diagonal: np.ndarray | None = field(default=None, repr=False, compare=False)

    def inverse(self) -> BlockInverse:
        """``D⁻¹`` of the per-neuron 2×2 blocks."""
        diagonal = self.diagonal if self.diagonal is not None else np.concatenate((self.a, self.d), axis=1)
        inv = 1.0 / diagonal
        m = self.a.shape[1]
        return BlockInverse(inv, -self.e * inv[:, :m] * inv[:, m:])


@dataclass(frozen=True, slots=True)
class BlockInverse:
    """``D⁻¹ = [[α, 0], [ε, δ]]`` per neuron, for stacked vectors ``[n | p]``.

    Attributes:
        inv: ``[α | δ]`` ``(B, 2M)``: ``1/a`` and ``1/d`` (1/S).
        eps: ``ε = −e/(a d)`` ``(B, M)`` (1/S).
    """

    inv: np.ndarray
    eps: np.ndarray

    def apply(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        """``D⁻¹ r`` (or ``D⁻ᵀ r``) for ``r`` ``(B, 2M)``."""
        m = self.eps.shape[1]
        x = self.inv * r
        if transpose:
            x[:, :m] += self.eps * r[:, m:]
        else:
            x[:, m:] += self.eps * r[:, :m]
        return x


class JacobianFactor(Protocol):
    """A layer's Jacobian ``J = D + (load coupling)`` prepared for repeated solves."""

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Solve ``J x = r`` (or ``Jᵀ x = r``) for every sample; ``r``, ``x`` ``(B, 2M)`` ``[n | p]``."""
        ...

    def solve(self, r_n: np.ndarray, r_p: np.ndarray, transpose: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`solve_stacked` on the ``(B, M)`` halves."""
        ...


class _PairSolve(ABC):
    """:meth:`JacobianFactor.solve` from :meth:`JacobianFactor.solve_stacked`."""

    @abstractmethod
    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Solve ``J x = r`` (or ``Jᵀ x = r``); ``r``, ``x`` ``(B, 2M)`` ``[n | p]``."""

    def solve(self, r_n: np.ndarray, r_p: np.ndarray, transpose: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        m = r_n.shape[1]
        x = self.solve_stacked(np.concatenate((r_n, r_p), axis=1), transpose)
        return x[:, :m], x[:, m:]


@dataclass(frozen=True, slots=True)
class UnloadedFactor(_PairSolve):
    """``J = D``: an output layer, whose outputs drive nothing."""

    inverse: BlockInverse

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        return self.inverse.apply(r, transpose)


@dataclass(frozen=True, slots=True)
class WoodburyFactor(_PairSolve):
    """``J = D + Pᵀ diag(1/S) P`` with the ``K × K`` capacitance matrices ``C = diag(S) + P D⁻¹ Pᵀ``.

    ``J⁻¹ = D⁻¹ − D⁻¹Pᵀ C⁻¹ P D⁻¹`` and, the low-rank part being symmetric,
    ``J⁻ᵀ = D⁻ᵀ − D⁻ᵀPᵀ C⁻ᵀ P D⁻ᵀ``: one capacitance per sample serves both directions, so the
    backward pass reuses the forward solve's linearization.
    """

    inverse: BlockInverse
    load: Load
    capacitance: np.ndarray  # (B, K, K)

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        y = self.inverse.apply(r, transpose)
        cap = self.capacitance.transpose(0, 2, 1) if transpose else self.capacitance
        w = _batched_solve(cap, (y @ self.load.stacked_t)[:, :, None])[:, :, 0]
        y -= self.inverse.apply(w @ self.load.stacked, transpose)  # D⁻¹ Pᵀ w
        return y


@dataclass(frozen=True, slots=True)
class CompiledWoodburyFactor(WoodburyFactor):
    """A :class:`WoodburyFactor` from the compiled Newton loop, solved by compiled code too
    (one call instead of a dozen array operations)."""

    def solve_stacked(self, r: np.ndarray, transpose: bool = False) -> np.ndarray:
        x = np.empty(r.shape)
        coupled_kernel.compiled().woodbury_solve(
            self.inverse.inv, self.inverse.eps, self.capacitance, self.load.stacked,
            np.ascontiguousarray(r, dtype=np.float64), transpose, x)
        return x


def _batched_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` for stacks of small float64 systems, without its per-call checks.

    The checks cost more than the ``K × K`` solves themselves; a singular stack falls back to
    :func:`numpy.linalg.solve`, which raises as usual.
    """
    if _gufunc_solve is not None:
        with np.errstate(all="ignore"):
            x = _gufunc_solve(a, b, signature="dd->d")
        if np.isfinite(x).all():
            return x
    return np.linalg.solve(a, b)


try:  # the gufunc behind np.linalg.solve; private, so optional
    from numpy.linalg._umath_linalg import solve as _gufunc_solve
except ImportError:  # pragma: no cover - other NumPy layouts
    _gufunc_solve = None


#: Most next-layer columns ``K`` for which :func:`newton_layer` runs compiled: its per-sample
#: ``K × K`` elimination is scalar code, which falls behind the batched LAPACK solves of the
#: NumPy loop beyond about a hundred columns (measured: 0.8× their time at K = 64, 1.0× at
#: K = 100, 1.3× at K = 128).
COMPILED_MAX_COLUMNS = 96

#: Largest ``3·M·K²`` for which a dense load keeps its outer products (8 MB of float64).
_OUTER_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class Load:
    """The next crossbar seen from a layer's outputs (dense: every output drives every column).

    The Newton loop and the backward pass use a load only through its methods
    (:meth:`currents`, :meth:`factor`, :meth:`next_columns`), so another crossbar layout (a
    block-sparse convolution) plugs in with the same methods.

    Attributes:
        p_n: ``(K, M)`` conductances of the next layer's ``in`` rows (S).
        p_p: ``(K, M)`` conductances of its ``ip`` rows (S).
        bias: ``(K,)`` current the bias rows inject into each next column at 0 V columns,
            ``G_bp·vdd + G_bn·vss`` (A).
        total: ``(K,)`` column conductance sums ``S`` (S).
        b_n: ``(M,)`` each ``outn`` node's conductance into the load, ``Σ_k p_n[k]`` (S).
        b_p: ``(M,)`` the same for the ``outp`` nodes (S).
        stacked: ``P = [p_n p_p]``, ``(K, 2M)`` (S): the load's low-rank factor.
        stacked_t: ``Pᵀ``, ``(2M, K)`` (S).
        b: ``[b_n | b_p]``, ``(2M,)`` (S).
    """

    p_n: np.ndarray
    p_p: np.ndarray
    bias: np.ndarray
    total: np.ndarray
    b_n: np.ndarray = field(init=False, repr=False, compare=False)
    b_p: np.ndarray = field(init=False, repr=False, compare=False)
    stacked: np.ndarray = field(init=False, repr=False, compare=False)
    stacked_t: np.ndarray = field(init=False, repr=False, compare=False)
    b: np.ndarray = field(init=False, repr=False, compare=False)
    _outer: tuple = field(init=False, repr=False, compare=False)  # (outer,) once built

    def __post_init__(self) -> None:
        stacked = np.concatenate([self.p_n, self.p_p], axis=1)
        b = stacked.sum(axis=0)
        m = self.p_n.shape[1]
        object.__setattr__(self, "b_n", b[:m])
        object.__setattr__(self, "b_p", b[m:])
        object.__setattr__(self, "stacked", stacked)
        object.__setattr__(self, "stacked_t", np.ascontiguousarray(stacked.T))
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "_outer", ())

    @property
    def outer(self) -> np.ndarray | None:
        """``(3M, K²)`` rows ``vec(p_n[:,m] p_n[:,m]ᵀ)``, ``vec(p_p[:,m] p_p[:,m]ᵀ)``,
        ``vec(p_p[:,m] p_n[:,m]ᵀ)`` (S²), or None when that would be large; built on first use
        (the compiled Newton loop does not need it)."""
        if not self._outer:
            k, m = self.p_n.shape
            outer = None
            if 3 * m * k * k <= _OUTER_LIMIT:  # rows in the order of [α | δ | ε]
                left = np.concatenate((self.p_n, self.p_p, self.p_p), axis=1).T  # (3M, K)
                right = np.concatenate((self.p_n, self.p_p, self.p_n), axis=1).T
                outer = (left[:, :, None] * right[:, None, :]).reshape(3 * m, k * k)
            object.__setattr__(self, "_outer", (outer,))
        return self._outer[0]

    @classmethod
    def of(cls, g_next: np.ndarray, vdd: float, vss: float) -> Load:
        """Split a next-layer conductance matrix ``(K, 2M+2)`` (S) into its load terms."""
        m = (g_next.shape[1] - 2) // 2
        return cls(g_next[:, m : 2 * m], g_next[:, :m], g_next[:, 2 * m] * vdd + g_next[:, 2 * m + 1] * vss,
                   g_next.sum(axis=1))

    def next_columns(self, outn: np.ndarray, outp: np.ndarray) -> np.ndarray:
        """Next layer's column voltages ``(B, K)`` (V)."""
        return (outn @ self.p_n.T + outp @ self.p_p.T + self.bias) / self.total

    def currents(self, outputs: np.ndarray) -> np.ndarray:
        """Currents (A) the load returns into the output nodes, ``(B, 2M)`` for stacked
        ``[outn | outp]`` (V): ``Pᵀ c' − b ⊙ u``."""
        c_next = (outputs @ self.stacked_t + self.bias) / self.total
        return c_next @ self.stacked - self.b * outputs

    def conductance_vjp(self, lam_n: np.ndarray, lam_p: np.ndarray, rows: np.ndarray, column: np.ndarray
                        ) -> np.ndarray:
        """``−λᵀ ∂F/∂G_next`` at fixed outputs (loss units per S), shaped ``(K, 2M+2)`` in wiring order.

        ``F`` gets ``Σ_k G[m,k](c'_m − r_k)`` at each output row ``k``, with ``c'`` depending on
        ``G`` too: ``∂L/∂G[m,k] = Σ_b (λ_k − μ_m/S_m)(r_k − c'_m)``, ``μ = P λ`` (λ is zero on the
        bias rows).

        Args:
            lam_n: ``(B, M)`` adjoint at the ``outn`` nodes (the ``in`` rows).
            lam_p: ``(B, M)`` adjoint at the ``outp`` nodes (the ``ip`` rows).
            rows: ``(B, 2M+2)`` the next layer's row voltages (V).
            column: ``(B, K)`` its column voltages (V).
        """
        batch = lam_n.shape[0]
        lam_rows = np.concatenate([lam_p, lam_n, np.zeros((batch, 2))], axis=1)  # wiring order
        mu = np.concatenate((lam_n, lam_p), axis=1) @ self.stacked_t  # (B, K)
        weight_cols = -mu / self.total  # multiplies (r_k − c_m) for every k
        # Σ_b (λ_k + ω_m)(r_k − c_m) = Σ_b λ_k r_k − λ_k c_m + ω_m r_k − ω_m c_m
        return ((lam_rows * rows).sum(axis=0)[None, :] - column.T @ lam_rows
                + weight_cols.T @ rows - (weight_cols * column).sum(axis=0)[:, None])

    def factor(self, lin: Linearization) -> WoodburyFactor:
        """The Jacobian ``D + Pᵀ diag(1/S) P`` at ``lin``, factored for Woodbury solves.

        ``C = diag(S) + P_n diag(α) P_nᵀ + P_p diag(δ) P_pᵀ + P_p diag(ε) P_nᵀ``: one product of
        ``[α δ ε]`` ``(B, 3M)`` with the load's outer products ``(3M, K²)`` when those are
        small, else one batched product ``(B, K, 2M) @ (2M, K)``.
        """
        inverse = lin.inverse()
        k, m = self.p_n.shape
        if self.outer is not None:
            flat = np.concatenate((inverse.inv, inverse.eps), axis=1) @ self.outer
            flat[:, :: k + 1] += self.total
            capacitance = flat.reshape(-1, k, k)
        else:
            alpha, delta = inverse.inv[:, None, :m], inverse.inv[:, None, m:]
            left = np.concatenate([self.p_n * alpha + self.p_p * inverse.eps[:, None, :],
                                   self.p_p * delta], axis=2)
            capacitance = left @ self.stacked_t
            diagonal = np.arange(k)
            capacitance[:, diagonal, diagonal] += self.total
        return WoodburyFactor(inverse, self, capacitance)


@dataclass(frozen=True, slots=True)
class SparseLoad(Load):
    """A :class:`Load` whose next columns each read few of the outputs (a convolution).

    The same load and methods; only :meth:`factor` differs. The next columns are grouped by
    the set of neurons they read (a conv layer's output channels at one position read the
    same window; when groups differ in size, every column is its own group). Group ``g``
    reads the ``W`` neurons ``index[g]`` (padded with weight-0 entries to the widest group),
    so its rows of the capacitance are ``[p_n α + p_p ε | p_p δ]`` on those neurons times
    their rows of ``Pᵀ``: one batched ``(G, c·B, 2W) @ (G, 2W, K)`` product (``c`` columns
    per group), ``O(B·K²·W)`` instead of ``O(B·K²·M)``. The sums run over the same nonzero
    terms as the dense product, so results agree to round-off.

    Attributes:
        columns: ``(G, c)`` the next columns of each group.
        index: ``(G, W)`` the neurons each group reads (an ``outn`` or ``outp`` row present).
        gathered_n: ``(G, c, 1, W)`` ``p_n`` of each column on those neurons, 0 on padding (S).
        gathered_p: ``(G, c, 1, W)`` the same for ``p_p`` (S).
        right_n: ``(G, W, K)`` the rows of ``Pᵀ`` for the ``outn`` of those neurons (S).
        right_p: ``(G, W, K)`` the same for ``outp`` (S).
    """

    columns: np.ndarray = field(init=False, repr=False, compare=False)
    index: np.ndarray = field(init=False, repr=False, compare=False)
    gathered_n: np.ndarray = field(init=False, repr=False, compare=False)
    gathered_p: np.ndarray = field(init=False, repr=False, compare=False)
    right_n: np.ndarray = field(init=False, repr=False, compare=False)
    right_p: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Load.__post_init__(self)
        k, m = self.p_n.shape
        reads = (self.p_n != 0) | (self.p_p != 0)
        _, group, counts = np.unique(reads, axis=0, return_inverse=True, return_counts=True)
        if counts.min() == counts.max():
            columns = np.argsort(group.ravel(), kind="stable").reshape(len(counts), -1)
        else:
            columns = np.arange(k)[:, None]
        group_reads = reads[columns[:, 0]]  # (G, M)
        width = max(int(group_reads.sum(axis=1).max(initial=0)), 1)
        # each group's read neurons first (stable order), then padding with weight 0
        order = np.argsort(~group_reads, axis=1, kind="stable")[:, :width]
        present = np.take_along_axis(group_reads, order, axis=1)
        index = np.where(present, order, 0)
        rows = columns[:, :, None]
        cols = index[:, None, :]
        keep = present[:, None, :]
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "gathered_n",
                           np.where(keep, self.p_n[rows, cols], 0.0)[:, :, None, :])
        object.__setattr__(self, "gathered_p",
                           np.where(keep, self.p_p[rows, cols], 0.0)[:, :, None, :])
        object.__setattr__(self, "right_n", self.stacked_t[index] * present[:, :, None])
        object.__setattr__(self, "right_p", self.stacked_t[index + m] * present[:, :, None])

    @property
    def width(self) -> int:
        """``W``: the most neurons any next column reads."""
        return self.index.shape[1]

    def factor(self, lin: Linearization) -> WoodburyFactor:
        """The Jacobian ``D + Pᵀ diag(1/S) P`` at ``lin``; see :meth:`Load.factor`."""
        inverse = lin.inverse()
        k, m = self.p_n.shape
        groups, per_group = self.columns.shape
        batch = inverse.inv.shape[0]
        # gathers (B, G, W) seen as (G, 1, B, W)
        alpha = inverse.inv[:, :m][:, self.index].transpose(1, 0, 2)[:, None]
        delta = inverse.inv[:, m:][:, self.index].transpose(1, 0, 2)[:, None]
        eps = inverse.eps[:, self.index].transpose(1, 0, 2)[:, None]
        left_n = (self.gathered_n * alpha + self.gathered_p * eps).reshape(groups, -1, self.width)
        left_p = (self.gathered_p * delta).reshape(groups, -1, self.width)
        rows = left_n @ self.right_n
        rows += left_p @ self.right_p  # (G, c·B, K)
        capacitance = np.empty((batch, k, k))
        capacitance[:, self.columns.ravel(), :] = (
            rows.reshape(groups, per_group, batch, k).transpose(2, 0, 1, 3).reshape(batch, k, k))
        diagonal = np.arange(k)
        capacitance[:, diagonal, diagonal] += self.total
        return WoodburyFactor(inverse, self, capacitance)


def residual_stacked(surface: CurrentSurface, column: np.ndarray, outputs: np.ndarray, load: Load | None
                     ) -> tuple[np.ndarray, Linearization]:
    """KCL residuals (A) at the stacked output nodes ``[outn | outp]`` ``(B, 2M)`` and their
    linearization."""
    value, d_in, d_out = surface.stacked(column, outputs)
    if load is None:
        diagonal = d_out
    else:
        value += load.currents(outputs)
        diagonal = d_out - load.b
    m = column.shape[1]
    return value, Linearization(diagonal[:, :m], d_in[:, m:], diagonal[:, m:], d_in[:, :m], diagonal)


def residual(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
             load: Load | None) -> tuple[np.ndarray, np.ndarray, Linearization]:
    """KCL residuals ``(F_n, F_p)`` (A) at the output nodes and their linearization."""
    f, lin = residual_stacked(surface, column, np.concatenate((outn, outp), axis=1), load)
    m = outn.shape[1]
    return f[:, :m], f[:, m:], lin


def factor_jacobian(lin: Linearization, load: Load | None) -> JacobianFactor:
    """The layer's Jacobian at ``lin``, ready to solve: ``D`` alone when nothing loads it."""
    return UnloadedFactor(lin.inverse()) if load is None else load.factor(lin)


def jacobian_solve(lin: Linearization, load: Load | None, r_n: np.ndarray, r_p: np.ndarray,
                   transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``J x = r`` (or ``Jᵀ x = r``) for every sample; ``J = D + Pᵀ diag(1/S) P``.

    Args:
        lin: the per-neuron blocks.
        load: the next crossbar, or None (then ``J = D``).
        r_n: ``(B, M)`` right-hand side at the ``outn`` nodes.
        r_p: ``(B, M)`` right-hand side at the ``outp`` nodes.
        transpose: solve with ``Jᵀ`` (adjoint).

    Returns:
        ``(x_n, x_p)``, each ``(B, M)``.
    """
    return factor_jacobian(lin, load).solve(r_n, r_p, transpose)


@dataclass(frozen=True, slots=True)
class NewtonSettings:
    """Newton controls.

    Attributes:
        tol_v: convergence when every node's undamped step is below this (V).
        max_iter: iteration cap.
        max_step_v: largest change of any node in one iteration (V); longer steps are scaled
            down per sample (damping).
    """

    tol_v: float = 1e-10
    max_iter: int = 60
    max_step_v: float = 0.05


@dataclass(frozen=True, slots=True)
class LayerSolution:
    """A solved layer.

    Attributes:
        outn: ``(B, M)`` inverted outputs (V).
        outp: ``(B, M)`` non-inverted outputs (V).
        iterations: Newton iterations of the slowest sample.
        lin: each sample's linearization at its last iterate, which lies within ``tol_v`` of
            the returned outputs (what the backward pass differentiates).
        factor: the Jacobian at ``lin``, factored, when every sample finished in the same
            iteration (else None: factor ``lin`` again).
    """

    outn: np.ndarray
    outp: np.ndarray
    iterations: int
    lin: Linearization
    factor: JacobianFactor | None = None


def solve_layer(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
                load: Load | None, settings: NewtonSettings, layer: int = 0
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Damped Newton on one layer's KCL, batched; see :func:`newton_layer`.

    Returns:
        ``(outn, outp, iterations)``.
    """
    solution = newton_layer(surface, column, outn, outp, load, settings, layer)
    return solution.outn, solution.outp, solution.iterations


def newton_layer(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
                 load: Load | None, settings: NewtonSettings, layer: int = 0,
                 compiled: bool = True) -> LayerSolution:
    """Damped Newton on one layer's KCL, batched; only unconverged samples keep iterating.

    With a dense :class:`Load` of at most :data:`COMPILED_MAX_COLUMNS` columns (or none) on a
    uniform current table, the loop runs compiled (:mod:`memspice.train.coupled_kernel`, one
    call for every sample's whole loop) when numba is installed; otherwise, or with
    ``compiled=False``, as the batched NumPy operations below. Both run the same iteration and
    stopping rule and agree to round-off.

    Args:
        surface: the inverter current model.
        column: ``(B, M)`` column voltages (V), fixed.
        outn: ``(B, M)`` initial ``outn`` guess (V).
        outp: ``(B, M)`` initial ``outp`` guess (V).
        load: the next crossbar, or None for an unloaded (output) layer.
        settings: tolerances and damping.
        layer: layer index (for the error message).
        compiled: use the compiled loop where it applies.

    Returns:
        The outputs, the iteration count and the final linearization.

    Raises:
        SolverError: some samples still moved by more than ``tol_v`` after ``max_iter``.
    """
    dense = load is None or (type(load) is Load and len(load.total) <= COMPILED_MAX_COLUMNS)
    if compiled and dense:
        grid = surface.uniform_grid
        kernels = coupled_kernel.compiled()
        if grid is not None and kernels is not None:
            return _newton_compiled(kernels, surface, grid, column, outn, outp, load, settings, layer)
    lo, hi = surface.v_lo, surface.v_hi
    m = column.shape[1]
    u = np.minimum(np.maximum(np.concatenate((outn, outp), axis=1).astype(np.float64), lo), hi)
    final: Linearization | None = None
    active = np.arange(column.shape[0])
    everyone = True  # active holds every sample, in order: no gathers needed
    last_step = np.zeros(0)
    for iteration in range(1, settings.max_iter + 1):
        c, v = (column, u) if everyone else (column[active], u[active])
        f, lin = residual_stacked(surface, c, v, load)
        factor = factor_jacobian(lin, load)
        x = factor.solve_stacked(f)  # the Newton step is −x
        step = np.abs(x).max(axis=1)
        if step.max() > settings.max_step_v:  # damping: shorten the long steps to max_step_v
            x *= np.minimum(1.0, settings.max_step_v / np.maximum(step, 1e-300))[:, None]
        new = np.minimum(np.maximum(v - x, lo), hi)
        done = step < settings.tol_v
        if everyone:
            u = new
        else:
            u[active] = new
        all_done = bool(done.all())
        if everyone and all_done:
            return LayerSolution(u[:, :m], u[:, m:], iteration, lin, factor)
        if final is None:
            final = Linearization(*np.empty((4, column.shape[0], m)))
        if all_done or done.any():
            finished = active[done]
            for target, source in zip((final.a, final.e, final.d, final.i1_in),
                                      (lin.a, lin.e, lin.d, lin.i1_in)):
                target[finished] = source[done]
        if all_done:
            return LayerSolution(u[:, :m], u[:, m:], iteration, final)
        active, last_step = active[~done], step[~done]
        everyone = False
    raise SolverError(layer, active, last_step, settings.max_iter)


def _newton_compiled(kernels: SimpleNamespace, surface: CurrentSurface, grid: np.ndarray,
                     column: np.ndarray, outn: np.ndarray, outp: np.ndarray, load: Load | None,
                     settings: NewtonSettings, layer: int) -> LayerSolution:
    """:func:`newton_layer` by the compiled kernel: every sample to its own convergence."""
    column = np.ascontiguousarray(column, dtype=np.float64)
    batch, m = column.shape
    u = np.concatenate((outn, outp), axis=1, dtype=np.float64)  # the kernel's start and answer
    p, p_t, bias, total, b = _no_load(2 * m) if load is None else (
        load.stacked, load.stacked_t, load.bias, load.total, load.b)
    k = p.shape[0]
    diagonal, d_in, inv = np.empty((3, batch, 2 * m))
    eps = np.empty((batch, m))
    capacitance = np.empty((batch, k, k))
    iterations = np.empty(batch, dtype=np.int64)
    last_step = np.empty(batch)
    slowest = kernels.newton(surface.coefficients, grid, column, u, p, p_t, bias, total, b,
                             surface.v_lo, surface.v_hi, settings.tol_v, settings.max_step_v,
                             settings.max_iter, diagonal, d_in, inv, eps, capacitance, iterations,
                             last_step)
    if slowest < 0:
        failed = iterations < 0
        raise SolverError(layer, np.flatnonzero(failed), last_step[failed], settings.max_iter)
    lin = Linearization(diagonal[:, :m], d_in[:, m:], diagonal[:, m:], d_in[:, :m], diagonal)
    inverse = BlockInverse(inv, eps)
    factor: JacobianFactor = (UnloadedFactor(inverse) if load is None
                              else CompiledWoodburyFactor(inverse, load, capacitance))
    return LayerSolution(u[:, :m], u[:, m:], slowest, lin, factor)


@functools.cache
def _no_load(width: int) -> tuple[np.ndarray, ...]:
    """The compiled kernel's load arguments for an unloaded layer of ``width`` nodes (K = 0)."""
    empty = np.zeros((0, width))
    return empty, empty, np.zeros(0), np.zeros(0), np.zeros(width)
