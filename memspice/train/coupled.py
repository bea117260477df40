"""``coupled`` evaluator: the network's DC operating point as SPICE computes it.

Model (ARCHITECTURE §4, "Loading"): each inverter is a nonlinear current source
``I(V_in, V_out)`` (the calibration's bicubic current spline, A); crossbars are linear
conductances; a column node feeds only a gate, so ``c = (G·r)/ΣG`` exactly, whatever drives the
rows. Hidden outputs are loaded by the next crossbar, whose columns depend on those same
outputs; the last layer's outputs drive nothing (``I = 0``). The forward pass solves this
layer by layer with batched Newton (:mod:`memspice.train.coupled_solve`), starting each loaded
layer from the input's last solution (:class:`WarmStarts`; the static tanh fits the first time)
and the output layer from its inverters' tabulated unloaded roots; the backward pass
differentiates the solution implicitly (adjoint), with the Jacobian of the last Newton step.

Approximations left: the current table and its interpolation (the calibration records the
error in A), memristors as linear resistors (PHAX reads, ARCHITECTURE §4), and the inverter's
input drawing no DC current. Within those, forward values match SPICE to the solver tolerance.

Gradient, per hidden layer ``l`` with ``F_l(u_l; c_l, G_{l+1}) = 0`` and upstream
``ĝ = ∂L/∂u_l`` (through ``c_{l+1}``): solve ``J_lᵀ λ = ĝ``; then
``∂L/∂c_l = −λ_n ⊙ ∂I₁/∂V_in`` and ``∂L/∂G_{l+1}[m,k] += Σ_b (λ_k − μ_m/S_m)(r_k − c'_m)`` with
``μ_m = Σ_k G_{l+1}[m,k] λ_k`` (λ is zero on the bias rows), plus the usual column term
``∂L/∂G_l[m,k] = Σ_b ĉ_m (r_k − c_m)/S_m``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.wiring import input_rows, row_voltages
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.train import coupled_kernel
from memspice.train.coupled_solve import (
    CurrentSurface,
    JacobianFactor,
    Linearization,
    Load,
    NewtonSettings,
    SolverError,
    factor_jacobian,
    newton_layer,
    residual,
)
from memspice.train.forward import ForwardTrace, LayerState


def column_voltages(g: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Column voltages ``(B, M)`` (V) of a crossbar ``g`` ``(M, R)`` (S) driven by ``rows`` ``(B, R)`` (V)."""
    if rows.shape[1] != g.shape[1]:
        raise ConfigError(f"layer with {g.shape[1]} rows fed {rows.shape[1]} row voltages")
    return rows @ (g / g.sum(axis=1, keepdims=True)).T


def column_vjp(g: np.ndarray, rows: np.ndarray, column: np.ndarray, grad_column: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Backward of :func:`column_voltages`: ``(∂L/∂G (1/S), ∂L/∂rows (1/V))``."""
    total = g.sum(axis=1)
    grad_g = (grad_column.T @ rows - (grad_column * column).sum(axis=0)[:, None]) / total[:, None]
    return grad_g, grad_column @ (g / total[:, None])


@dataclass(frozen=True, slots=True)
class SolverState:
    """What the backward pass reuses of one solved layer: its Jacobian at the solution.

    Attributes:
        lin: the per-neuron linearization at the last Newton iterate.
        load: the next crossbar's load on the layer, or None for the output layer.
        factor: the Jacobian at ``lin``, factored, if the solver kept it.
    """

    lin: Linearization
    load: Load | None
    factor: JacobianFactor | None = None


class WarmStarts:
    """Each distinct input's solution of the loaded layers: the next solve's starting point.

    Training revisits every sample once per epoch with slightly changed conductances, so its
    last solution, moved to first order for the change of its column voltage, is a far better
    Newton start than the static fit; Newton still converges to the same tolerance, so only
    the iteration count changes. Inputs are keyed by their bytes (no caller needs to pass
    sample indices). Holding at most ``capacity`` inputs, it forgets everything when full, and
    whenever the layer sizes change.

    Args:
        capacity: most distinct inputs remembered.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._slots: dict[bytes, int] = {}
        self._widths: tuple[int, ...] = ()
        self._tables: dict[int, np.ndarray] = {}  # per layer (slots, 5, M): see store

    def lookup(self, x: np.ndarray, widths: tuple[int, ...]) -> tuple[list[bytes], np.ndarray]:
        """Keys of ``x``'s rows and their slots (−1 where unknown)."""
        if widths != self._widths:
            self.clear()
            self._widths = widths
        keys = [row.tobytes() for row in x]
        get = self._slots.get
        return keys, np.fromiter((get(k, -1) for k in keys), dtype=np.intp, count=len(keys))

    def holds(self, layer: int) -> bool:
        """Whether solutions of layer ``layer`` are stored."""
        return layer in self._tables

    def guess(self, slots: np.ndarray, layer: int, column: np.ndarray, outn: np.ndarray, outp: np.ndarray) -> None:
        """Overwrite ``outn``/``outp`` rows with the stored outputs where ``slots`` ≥ 0, moved
        to first order for the column's change since (each neuron's own slope; the coupling
        through the next layer and the change of the load are left to Newton)."""
        if layer not in self._tables:
            return
        kernels = coupled_kernel.compiled()
        if kernels is not None:
            kernels.warm_guess(self._tables[layer], slots, column, outn, outp)
            return
        hit = slots >= 0
        if hit.any():
            stored = self._tables[layer][slots[hit]]
            move_n = stored[:, 3] * (column[hit] - stored[:, 2])
            outn[hit] = stored[:, 0] + move_n
            outp[hit] = stored[:, 1] + stored[:, 4] * move_n

    def store(self, keys: list[bytes], slots: np.ndarray,
              layers: dict[int, tuple[LayerState, Linearization]]) -> None:
        """Remember the column, outputs and slopes of the given layers (by index) for these inputs."""
        missing = np.flatnonzero(slots < 0)
        if len(self._slots) + len(missing) > self.capacity:
            self.clear()
            slots = np.full(len(keys), -1, dtype=np.intp)
            missing = np.arange(len(keys))
        for row in missing:  # duplicate rows within the batch share one slot
            slots[row] = self._slots.setdefault(keys[row], len(self._slots))
        kernels = coupled_kernel.compiled()
        for layer, (state, lin) in layers.items():
            target = self._table(layer, state.outn.shape[1])
            if kernels is not None:
                kernels.warm_store(target, slots, state.outn, state.outp, state.column,
                                   lin.i1_in, lin.a, lin.e, lin.d)
                continue
            target[slots, 0] = state.outn
            target[slots, 1] = state.outp
            target[slots, 2] = state.column
            target[slots, 3] = -lin.i1_in / lin.a  # ∂outn/∂c of inverter 1 under its own load
            target[slots, 4] = -lin.e / lin.d  # ∂outp/∂outn of inverter 2

    def _table(self, layer: int, width: int) -> np.ndarray:
        """Layer ``layer``'s stored values ``(slots, 5, width)``, grown to hold every slot."""
        table = self._tables.get(layer)
        size = 0 if table is None else table.shape[0]
        if table is None or len(self._slots) > size:
            grown = np.empty((max(len(self._slots), 2 * size, 256), 5, width))
            if table is not None:
                grown[:size] = table
            self._tables[layer] = table = grown
        return table

    def clear(self) -> None:
        """Forget every stored solution."""
        self._slots.clear()
        self._tables = {}


class CoupledEvaluator:
    """Inverter outputs loaded by the next crossbar, solved like SPICE's DC operating point.

    Args:
        calibration: needs ``inverter_current`` (the tabulated output current of one
            inverter); its static ``activation`` gives Newton's starting point.
        settings: Newton tolerance (V), iteration cap and damping.
        warm_start: start Newton from each input's last solution (see :class:`WarmStarts`)
            instead of the static fit; the answer is the same to the tolerance, found in fewer
            iterations.

    Raises:
        ConfigError: the calibration has no inverter current model.

    Attributes:
        iterations: Newton iterations each layer took in the last forward pass.
        warm_starts: the remembered solutions, or None without warm starts.
        chunk: most samples solved at once (longer batches are split).
    """

    name = "coupled"

    def __init__(self, calibration: Calibration, settings: NewtonSettings = NewtonSettings(),
                 warm_start: bool = True) -> None:
        if calibration.inverter_current is None:
            raise ConfigError(
                "the coupled evaluator needs a calibration with an inverter current model "
                "(memspice.characterize.calibrate.calibrate produces one)"
            )
        self.calibration = calibration
        self.settings = settings
        self.surface = CurrentSurface(calibration.inverter_current)
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss
        self.iterations: list[int] = []
        self.warm_starts = WarmStarts() if warm_start else None
        self.chunk = 512

    def _load(self, conductances: Sequence[np.ndarray], index: int) -> Load | None:
        if index + 1 >= len(conductances):
            return None
        return Load.of(np.asarray(conductances[index + 1], dtype=np.float64), self._vdd, self._vss)

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> ForwardTrace:
        """Solve every layer's outputs for input voltages ``x`` ``(B, n_inputs)`` (V).

        Batches longer than :attr:`chunk` are solved a chunk at a time (the solver's arrays
        then stay in cache); their trace keeps no solver state, so a backward pass over one
        re-linearizes at the solution.

        Raises:
            SolverError: Newton failed for some samples (their indices are in the error).
        """
        x = np.asarray(x, dtype=np.float64)
        if len(x) <= self.chunk:
            return self._forward(conductances, x)
        parts = []
        iterations = [0] * len(conductances)
        for start in range(0, len(x), self.chunk):
            try:
                parts.append(self._forward(conductances, x[start : start + self.chunk]).layers)
            except SolverError as error:
                error.samples = error.samples + start
                raise
            iterations = [max(a, b) for a, b in zip(iterations, self.iterations)]
        self.iterations = iterations
        layers = tuple(LayerState(*(np.concatenate([getattr(part[index], name) for part in parts])
                                    for name in ("rows", "column", "outn", "outp")))
                       for index in range(len(conductances)))
        return ForwardTrace(layers, tuple(conductances))

    def _forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> ForwardTrace:
        act = self.calibration.activation
        v_pos, v_neg = input_rows(x)
        layers = []
        states: list[SolverState] = []
        loaded: dict[int, tuple[LayerState, Linearization]] = {}
        self.iterations = []
        cache = self.warm_starts
        if cache is not None:
            keys, slots = cache.lookup(x, tuple(int(g.shape[0]) for g in conductances))
            every_known = bool((slots >= 0).all())
        load = self._load(conductances, 0)
        for index, g in enumerate(conductances):
            rows = row_voltages(v_pos, v_neg, self._vdd, self._vss)
            column = column_voltages(g, rows)
            static = None
            if load is None:  # nothing loads the outputs: each inverter's own unloaded root
                unloaded = self.surface.unloaded_pair(column)
                start = static = (unloaded[:, : column.shape[1]], unloaded[:, column.shape[1] :])
            elif cache is not None and every_known and cache.holds(index):
                start = (np.empty_like(column), np.empty_like(column))  # all overwritten
                cache.guess(slots, index, column, *start)
            else:
                static = (act.inverting(column), act.noninverting(column))
                start = static
                if cache is not None:
                    start = (static[0].copy(), static[1].copy())
                    cache.guess(slots, index, column, *start)
            try:
                solution = newton_layer(self.surface, column, *start, load, self.settings, index)
            except SolverError:
                if start is static:
                    raise
                static = (act.inverting(column), act.noninverting(column))
                solution = newton_layer(self.surface, column, *static, load, self.settings, index)
            self.iterations.append(solution.iterations)
            states.append(SolverState(solution.lin, load, solution.factor))
            layers.append(LayerState(rows, column, solution.outn, solution.outp))
            if load is not None:
                loaded[index] = (layers[-1], solution.lin)
            v_pos, v_neg = solution.outp, solution.outn
            load = self._load(conductances, index + 1)
        if cache is not None:
            cache.store(keys, slots, loaded)
        return ForwardTrace(tuple(layers), tuple(conductances), tuple(states))

    def backward(self, trace: ForwardTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂G`` per layer (loss units per S) by implicit differentiation.

        Args:
            trace: a forward trace of this evaluator (voltages at the solution).
            grad_output: ``∂L/∂outp`` of the last layer, ``(B, n_classes)`` (1/V).
            grad_column: further ``∂L/∂column`` of the last layer (1/V), or None.
        """
        last = len(trace.conductances) - 1
        conductances = trace.conductances
        grads = [np.zeros_like(np.asarray(g, dtype=np.float64)) for g in conductances]
        grad_n = np.zeros_like(grad_output)
        grad_p = np.asarray(grad_output, dtype=np.float64)
        for index in range(len(conductances) - 1, -1, -1):
            state = trace.layers[index]
            solved = trace.solver_state[index] if len(trace.solver_state) == len(trace.layers) else None
            if isinstance(solved, SolverState):
                lin, load, factor = solved.lin, solved.load, solved.factor
            else:
                load = self._load(conductances, index)
                lin = residual(self.surface, state.column, state.outn, state.outp, load)[2]
                factor = None
            if factor is None:
                factor = factor_jacobian(lin, load)
            lam_n, lam_p = factor.solve(grad_n, grad_p, transpose=True)
            if load is not None:
                grads[index + 1] += self._load_vjp(conductances[index + 1], trace.layers[index + 1],
                                                   lam_n, lam_p, load)
            grad_col = -lam_n * lin.i1_in
            if index == last and grad_column is not None:
                grad_col = grad_col + grad_column
            grad_g, grad_rows = column_vjp(conductances[index], state.rows, state.column, grad_col)
            grads[index] += grad_g
            n = (grad_rows.shape[1] - 2) // 2
            grad_p, grad_n = grad_rows[:, :n], grad_rows[:, n : 2 * n]
        return grads

    @staticmethod
    def _load_vjp(g_next: np.ndarray, next_state: LayerState, lam_n: np.ndarray, lam_p: np.ndarray,
                  load: Load) -> np.ndarray:
        """``−λᵀ ∂F/∂G_next`` at fixed outputs: the loading term of the next layer's gradient,
        shaped like ``g_next`` (the load knows its crossbar's layout)."""
        return load.conductance_vjp(lam_n, lam_p, next_state.rows, next_state.column)
