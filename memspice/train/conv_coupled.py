"""``coupled`` evaluator for layer-described networks (dense, conv, pooled, masked).

The circuit is the one :mod:`memspice.network.wiring` describes, device by device: every conv
output position is a neuron with its own column, pools are folded into the next layer's
devices, zero padding is a device to a 0 V row. The model is :mod:`memspice.train.coupled`'s:
each inverter is the calibration's bicubic current surface, devices are linear conductances,
a column feeds only a gate, and a neuron's outputs are loaded by every device of the next
layer they drive (``k²·C_out`` windows' worth for a conv map, fewer at its edges, ``P²``
devices of ``σ/P²`` each through a folded pool). Padding devices load the next *column*
(they are in its ``Σ G``) but no neuron.

Per crossbar layer the per-device conductances ``G`` ``(M, D)`` are summed into the layer's
row-to-column matrix ``Gᵀ`` ``(M, 2S + 3)`` (the transpose of
:func:`~memspice.network.wiring.row_column_conductance`, parallel devices summed), rows in
the row-source order ``[p…, n…, VDD, VSS, 0 V]``. Seen from the layer before, that matrix is
a :class:`~memspice.train.coupled_solve.Load`: ``p_p``/``p_n`` are its ``p``/``n`` blocks,
``bias`` the rail rows' current, ``total`` every device's conductance including the 0 V
row's. Each loaded layer is then solved by nonlinear elimination through its next columns
(:func:`~memspice.train.conv_solve.solve_eliminated`; or, with ``solver="newton"``, by
:func:`~memspice.train.coupled_solve.newton_layer`: batched damped Newton, Woodbury on
``D + Pᵀ diag(1/S) P`` with ``K`` = next columns, after a block-Jacobi warm start), the
unloaded output layer by the layer Newton, and each is differentiated implicitly as in
:mod:`memspice.train.coupled`. The gradient of a device is
the gradient of its row-column entry (devices in parallel share it); weight sharing and pool
folding are then undone by :func:`~memspice.network.wiring.theta_gradient`
(``∂L/∂σ_t = Σ scale·∂L/∂G`` over every position and folded device of θ ``t``).

For a dense network without masks the matrices are today's conductance matrices plus an
empty 0 V row, and the results equal :class:`~memspice.train.coupled.CoupledEvaluator`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.wiring import CrossbarWiring, theta_gradient
from memspice.train import conv_solve
from memspice.train.conv_solve import MergedLoad, solve_eliminated
from memspice.train.coupled_solve import (
    CurrentSurface,
    JacobianFactor,
    Load,
    NewtonSettings,
    SolverError,
    SparseLoad,
    factor_jacobian,
    newton_layer,
    residual,
)
from memspice.train.load_aware import _tanh, activation_parameters


#: Warm start: at most this many block-Jacobi sweeps, each with this many scalar Newton
#: steps per output, stopping once no ``outp`` moved more than the tolerance (V). Tighter
#: costs more sweeps than the Newton iterations it saves.
_WARM_SWEEPS = 60
_WARM_INNER = 1
_WARM_TOL_V = 1e-6


@dataclass(frozen=True, slots=True)
class DeviceLayerState:
    """Voltages of one crossbar layer of the per-device circuit (V).

    Attributes:
        rows: ``(B, 2S + 3)`` row-source voltages ``[p…, n…, VDD, VSS, 0]``.
        column: ``(B, n_columns)`` column voltages, physical column order ``(c, row, col)``.
        outn: ``(B, n_columns)`` inverted outputs.
        outp: ``(B, n_columns)`` non-inverted outputs.
    """

    rows: np.ndarray
    column: np.ndarray
    outn: np.ndarray
    outp: np.ndarray


@dataclass(frozen=True, slots=True)
class DeviceTrace:
    """Per-layer voltages, the per-device conductances and the row-column matrices used."""

    layers: tuple[DeviceLayerState, ...]
    devices: tuple[np.ndarray, ...]
    matrices: tuple[np.ndarray, ...]

    @property
    def output(self) -> np.ndarray:
        """Last layer's ``outp`` (V), ``(B, n_classes)``."""
        return self.layers[-1].outp


def row_column_matrix(wiring: CrossbarWiring, devices: np.ndarray) -> np.ndarray:
    """Dense ``(n_columns, 2S + 3)`` conductance from each row source to each column (S).

    The transpose of :func:`~memspice.network.wiring.row_column_conductance`, as a dense
    array; devices in parallel (same row, same column: padding taps on the 0 V row,
    overlapping pool windows) are summed, absent devices count 0.
    """
    g = np.where(wiring.present, np.asarray(devices, dtype=np.float64), 0.0)
    m, width = g.shape[0], wiring.n_row_sources
    flat = (np.arange(m)[:, None] * width + wiring.source).ravel()
    return np.bincount(flat, weights=g.ravel(), minlength=m * width).reshape(m, width)


def device_matrices(wirings: Sequence[CrossbarWiring], devices: Sequence[np.ndarray], x: np.ndarray
                    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Checked inputs ``(B, S₀)`` (V) and every layer's :func:`row_column_matrix` (S).

    Raises:
        ConfigError: wrong number of conductance arrays, or inputs of the wrong shape.
    """
    if len(devices) != len(wirings):
        raise ConfigError(f"{len(devices)} conductance arrays for {len(wirings)} crossbar layers")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != wirings[0].plan.n_sources:
        raise ConfigError(f"network takes {wirings[0].plan.n_sources} inputs per sample, got an "
                          f"array of shape {x.shape}")
    return x, tuple(row_column_matrix(w, g) for w, g in zip(wirings, devices))


#: A load is made a :class:`SparseLoad` when its widest column reads at most this fraction of
#: the neurons (below it the gathered capacitance product beats the dense one).
_SPARSE_FRACTION = 0.5

#: The layer solvers :class:`LayeredCoupledEvaluator` offers.
SOLVERS = ("elimination", "newton")

#: Samples solved together: a loaded layer's Newton holds a ``K × K`` matrix per sample, so
#: large evaluations (a whole training set) go in chunks; each sample's solution is its own.
_SOLVE_CHUNK = 256


def load_of(matrix: np.ndarray, vdd: float, vss: float, sparse: bool | None = None) -> Load:
    """The next layer's row-column matrix ``(K, 2S + 3)`` (S) seen from its ``S`` sources.

    The 0 V row carries no current into any column at 0 V, so it appears in ``total`` only.

    Args:
        sparse: a :class:`SparseLoad` (True), a dense :class:`Load` (False), or (None) sparse
            when every next column reads at most half the neurons (a conv layer's load).
    """
    s = (matrix.shape[1] - 3) // 2
    p_n, p_p = matrix[:, s : 2 * s], matrix[:, :s]
    if sparse is None:
        reads = ((p_n != 0) | (p_p != 0)).sum(axis=1)
        sparse = s > 0 and int(reads.max(initial=0)) <= _SPARSE_FRACTION * s
    kind = SparseLoad if sparse else Load
    return kind(p_n, p_p, matrix[:, 2 * s] * vdd + matrix[:, 2 * s + 1] * vss, matrix.sum(axis=1))


def _column_vjp(matrix: np.ndarray, rows: np.ndarray, column: np.ndarray,
                grad_column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward of ``c = R·Gᵀᵀ/S``: ``(∂L/∂Gᵀ (1/S), ∂L/∂R (1/V))``."""
    total = matrix.sum(axis=1)
    grad_g = (grad_column.T @ rows - (grad_column * column).sum(axis=0)[:, None]) / total[:, None]
    return grad_g, grad_column @ (matrix / total[:, None])


def _load_vjp(matrix: np.ndarray, state: DeviceLayerState, lam_n: np.ndarray,
              lam_p: np.ndarray) -> np.ndarray:
    """``−λᵀ ∂F/∂Gᵀ_next`` at fixed outputs: the loading term of the next layer's gradient.

    ``Σ_b (λ_r + ω_m)(R_r − c_m)`` with ``λ`` on the neuron rows (0 on VDD, VSS and 0 V) and
    ``ω_m = −Σ_r Gᵀ[m, r] λ_r / S_m``.
    """
    batch = lam_n.shape[0]
    lam_rows = np.concatenate([lam_p, lam_n, np.zeros((batch, 3))], axis=1)
    omega = -(lam_rows @ matrix.T) / matrix.sum(axis=1)  # (B, K)
    rows, column = state.rows, state.column
    return ((lam_rows * rows).sum(axis=0)[None, :] - column.T @ lam_rows
            + omega.T @ rows - (omega * column).sum(axis=0)[:, None])


class LayeredCoupledEvaluator:
    """Inverter outputs of every conv position and dense neuron loaded by the devices they
    drive, solved like SPICE's DC operating point and differentiated implicitly.

    Args:
        calibration: needs ``inverter_current``; its static ``activation`` gives Newton's
            starting point.
        wirings: per crossbar layer, its :class:`~memspice.network.wiring.CrossbarWiring`
            (:func:`~memspice.network.wiring.network_wiring` of the spec).
        settings: Newton tolerance (V), iteration cap and damping.
        sparse_loads: how each layer's load is held by the ``"newton"`` solver (see
            :func:`load_of`): None picks sparse loads for layers whose next columns read few
            neurons; True or False forces one kind (the results agree to round-off).
        solver: ``"elimination"`` (:func:`~memspice.train.conv_solve.solve_eliminated`:
            Newton on the next columns with every neuron solved exactly; compiled, so without
            numba the other runs, and a chunk it fails on is solved again by the other) or
            ``"newton"`` (a block-Jacobi warm start, then damped Newton on the outputs). Both
            solve the same equations to the same tolerance.

    Raises:
        ConfigError: the calibration has no inverter current model.

    Attributes:
        iterations: Newton iterations each layer took in the last forward pass.
        fallbacks: chunks of loaded layers the elimination solver failed on (solved by the
            layer Newton instead) since the evaluator was made.
    """

    name = "coupled"

    def __init__(self, calibration: Calibration, wirings: Sequence[CrossbarWiring],
                 settings: NewtonSettings = NewtonSettings(),
                 sparse_loads: bool | None = None, solver: str = "elimination") -> None:
        if solver not in SOLVERS:
            raise ConfigError(f"unknown coupled solver {solver!r}; use one of {', '.join(SOLVERS)}")
        if calibration.inverter_current is None:
            raise ConfigError(
                "the coupled evaluator needs a calibration with an inverter current model "
                "(memspice.characterize.calibrate.calibrate produces one)"
            )
        self.calibration = calibration
        self.wirings = tuple(wirings)
        self.settings = settings
        self.sparse_loads = sparse_loads
        self.solver = solver
        # the last load built per layer, with the matrix it was built from: the backward
        # pass of a trace reuses its forward pass's loads
        self._loads: dict[int, tuple[np.ndarray, bool | None, Load]] = {}
        self._merged: dict[int, tuple[np.ndarray, MergedLoad]] = {}
        # the last forward solve's GMRES preconditioner per layer, with its load's matrix: an
        # approximate inverse, so any one serves a backward pass on that matrix
        self._preconditioners: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self.surface = CurrentSurface(calibration.inverter_current)
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss
        self.iterations: list[int] = []
        self.fallbacks = 0

    # ---- per θ (what CrossbarNetwork trains) -------------------------------------------

    def device_conductances(self, sigmas: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-device conductances ``(n_columns, D)`` from σ per θ (S), 0 where absent."""
        return [w.conductances(s) for w, s in zip(self.wirings, sigmas)]

    def forward(self, sigmas: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """Solve every layer for σ per θ (``plan.theta_shape``, S) and flat inputs ``x`` (V)."""
        return self.forward_devices(self.device_conductances(sigmas), x)

    def backward(self, trace: DeviceTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂σ`` per θ (1/S): summed over positions (shared kernels) and folded devices."""
        grads = self.backward_devices(trace, grad_output, grad_column)
        return [theta_gradient(w, g) for w, g in zip(self.wirings, grads)]

    # ---- per device ----------------------------------------------------------------------

    def forward_devices(self, devices: Sequence[np.ndarray], x: np.ndarray) -> DeviceTrace:
        """Solve every layer for per-device conductances (S) and flat inputs ``x`` ``(B, S₀)``.

        Raises:
            ConfigError: wrong number of layers or inputs.
            SolverError: Newton failed for some samples (their indices are in the error).
        """
        x, matrices = device_matrices(self.wirings, devices, x)
        v_pos, v_neg = x, -x
        layers = []
        self.iterations = []
        for index, (wiring, matrix) in enumerate(zip(self.wirings, matrices)):
            rows = wiring.row_source_voltages(v_pos, v_neg, self._vdd, self._vss)
            column = rows @ (matrix / matrix.sum(axis=1, keepdims=True)).T
            outn, outp = np.empty_like(column), np.empty_like(column)
            iterations = 0
            for start in range(0, len(column), _SOLVE_CHUNK):
                part = slice(start, start + _SOLVE_CHUNK)
                outn[part], outp[part], taken = self._solve(column[part], matrices, index)
                iterations = max(iterations, taken)
            self.iterations.append(iterations)
            layers.append(DeviceLayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return DeviceTrace(tuple(layers), tuple(np.asarray(g) for g in devices), matrices)

    def _solve(self, column: np.ndarray, matrices: Sequence[np.ndarray], index: int
               ) -> tuple[np.ndarray, np.ndarray, int]:
        """One layer's ``(outn, outp, iterations)`` for column voltages ``column`` (V)."""
        if index + 1 >= len(matrices):
            # nothing loads the outputs: each inverter's tabulated unloaded root is within
            # about a microvolt of the solution (2 Newton iterations, not ~15)
            outn = self.surface.unloaded_output(column)
            outp = self.surface.unloaded_output(outn)
            solution = newton_layer(self.surface, column, outn, outp, None, self.settings, index)
            return solution.outn, solution.outp, solution.iterations
        act = self.calibration.activation
        outn, outp = act.inverting(column), act.noninverting(column)
        if self._eliminates():
            merged = self._merged_load(matrices, index)
            try:
                solved = solve_eliminated(self.surface, column, *self._start(column, merged),
                                          merged, self.settings, index)
                self._preconditioners[index] = (matrices[index + 1], solved.preconditioner)
                return solved.outn, solved.outp, solved.iterations
            except SolverError:
                self.fallbacks += 1  # the block-Jacobi start and Newton on the outputs decide
        load = self._load(matrices, index)
        outn, outp = self._warm_start(column, outn, outp, load)
        solution = newton_layer(self.surface, column, outn, outp, load, self.settings, index)
        return solution.outn, solution.outp, solution.iterations

    def _warm_start(self, column: np.ndarray, outn: np.ndarray, outp: np.ndarray, load: Load
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Newton's starting point under a heavy load: nonlinear block Jacobi.

        A conv neuron drives tens of devices, so the static fits start Newton far from the
        loaded solution and its 50 mV step limit costs many iterations, each a ``K × K``
        Woodbury solve per sample. Here each neuron is solved alone, the next columns
        ``c'`` held fixed (a scalar monotone equation per output: one damped Newton step per
        sweep), then ``c'`` is updated; a sweep costs ``O(B·nnz(P))`` and on MNIST-sized conv
        maps shrinks the error by about 0.7. The result only seeds
        :func:`~memspice.train.coupled_solve.solve_layer`, which converges to its own
        tolerance from there, so the solution does not depend on this step.
        """
        lo, hi = self.surface.v_lo, self.surface.v_hi
        outn = np.clip(outn, lo, hi)
        outp = np.clip(outp, lo, hi)
        b_n, b_p = load.p_n.sum(axis=0), load.p_p.sum(axis=0)
        limit = self.settings.max_step_v
        for _ in range(_WARM_SWEEPS):
            c_next = load.next_columns(outn, outp)
            inject_n, inject_p = c_next @ load.p_n, c_next @ load.p_p
            before = outp.copy()
            for _ in range(_WARM_INNER):
                i, _, i_out = self.surface(column, outn)
                step = -(i - b_n * outn + inject_n) / (i_out - b_n)
                outn = np.clip(outn + np.clip(step, -limit, limit), lo, hi)
            for _ in range(_WARM_INNER):
                i, _, i_out = self.surface(outn, outp)
                step = -(i - b_p * outp + inject_p) / (i_out - b_p)
                outp = np.clip(outp + np.clip(step, -limit, limit), lo, hi)
            if np.abs(outp - before).max() < _WARM_TOL_V:
                break
        return outn, outp

    def _start(self, column: np.ndarray, load: MergedLoad) -> tuple[np.ndarray, np.ndarray]:
        """The elimination's start: each neuron's load-aware tanh at its own load when the
        calibration has one (on MNIST conv layers about 3× closer to the solution than the
        static fits, which saves an iteration on the dense layer), else the static fits."""
        model = self.calibration.load_aware
        if model is None:
            act = self.calibration.activation
            return act.inverting(column), act.noninverting(column)
        m = column.shape[1]
        outn = _tanh(activation_parameters(model.inverting, load.b[:m])[0], column)[0]
        outp = _tanh(activation_parameters(model.noninverting, load.b[m:])[0], column)[0]
        return outn, outp

    def _merged_load(self, matrices: Sequence[np.ndarray], index: int) -> MergedLoad:
        matrix = matrices[index + 1]
        cached = self._merged.get(index)
        if cached is not None and cached[0] is matrix:
            return cached[1]
        load = MergedLoad.of(matrix, self._vdd, self._vss,
                             like=None if cached is None else cached[1])
        self._merged[index] = (matrix, load)
        return load

    def _eliminates(self) -> bool:
        """Whether loaded layers take the elimination solver."""
        return self.solver == "elimination" and conv_solve.available(self.surface)

    def _jacobian(self, column: np.ndarray, outn: np.ndarray, outp: np.ndarray,
                  matrices: Sequence[np.ndarray], index: int
                  ) -> tuple[np.ndarray, JacobianFactor]:
        """Layer ``index``'s Jacobian at the given outputs: ``(∂I₁/∂c (S), factor)``."""
        if index + 1 < len(matrices) and self._eliminates():
            cached = self._preconditioners.get(index)
            preconditioner = cached[1] if cached is not None and cached[0] is matrices[index + 1] else None
            return conv_solve.jacobian(self.surface, column, outn, outp,
                                       self._merged_load(matrices, index), preconditioner, index)
        lin = residual(self.surface, column, outn, outp, self._load(matrices, index))[2]
        return lin.i1_in, factor_jacobian(lin, self._load(matrices, index))

    def _load(self, matrices: Sequence[np.ndarray], index: int) -> Load | None:
        if index + 1 >= len(matrices):
            return None
        matrix = matrices[index + 1]
        cached = self._loads.get(index)
        if cached is not None and cached[0] is matrix and cached[1] is self.sparse_loads:
            return cached[2]
        load = load_of(matrix, self._vdd, self._vss, self.sparse_loads)
        self._loads[index] = (matrix, self.sparse_loads, load)
        return load

    def backward_devices(self, trace: DeviceTrace, grad_output: np.ndarray,
                         grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """``∂L/∂G`` per device ``(n_columns, D)`` (1/S; 0 on absent devices).

        Args:
            trace: a forward trace of this evaluator.
            grad_output: ``∂L/∂outp`` of the last layer, ``(B, n_classes)`` (1/V).
            grad_column: further ``∂L/∂column`` of the last layer (1/V), or None.
        """
        matrices = trace.matrices
        last = len(matrices) - 1
        grads = [np.zeros_like(m) for m in matrices]
        grad_p = np.asarray(grad_output, dtype=np.float64)
        grad_n = np.zeros_like(grad_p)
        for index in range(last, -1, -1):
            state = trace.layers[index]
            lam_n, lam_p = np.empty_like(grad_n), np.empty_like(grad_p)
            grad_col = np.empty_like(grad_n)
            for start in range(0, len(grad_n), _SOLVE_CHUNK):
                part = slice(start, start + _SOLVE_CHUNK)
                i1_in, factor = self._jacobian(state.column[part], state.outn[part],
                                               state.outp[part], matrices, index)
                lam_n[part], lam_p[part] = factor.solve(grad_n[part], grad_p[part], transpose=True)
                grad_col[part] = -lam_n[part] * i1_in
            if index < last:
                grads[index + 1] += _load_vjp(matrices[index + 1], trace.layers[index + 1],
                                              lam_n, lam_p)
            if index == last and grad_column is not None:
                grad_col = grad_col + grad_column
            grad_g, grad_rows = _column_vjp(matrices[index], state.rows, state.column, grad_col)
            grads[index] += grad_g
            s = self.wirings[index].plan.n_sources
            grad_p, grad_n = grad_rows[:, :s], grad_rows[:, s : 2 * s]
        # A device's conductance enters only through its row-column entry.
        out = []
        for wiring, grad in zip(self.wirings, grads):
            per_device = np.take_along_axis(grad, wiring.source, axis=1)
            out.append(np.where(wiring.present, per_device, 0.0))
        return out
