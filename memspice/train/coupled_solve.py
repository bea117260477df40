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
layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.errors import MemspiceError
from memspice.fit.calibration import InverterCurrentModel


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


#: Bicubic Hermite basis: row k holds the coefficients of t⁰..t³ of h00, h10·Δ, h01, h11·Δ.
_HERMITE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-3.0, -2.0, 3.0, -1.0], [2.0, 1.0, -2.0, 1.0]])


class CurrentSurface:
    """Bicubic spline of one inverter's output current with both partial derivatives.

    The calibration's interpolating spline (:meth:`InverterCurrentModel.interpolant`) is one
    bicubic polynomial inside every grid cell, so it is stored here as per-cell power-series
    coefficients (from ``f, f_x, f_y, f_xy`` at the cell corners, which reproduce a bicubic
    exactly) and evaluated with its derivatives in one vectorized pass, about 5× faster than
    three FITPACK calls. Arguments outside the grid are clipped onto it.

    Args:
        model: the tabulated current (A) on a (V_in, V_out) grid (V).

    Attributes:
        v_lo: lowest voltage inside both grids (V).
        v_hi: highest voltage inside both grids (V).
    """

    def __init__(self, model: InverterCurrentModel) -> None:
        spline = model.interpolant()
        self._x = np.asarray(model.v_in, dtype=np.float64)
        self._y = np.asarray(model.v_out, dtype=np.float64)
        self.v_lo = max(model.v_in[0], model.v_out[0])
        self.v_hi = min(model.v_in[-1], model.v_out[-1])
        hx, hy = np.diff(self._x), np.diff(self._y)
        corner = [spline(self._x, self._y, dx=dx, dy=dy) for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1))]
        f, fx, fy, fxy = corner
        # Per cell (i, j): 4×4 Hermite data in local coordinates s, t ∈ [0, 1].
        hxc, hyc = hx[:, None], hy[None, :]
        data = np.empty((len(hx), len(hy), 4, 4))
        for a, (ia, scale_x) in enumerate(((0, None), (0, "x"), (1, None), (1, "x"))):
            for b, (jb, scale_y) in enumerate(((0, None), (0, "y"), (1, None), (1, "y"))):
                source = {(None, None): f, ("x", None): fx, (None, "y"): fy, ("x", "y"): fxy}[(scale_x, scale_y)]
                block = source[ia : ia + len(hx), jb : jb + len(hy)]
                if scale_x:
                    block = block * hxc
                if scale_y:
                    block = block * hyc
                data[:, :, a, b] = block
        # Coefficients c[p, q] of s^p t^q: C = H · data · Hᵀ.
        self._coeffs = np.einsum("pa,ijab,qb->ijpq", _HERMITE, data, _HERMITE)
        self._hx, self._hy = hx, hy

    def __call__(self, v_in: np.ndarray, v_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current (A), ``∂I/∂V_in`` (S) and ``∂I/∂V_out`` (S), shaped like the arguments."""
        shape = np.broadcast(v_in, v_out).shape
        a = np.clip(np.broadcast_to(v_in, shape).ravel(), self._x[0], self._x[-1])
        b = np.clip(np.broadcast_to(v_out, shape).ravel(), self._y[0], self._y[-1])
        i = np.clip(np.searchsorted(self._x, a, side="right") - 1, 0, len(self._hx) - 1)
        j = np.clip(np.searchsorted(self._y, b, side="right") - 1, 0, len(self._hy) - 1)
        hx, hy = self._hx[i], self._hy[j]
        s = (a - self._x[i]) / hx
        t = (b - self._y[j]) / hy
        c = self._coeffs[i, j]  # (n, 4, 4): c[p, q] multiplies s^p t^q
        s2, t2 = s * s, t * t
        # Horner in t for each power of s, then in s; derivatives alongside.
        c_t = ((c[:, :, 3] * t[:, None] + c[:, :, 2]) * t[:, None] + c[:, :, 1]) * t[:, None] + c[:, :, 0]
        dc_t = (3.0 * c[:, :, 3] * t2[:, None] + 2.0 * c[:, :, 2] * t[:, None]) + c[:, :, 1]
        value = ((c_t[:, 3] * s + c_t[:, 2]) * s + c_t[:, 1]) * s + c_t[:, 0]
        d_in = (3.0 * c_t[:, 3] * s2 + 2.0 * c_t[:, 2] * s + c_t[:, 1]) / hx
        d_out = (((dc_t[:, 3] * s + dc_t[:, 2]) * s + dc_t[:, 1]) * s + dc_t[:, 0]) / hy
        return value.reshape(shape), d_in.reshape(shape), d_out.reshape(shape)


@dataclass(frozen=True, slots=True)
class Load:
    """The next crossbar seen from a layer's outputs.

    Attributes:
        p_n: ``(K, M)`` conductances of the next layer's ``in`` rows (S).
        p_p: ``(K, M)`` conductances of its ``ip`` rows (S).
        bias: ``(K,)`` current the bias rows inject into each next column at 0 V columns,
            ``G_bp·vdd + G_bn·vss`` (A).
        total: ``(K,)`` column conductance sums ``S`` (S).
    """

    p_n: np.ndarray
    p_p: np.ndarray
    bias: np.ndarray
    total: np.ndarray

    @classmethod
    def of(cls, g_next: np.ndarray, vdd: float, vss: float) -> Load:
        """Split a next-layer conductance matrix ``(K, 2M+2)`` (S) into its load terms."""
        m = (g_next.shape[1] - 2) // 2
        return cls(g_next[:, m : 2 * m], g_next[:, :m], g_next[:, 2 * m] * vdd + g_next[:, 2 * m + 1] * vss,
                   g_next.sum(axis=1))

    def next_columns(self, outn: np.ndarray, outp: np.ndarray) -> np.ndarray:
        """Next layer's column voltages ``(B, K)`` (V)."""
        return (outn @ self.p_n.T + outp @ self.p_p.T + self.bias) / self.total


@dataclass(frozen=True, slots=True)
class Linearization:
    """Per-neuron derivatives of the residual at a point (all ``(B, M)``, S).

    Attributes:
        a: ``∂F_n/∂outn`` without the low-rank part (``I₁_out − b_n``).
        e: ``∂F_p/∂outn`` (``I₂_in``).
        d: ``∂F_p/∂outp`` without the low-rank part (``I₂_out − b_p``).
        i1_in: ``∂I₁/∂c`` (the column's influence on inverter 1).
    """

    a: np.ndarray
    e: np.ndarray
    d: np.ndarray
    i1_in: np.ndarray


def residual(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
             load: Load | None) -> tuple[np.ndarray, np.ndarray, Linearization]:
    """KCL residuals ``(F_n, F_p)`` (A) at the output nodes and their linearization."""
    i1, i1_in, i1_out = surface(column, outn)
    i2, i2_in, i2_out = surface(outn, outp)
    if load is None:
        return i1, i2, Linearization(i1_out, i2_in, i2_out, i1_in)
    b_n = load.p_n.sum(axis=0)
    b_p = load.p_p.sum(axis=0)
    c_next = load.next_columns(outn, outp)
    f_n = i1 - b_n * outn + c_next @ load.p_n
    f_p = i2 - b_p * outp + c_next @ load.p_p
    return f_n, f_p, Linearization(i1_out - b_n, i2_in, i2_out - b_p, i1_in)


def _block_solve(lin: Linearization, r_n: np.ndarray, r_p: np.ndarray, transpose: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``D x = r`` (or ``Dᵀ x = r``); ``r`` may carry trailing axes beyond ``(B, M)``."""
    extra = (slice(None), slice(None)) + (None,) * (r_n.ndim - 2)
    a, e, d = lin.a[extra], lin.e[extra], lin.d[extra]
    if transpose:  # [[a, e], [0, d]]
        x_p = r_p / d
        return (r_n - e * x_p) / a, x_p
    x_n = r_n / a  # [[a, 0], [e, d]]
    return x_n, (r_p - e * x_n) / d


def jacobian_solve(lin: Linearization, load: Load | None, r_n: np.ndarray, r_p: np.ndarray,
                   transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``J x = r`` (or ``Jᵀ x = r``) for every sample; ``J = D + Pᵀ diag(1/S) P``.

    Woodbury: ``J⁻¹ = D⁻¹ − D⁻¹Pᵀ (diag(S) + P D⁻¹ Pᵀ)⁻¹ P D⁻¹``; the same with ``Dᵀ`` for the
    transpose because the low-rank part is symmetric.

    Args:
        lin: the per-neuron blocks.
        load: the next crossbar, or None (then ``J = D``).
        r_n: ``(B, M)`` right-hand side at the ``outn`` nodes.
        r_p: ``(B, M)`` right-hand side at the ``outp`` nodes.
        transpose: solve with ``Jᵀ`` (adjoint).

    Returns:
        ``(x_n, x_p)``, each ``(B, M)``.
    """
    y_n, y_p = _block_solve(lin, r_n, r_p, transpose)
    if load is None:
        return y_n, y_p
    batch = r_n.shape[0]
    # D⁻¹ Pᵀ for every sample: (B, M, K) per output polarity.
    z_n, z_p = _block_solve(lin, np.broadcast_to(load.p_n.T, (batch, *load.p_n.T.shape)),
                            np.broadcast_to(load.p_p.T, (batch, *load.p_p.T.shape)), transpose)
    capacitance = np.einsum("km,bmj->bkj", load.p_n, z_n) + np.einsum("km,bmj->bkj", load.p_p, z_p)
    capacitance[:, np.arange(load.total.size), np.arange(load.total.size)] += load.total
    projected = y_n @ load.p_n.T + y_p @ load.p_p.T  # (B, K) = P D⁻¹ r
    w = np.linalg.solve(capacitance, projected[:, :, None])[:, :, 0]
    return y_n - np.einsum("bmk,bk->bm", z_n, w), y_p - np.einsum("bmk,bk->bm", z_p, w)


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


def solve_layer(surface: CurrentSurface, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
                load: Load | None, settings: NewtonSettings, layer: int = 0
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Damped Newton on one layer's KCL, batched; only unconverged samples keep iterating.

    Args:
        surface: the inverter current model.
        column: ``(B, M)`` column voltages (V), fixed.
        outn: ``(B, M)`` initial ``outn`` guess (V).
        outp: ``(B, M)`` initial ``outp`` guess (V).
        load: the next crossbar, or None for an unloaded (output) layer.
        settings: tolerances and damping.
        layer: layer index (for the error message).

    Returns:
        ``(outn, outp, iterations)``.

    Raises:
        SolverError: some samples still moved by more than ``tol_v`` after ``max_iter``.
    """
    lo, hi = surface.v_lo, surface.v_hi
    outn = np.clip(np.array(outn, dtype=np.float64), lo, hi)
    outp = np.clip(np.array(outp, dtype=np.float64), lo, hi)
    active = np.arange(column.shape[0])
    last_step = np.zeros(0)
    for iteration in range(1, settings.max_iter + 1):
        c, n, p = column[active], outn[active], outp[active]
        f_n, f_p, lin = residual(surface, c, n, p, load)
        s_n, s_p = jacobian_solve(lin, load, -f_n, -f_p)
        step = np.maximum(np.abs(s_n).max(axis=1), np.abs(s_p).max(axis=1))
        scale = np.minimum(1.0, settings.max_step_v / np.maximum(step, 1e-300))[:, None]
        outn[active] = np.clip(n + scale * s_n, lo, hi)
        outp[active] = np.clip(p + scale * s_p, lo, hi)
        done = step < settings.tol_v
        active, last_step = active[~done], step[~done]
        if active.size == 0:
            return outn, outp, iteration
    raise SolverError(layer, active, last_step, settings.max_iter)
