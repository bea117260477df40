"""The inverter's output current as a bicubic surface, evaluated fast with both derivatives.

The coupled solver (:mod:`memspice.train.coupled_solve`) evaluates the current of every inverter
of a layer once per Newton iteration, so this evaluation is the solver's innermost loop.
"""

from __future__ import annotations

import numpy as np

from memspice.fit.calibration import InverterCurrentModel
from memspice.train import coupled_kernel

#: Bicubic Hermite basis: row k holds the coefficients of t⁰..t³ of h00, h10·Δ, h01, h11·Δ.
_HERMITE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [-3.0, -2.0, 3.0, -1.0], [2.0, 1.0, -2.0, 1.0]])


def _uniform_step(grid: np.ndarray) -> float | None:
    """The grid step (V) if ``grid`` is uniform to rounding, else None."""
    steps = np.diff(grid)
    return float(steps.mean()) if np.allclose(steps, steps[0], rtol=1e-9, atol=0.0) else None


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
        # (16, cells): row 4q + p holds the coefficient of s^p t^q of every cell
        self._by_row = np.ascontiguousarray(self._coeffs.transpose(3, 2, 0, 1).reshape(16, -1))
        self._ny = len(hy)
        self._hx, self._hy = hx, hy
        self._inv_hx, self._inv_hy = 1.0 / hx, 1.0 / hy
        self._x_step = _uniform_step(self._x)
        self._unloaded: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None
        self._y_step = _uniform_step(self._y)
        self._coeffs = np.ascontiguousarray(self._coeffs)
        self._grid = None
        if self._x_step is not None and self._y_step is not None:
            self._grid = np.array([self._x[0], 1.0 / self._x_step, self._y[0], 1.0 / self._y_step])

    @property
    def uniform_grid(self) -> np.ndarray | None:
        """``[V_in origin, 1/ΔV_in, V_out origin, 1/ΔV_out]`` (V, 1/V) when both axes are
        uniform (what the compiled Newton kernel needs), else None."""
        return self._grid

    @property
    def coefficients(self) -> np.ndarray:
        """Per-cell power-series coefficients ``(cells_in, cells_out, 4, 4)``: ``[i, j, p, q]``
        multiplies ``s^p t^q`` in cell ``(i, j)`` (``s``, ``t`` ∈ [0, 1] across the cell)."""
        return self._coeffs

    def __call__(self, v_in: np.ndarray, v_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current (A), ``∂I/∂V_in`` (S) and ``∂I/∂V_out`` (S), shaped like the arguments."""
        shape = np.broadcast(v_in, v_out).shape
        value, d_in, d_out = self._flat_eval(np.broadcast_to(v_in, shape).ravel(),
                                             np.broadcast_to(v_out, shape).ravel())
        return value.reshape(shape), d_in.reshape(shape), d_out.reshape(shape)

    def _flat_eval(self, v_in: np.ndarray, v_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`__call__` on 1-D arrays."""
        s, i, inv_hx = self._locate(v_in, self._x, self._x_step, self._inv_hx)
        t, j, inv_hy = self._locate(v_out, self._y, self._y_step, self._inv_hy)
        # c[q, p] (n,) multiplies s^p t^q: gathered as 16 contiguous rows so that every
        # operation runs over whole blocks of n points.
        c = self._by_row.take(i * self._ny + j, axis=1).reshape(4, 4, -1)
        c_t = ((c[3] * t + c[2]) * t + c[1]) * t + c[0]  # (4, n): Σ_q c[q, p] t^q for each p
        dc_t = (3.0 * c[3] * t + 2.0 * c[2]) * t + c[1]  # its t-derivative
        value = ((c_t[3] * s + c_t[2]) * s + c_t[1]) * s + c_t[0]
        d_in = ((3.0 * c_t[3] * s + 2.0 * c_t[2]) * s + c_t[1]) * inv_hx
        d_out = (((dc_t[3] * s + dc_t[2]) * s + dc_t[1]) * s + dc_t[0]) * inv_hy
        return value, d_in, d_out

    @staticmethod
    def _locate(v: np.ndarray, grid: np.ndarray, step: float | None, inv_steps: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
        """Local coordinate in [0, 1], cell index and 1/cell width (1/V) of each ``v``,
        clipped onto the grid.

        On a uniform grid (every table memspice builds) the cell is found by arithmetic; a
        value within rounding of a grid line may land in the neighbouring cell, where the C²
        spline agrees.
        """
        last = len(grid) - 2
        if step is not None:
            u = np.minimum(np.maximum((v - grid[0]) * (1.0 / step), 0.0), last + 1.0)
            with np.errstate(invalid="ignore"):  # NaN stays NaN in the result, in cell 0
                cell = np.minimum(np.maximum(u.astype(np.intp), 0), last)
            return u - cell, cell, 1.0 / step
        clipped = np.minimum(np.maximum(v, grid[0]), grid[-1])
        cell = np.minimum(np.searchsorted(grid, clipped, side="right") - 1, last)
        inv = inv_steps[cell]
        return (clipped - grid[cell]) * inv, cell, inv

    def unloaded_output(self, v_in: np.ndarray) -> np.ndarray:
        """Output voltage (V) of an inverter that drives nothing: the root of ``I(v_in, ·) = 0``.

        Interpolated (cubic Hermite, exact slopes ``−I_in/I_out``) from roots solved on a grid
        64 times finer than the table's, so it is a starting point for Newton, accurate to
        about a microvolt, not a solution. Roots outside the table are clipped onto it.
        """
        if self._unloaded is None:
            self._unloaded = self._tabulate_unloaded(64)
        grid, step, value, slope = self._unloaded
        u = np.minimum(np.maximum(np.asarray(v_in, dtype=np.float64), grid[0]), grid[-1])
        with np.errstate(invalid="ignore"):  # NaN stays NaN in the result, in cell 0
            k = np.minimum(np.maximum(((u - grid[0]) * (1.0 / step)).astype(np.intp), 0), len(grid) - 2)
        t = (u - grid[k]) * (1.0 / step)
        t2 = t * t
        t3 = t2 * t
        h01 = 3.0 * t2 - 2.0 * t3
        return (value[k] + h01 * (value[k + 1] - value[k])
                + step * ((t3 - 2.0 * t2 + t) * slope[k] + (t3 - t2) * slope[k + 1]))

    def unloaded_pair(self, column: np.ndarray) -> np.ndarray:
        """A neuron's two unloaded inverters, stacked: ``[outn | outp]`` ``(B, 2M)`` (V) with
        ``outn`` = :meth:`unloaded_output` of ``column`` ``(B, M)`` and ``outp`` that of
        ``outn`` (compiled when numba is installed)."""
        if self._unloaded is None:
            self._unloaded = self._tabulate_unloaded(64)
        column = np.asarray(column, dtype=np.float64)
        kernels = coupled_kernel.compiled()
        if kernels is None:
            outn = self.unloaded_output(column)
            return np.concatenate((outn, self.unloaded_output(outn)), axis=1)
        u = np.empty((column.shape[0], 2 * column.shape[1]))
        kernels.unloaded_pair(*self._unloaded, np.ascontiguousarray(column), u)
        return u

    def _tabulate_unloaded(self, refine: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Roots of ``I(u, ·)`` on a uniform grid of ``u``, by bisection then Newton."""
        grid = np.linspace(self._x[0], self._x[-1], refine * (len(self._x) - 1) + 1)
        lo = np.full_like(grid, self._y[0])
        hi = np.full_like(grid, self._y[-1])
        # I falls as the output rises (the inverter sources less current): bisect on its sign.
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self(grid, mid)[0] > 0.0
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        root = 0.5 * (lo + hi)
        for _ in range(3):
            current, _, d_out = self(grid, root)
            root = np.clip(root - current / np.where(d_out < 0.0, d_out, -1.0), self._y[0], self._y[-1])
        _, d_in, d_out = self(grid, root)
        slope = np.where(d_out < 0.0, -d_in / np.where(d_out < 0.0, d_out, -1.0), 0.0)
        return grid, float(grid[1] - grid[0]), root, slope

    def stacked(self, column: np.ndarray, outputs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both inverters of every neuron in one pass, for stacked outputs.

        Args:
            column: ``(B, M)`` column voltages (V).
            outputs: ``(B, 2M)`` node voltages ``[outn | outp]`` (V).

        Returns:
            Current (A), ``∂I/∂V_in`` and ``∂I/∂V_out`` (S), each ``(B, 2M)``: columns ``:M``
            are inverter 1 at ``(column, outn)``, columns ``M:`` inverter 2 at ``(outn, outp)``.
        """
        m = column.shape[1]
        v_in = np.concatenate((column, outputs[:, :m]), axis=1)
        value, d_in, d_out = self._flat_eval(v_in.ravel(), outputs.ravel())
        return value.reshape(outputs.shape), d_in.reshape(outputs.shape), d_out.reshape(outputs.shape)
