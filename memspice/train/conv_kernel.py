"""Compiled per-neuron solves of a loaded layer with its next columns held fixed.

:mod:`memspice.train.conv_solve` solves a loaded layer by nonlinear elimination: for given next
column voltages ``c'`` every neuron is an independent pair of scalar equations,

    I(c, outn)    − b_n·outn + inj_n = 0
    I(outn, outp) − b_p·outp + inj_p = 0      (inj = Pᵀ c', the load's injected current, A)

each strictly decreasing in its unknown (the inverter sources less current as its output rises,
and the load draws more). This kernel solves all of them, every sample and neuron of a batch in
one compiled call: Newton safeguarded by a bracket (a step that leaves the bracket bisects it),
stopping when a node's step is below the tolerance and then applying that step, as the layer
Newton does. It uses :mod:`memspice.train.coupled_kernel`'s compiled current surface.

Compiled on first use (:func:`compiled`) and cached on disk; without numba, :func:`local_solve`
runs as plain Python (correct, slow: the NumPy fallback of
:mod:`memspice.train.conv_solve` is used instead).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from memspice.train import coupled_kernel

_KERNELS = ("local_solve",)
_compiled: SimpleNamespace | None = None


def compiled() -> SimpleNamespace | None:
    """The compiled kernels (attributes named as the functions below), or None without numba."""
    global _compiled
    if not coupled_kernel.available():
        return None
    if _compiled is None:
        import numba

        coupled_kernel.compiled()  # compiles the shared helpers first
        module = globals()
        module["_surface"] = coupled_kernel._surface
        jit = numba.njit(cache=True, nogil=True)
        _compiled = SimpleNamespace(**{name: jit(module[name]) for name in _KERNELS})
    return _compiled


_surface = coupled_kernel._surface


def local_solve(coeffs: np.ndarray, grid: np.ndarray, column: np.ndarray, inject: np.ndarray,
                b: np.ndarray, u: np.ndarray, lo: float, hi: float, tol: float, max_iter: int,
                d_in: np.ndarray, d_out: np.ndarray) -> int:
    """Solve every neuron's two outputs for fixed injected currents, in place.

    Args:
        coeffs: the current surface's per-cell coefficients (``CurrentSurface.coefficients``).
        grid: its uniform grid ``[x0, 1/Δx, y0, 1/Δy]``.
        column: ``(B, M)`` column voltages (V).
        inject: ``(B, 2M)`` currents the load injects at ``[outn | outp]``, ``Pᵀ c'`` (A).
        b: ``(2M,)`` each output node's conductance into the load (S).
        u: ``(B, 2M)`` start ``[outn | outp]`` (V); overwritten with the solution.
        lo, hi: the voltage range the outputs are clipped to (V).
        tol: a node is solved once its Newton step is below this (V); the step is applied.
        max_iter: iteration cap per node.
        d_in, d_out: ``(B, 2M)`` filled with ``∂I/∂V_in`` and ``∂I/∂V_out`` (S) at each node's
            last evaluation (within one final step of the solution).

    Returns:
        The most iterations any node took, or −1 when some node did not converge.
    """
    x0, inv_hx, y0, inv_hy = grid[0], grid[1], grid[2], grid[3]
    n_samples, m = column.shape
    slowest = 0
    for sample in range(n_samples):
        for half in range(2):
            for j in range(m):
                node = half * m + j
                v_in = column[sample, j] if half == 0 else u[sample, j]
                load = b[node]
                source = inject[sample, node]
                v = min(max(u[sample, node], lo), hi)
                below, above = lo, hi  # the root lies in [below, above]
                done = -1
                for iteration in range(1, max_iter + 1):
                    value, slope_in, slope_out = _surface(coeffs, x0, inv_hx, y0, inv_hy, v_in, v)
                    f = value - load * v + source
                    slope = slope_out - load
                    d_in[sample, node] = slope_in
                    d_out[sample, node] = slope_out
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
                if done < 0:
                    slowest = -1
                elif slowest >= 0 and done > slowest:
                    slowest = done
    return slowest
