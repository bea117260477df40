"""Network evaluators: conductances + input voltages → every node voltage, and back.

An evaluator is a strategy chosen by name. ``"static"`` is the PHAX model: each column is the
conductance-weighted mean of its row voltages (rows as ideal sources) and each neuron's two
outputs are the calibration's tanh fits of its column voltage. A later ``"coupled"`` evaluator
(inverter outputs loaded by the next crossbar, solved by Newton and differentiated implicitly)
plugs in through the same two methods, :meth:`forward` and :meth:`backward`, because they work
on whole-network conductances rather than on one layer's activation.

Wiring comes from :mod:`memspice.circuit.wiring` only: layer 0 rows are ``ip = +x``,
``in = −x``; later layers take ``ip ← outp`` and ``in ← outn`` of the previous layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from memspice.circuit.wiring import input_rows, row_voltages
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, TanhActivation


@dataclass(frozen=True, slots=True)
class LayerState:
    """Voltages of one layer for a batch (all in V).

    Attributes:
        rows: ``(B, 2N+2)`` row voltages in wiring order.
        column: ``(B, M)`` column (summing node) voltages.
        outn: ``(B, M)`` inverted outputs (after inverter 1).
        outp: ``(B, M)`` non-inverted outputs (after inverter 2).
    """

    rows: np.ndarray
    column: np.ndarray
    outn: np.ndarray
    outp: np.ndarray


@dataclass(frozen=True, slots=True)
class ForwardTrace:
    """Everything :meth:`NetworkEvaluator.backward` needs, plus the per-layer voltages."""

    layers: tuple[LayerState, ...]
    conductances: tuple[np.ndarray, ...]
    #: Evaluator-specific state at the solution, one entry per layer, that the same evaluator's
    #: backward pass may reuse (the coupled evaluator keeps each layer's Jacobian); empty if none.
    solver_state: tuple[object, ...] = ()

    @property
    def output(self) -> np.ndarray:
        """Network output: the last layer's ``outp`` (V), shape ``(B, n_classes)``."""
        return self.layers[-1].outp


class NetworkEvaluator(Protocol):
    """Strategy that evaluates a crossbar network and its vector-Jacobian product."""

    name: str

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> ForwardTrace:
        """Evaluate the network on input voltages ``x`` of shape ``(B, n_inputs)`` (V)."""
        ...

    def backward(self, trace: ForwardTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        """Gradients w.r.t. each layer's conductance matrix (1/S), given ``∂L/∂output`` (1/V).

        ``grad_column`` (1/V), when given, is a further ``∂L/∂column`` of the last layer, for
        losses of the output neurons' logits (see :mod:`memspice.train.losses`).
        """
        ...


def _tanh_slope_from_output(act: TanhActivation, out: np.ndarray) -> np.ndarray:
    """``dV_out/dV_in`` from the output itself (saves recomputing the tanh)."""
    t = (out - act.c1) / act.c2
    return (act.c2 * act.c4) * (1.0 - t * t)


class StaticEvaluator:
    """PHAX static model: ideal row sources, one fitted tanh per inverter output.

    Args:
        calibration: supplies rails (V) and the neuron activation fits.
    """

    name = "static"

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self._inv = calibration.activation.inverting
        self._non = calibration.activation.noninverting
        self._vdd = calibration.rails.vdd
        self._vss = calibration.rails.vss

    def forward(self, conductances: Sequence[np.ndarray], x: np.ndarray) -> ForwardTrace:
        v_pos, v_neg = input_rows(x)
        layers = []
        for g in conductances:
            rows = row_voltages(v_pos, v_neg, self._vdd, self._vss)
            if rows.shape[1] != g.shape[1]:
                raise ConfigError(
                    f"layer with {g.shape[1]} rows fed {rows.shape[1]} row voltages"
                )
            weights = g / g.sum(axis=1, keepdims=True)
            column = rows @ weights.T
            outn = self._inv(column)
            outp = self._non(column)
            layers.append(LayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        return ForwardTrace(tuple(layers), tuple(conductances))

    def backward(self, trace: ForwardTrace, grad_output: np.ndarray,
                 grad_column: np.ndarray | None = None) -> list[np.ndarray]:
        grads: list[np.ndarray] = [np.empty(0)] * len(trace.layers)
        grad_outp = grad_output
        grad_outn: np.ndarray | None = None
        for index in range(len(trace.layers) - 1, -1, -1):
            state = trace.layers[index]
            g = trace.conductances[index]
            total = g.sum(axis=1)
            delta = grad_outp * _tanh_slope_from_output(self._non, state.outp)
            if grad_outn is not None:
                delta = delta + grad_outn * _tanh_slope_from_output(self._inv, state.outn)
            elif grad_column is not None:
                delta = delta + grad_column
            # V_j = Σ_k G_jk R_k / S_j  ⇒  ∂V_j/∂G_jk = (R_k − V_j)/S_j.
            grads[index] = (
                delta.T @ state.rows - (delta * state.column).sum(axis=0)[:, None]
            ) / total[:, None]
            if index > 0:
                grad_rows = delta @ (g / total[:, None])
                n = (g.shape[1] - 2) // 2
                grad_outp = grad_rows[:, :n]
                grad_outn = grad_rows[:, n : 2 * n]
        return grads


#: Registry of evaluators by name; later calibration modes add theirs here.
EVALUATORS: dict[str, Callable[[Calibration], NetworkEvaluator]] = {"static": StaticEvaluator}


def _register_calibration_modes() -> None:
    """Add ``load-aware`` and ``coupled``; imported late because both import this module."""
    if "coupled" in EVALUATORS:
        return
    from memspice.train.coupled import CoupledEvaluator
    from memspice.train.load_aware import LoadAwareEvaluator

    EVALUATORS.setdefault(LoadAwareEvaluator.name, LoadAwareEvaluator)
    EVALUATORS.setdefault(CoupledEvaluator.name, CoupledEvaluator)


def make_evaluator(name: str, calibration: Calibration) -> NetworkEvaluator:
    """Build the evaluator called ``name`` (``static``, ``load-aware``, ``coupled``).

    Raises:
        ConfigError: unknown evaluator name, or a calibration lacking the model it needs.
    """
    _register_calibration_modes()
    try:
        factory = EVALUATORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown network evaluator {name!r}; choose one of {sorted(EVALUATORS)}"
        ) from None
    return factory(calibration)
