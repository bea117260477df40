"""Hybrid training: freeze the ex-situ layers, fine-tune the last one on the circuit's outputs.

As memristor-CNN hardware work does on real arrays, SPICE stands in for the chip: the
training samples are simulated, the last hidden layer's ``outp``/``outn`` are read back, and
only the last layer's θ is trained with those voltages as its rows (:class:`LastLayerModel`).
In the circuit the last crossbar also *loads* those hidden outputs, so reprogramming it moves
them; the procedure therefore iterates simulate → fit → re-simulate and reports, per
iteration, how far the hidden outputs moved, the training accuracy the model expected on the
old outputs versus what SPICE then gave, and the number of samples simulated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, TanhActivation
from memspice.io import write_text_atomic
from memspice.tech.technology import Technology
from memspice.train.coupled import column_vjp, column_voltages
from memspice.train.losses import Loss, accuracy
from memspice.train.mapping import ConductanceWindow, theta_to_conductance, theta_to_conductance_vjp
from memspice.train.network_io import TrainedNetwork
from memspice.train.trainer import TrainConfig, train
from memspice.validate.api import RunSettings, ValidationReport, validate_network

HYBRID_CSV = "hybrid.csv"


class LastLayerModel:
    """The output layer alone, fed measured hidden outputs: a trainer ``Trainable``.

    Inputs are ``(B, 2M)`` voltages ``[outp | outn]`` of the last hidden layer (V); the rows
    are those plus the bias rails, in wiring order. The output layer drives nothing, so its
    outputs depend on its columns only: the coupled mode solves ``I(c, outn) = 0`` and
    ``I(outn, outp) = 0`` with the calibration's current model; ``static`` uses the tanh fit;
    ``load-aware`` the tanh at the lightest characterized load (as its evaluator does).

    Args:
        calibration: rails, window and the mode's model.
        shape: ``(n_classes, 2M+2)`` of the output crossbar.
        mode: ``static``, ``load-aware`` or ``coupled``.
    """

    def __init__(self, calibration: Calibration, shape: tuple[int, int], mode: str = "coupled") -> None:
        self.calibration = calibration
        self.shape = shape
        self.mode = mode
        self.window = ConductanceWindow(calibration.device.g_min_siemens, calibration.device.g_max_siemens)
        self._vdd, self._vss = calibration.rails.vdd, calibration.rails.vss
        self._surface: Any = None
        self._tanh: TanhActivation | None = None
        if mode == "coupled":
            from memspice.train.coupled_solve import CurrentSurface

            if calibration.inverter_current is None:
                raise ConfigError("coupled last-layer training needs an inverter current model")
            self._surface = CurrentSurface(calibration.inverter_current)
        elif mode == "static":
            self._tanh = calibration.activation.noninverting
        elif mode == "load-aware":
            if calibration.load_aware is None:
                raise ConfigError("load-aware last-layer training needs a load-aware model")
            model = calibration.load_aware.noninverting
            self._tanh = model.at(model.g_load_min_siemens)
        else:
            raise ConfigError(f"unknown mode {mode!r}; choose static, load-aware or coupled")

    @property
    def output_range(self) -> tuple[float, float]:
        """``(vss, vdd)`` (V)."""
        return self._vss, self._vdd

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random θ ``(n_classes, 2M+2)`` (hybrid training normally starts from given θ)."""
        return [-3.0 + rng.standard_normal(self.shape)]

    def _rows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1] + 2 != self.shape[1]:
            raise ConfigError(f"the output layer takes {self.shape[1] - 2} hidden voltages, got {x.shape[1]}")
        bias = np.broadcast_to([self._vdd, self._vss], (x.shape[0], 2))
        return np.concatenate([x, bias], axis=1)

    def _outputs(self, column: np.ndarray) -> tuple[np.ndarray, Any]:
        if self._tanh is not None:
            return self._tanh(column), None
        from memspice.train.coupled_solve import NewtonSettings, residual, solve_layer

        act = self.calibration.activation
        outn, outp, _ = solve_layer(self._surface, column, act.inverting(column), act.noninverting(column),
                                    None, NewtonSettings())
        return outp, residual(self._surface, column, outn, outp, None)[2]

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        g = theta_to_conductance(params[0], self.window)
        return self._outputs(column_voltages(g, self._rows(x)))[0]

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray, loss: Loss,
                      rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        """Loss and ``∂loss/∂θ`` of the output layer."""
        from memspice.train.coupled_solve import jacobian_solve

        g = theta_to_conductance(params[0], self.window)
        rows = self._rows(x)
        column = column_voltages(g, rows)
        out, lin = self._outputs(column)
        value, grad_out = loss.value_and_grad(out, labels, *self.output_range)
        if lin is None:
            assert self._tanh is not None
            grad_column = grad_out * self._tanh.derivative(column)
        else:
            lam_n, _ = jacobian_solve(lin, None, np.zeros_like(grad_out), grad_out, transpose=True)
            grad_column = -lam_n * lin.i1_in
        grad_g, _ = column_vjp(g, rows, column, grad_column)
        return value, [theta_to_conductance_vjp(params[0], self.window, grad_g)]


@dataclass
class HybridResult:
    """Outcome of :func:`hybrid_train`.

    Attributes:
        iterations: one row per iteration: training-set SPICE accuracy before the fit, the
            model's accuracy on those SPICE rows after the fit, how far the hidden outputs
            moved since the previous simulation (RMS, V), samples simulated so far.
        network: the network with the re-fitted output layer.
        accuracy_before: SPICE accuracy on the validation set before (fraction).
        accuracy_after: SPICE accuracy on the validation set after (fraction).
        spice_samples: samples simulated in all (training sets + the two validations).
        seconds: wall time (s).
    """

    iterations: pd.DataFrame
    network: TrainedNetwork
    accuracy_before: float
    accuracy_after: float
    spice_samples: int
    seconds: float


def _simulate(network: TrainedNetwork, tech: Technology, x: np.ndarray, y: np.ndarray, out_dir: Path,
              sizing: InverterSizing, settings: RunSettings, mode: str) -> ValidationReport:
    run = dataclasses.replace(settings, resume=True, force=False)
    report = validate_network(network, tech, x, y, out_dir, sizing=sizing, settings=run, evaluator=mode,
                              write_files=False)
    if report.comparison is None or not report.complete:
        raise ConfigError(f"SPICE simulation in {out_dir} did not finish ({len(report.failures)} failed batches)")
    return report


def hybrid_train(network: TrainedNetwork, tech: Technology, x_train: np.ndarray, y_train: np.ndarray,
                 x_val: np.ndarray, y_val: np.ndarray, out_dir: Path, *, sizing: InverterSizing = InverterSizing(),
                 mode: str = "coupled", iterations: int = 3,
                 config: TrainConfig = TrainConfig(epochs=30, batch_size=32, lr=0.01, loss="bce",
                                                   val_fraction=0.0, progress=False),
                 settings: RunSettings = RunSettings(batch_size=250),
                 log: Callable[[str], None] | None = None) -> HybridResult:
    """Fine-tune only the output layer against SPICE's hidden-layer outputs.

    Args:
        network: the ex-situ trained network (its hidden layers stay as they are).
        tech: technology of the circuit ("the chip").
        x_train: ``(n, N)`` training inputs (V) simulated every iteration (a subset is enough).
        y_train: ``(n,)`` labels.
        x_val: ``(S, N)`` validation inputs (V) simulated before and after.
        y_val: ``(S,)`` labels.
        out_dir: run directory; SPICE batches are reused when re-run with the same inputs.
        sizing: inverter sizes (m).
        mode: model of the output layer (``coupled`` is exact for an unloaded layer).
        iterations: simulate → fit rounds.
        config: training of the output layer per iteration (cheap: one layer, fixed inputs).
        settings: SPICE batching and parallelism.
        log: optional ``callable(message)``.

    Raises:
        ConfigError: a network without hidden layers, or fewer than one iteration.
    """
    if len(network.topology) < 3:
        raise ConfigError("hybrid training needs at least one hidden layer to freeze")
    if iterations < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    say = log or (lambda message: None)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    x_train, y_train = np.asarray(x_train, dtype=np.float64), np.asarray(y_train, dtype=np.int64)
    before = _simulate(network, tech, x_val, y_val, out_dir / "val_before", sizing, settings, mode)
    assert before.comparison is not None
    simulated = len(x_val)
    model = LastLayerModel(network.calibration, network.conductances[-1].shape, mode)
    theta = np.clip(network.thetas()[-1], -20.0, 20.0)
    rows: list[dict[str, Any]] = []
    previous: np.ndarray | None = None
    current = network
    for k in range(1, iterations + 1):
        sim = _simulate(current, tech, x_train, y_train, out_dir / f"iter{k}", sizing, settings, mode)
        simulated += len(x_train)
        order = np.argsort(sim.sample_index)
        hidden = sim.spice[-2]
        h = np.concatenate([hidden.outp, hidden.outn], axis=1)[order]
        moved = float(np.sqrt(np.mean((h - previous) ** 2))) if previous is not None else float("nan")
        previous = h
        spice_acc = float(sim.comparison.spice_accuracy) if sim.comparison is not None else float("nan")
        result = train(model, h, y_train[sim.sample_index[order]], config, initial_params=[theta])
        theta = result.params[0]
        expected = accuracy(model.predict([theta], h), y_train[sim.sample_index[order]])
        g_last = theta_to_conductance(theta, model.window)
        current = dataclasses.replace(current, conductances=(*current.conductances[:-1], g_last),
                                      metadata={**current.metadata, "hybrid_iterations": k})
        rows.append({"iteration": k, "train_spice_accuracy_before_fit": spice_acc,
                     "train_model_accuracy_after_fit": expected, "hidden_moved_rms_v": moved,
                     "spice_samples": simulated})
        say(f"hybrid iteration {k}: train SPICE acc {spice_acc:.4f} → model on SPICE rows {expected:.4f}; "
            f"hidden outputs moved {1e3 * moved:.3g} mV RMS")
    after = _simulate(current, tech, x_val, y_val, out_dir / "val_after", sizing, settings, mode)
    assert after.comparison is not None
    simulated += len(x_val)
    table = pd.DataFrame(rows)
    write_text_atomic(out_dir / HYBRID_CSV, table.to_csv(index=False))
    return HybridResult(table, current, float(before.comparison.spice_accuracy),
                        float(after.comparison.spice_accuracy), simulated, time.perf_counter() - t0)
