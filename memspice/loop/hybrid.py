"""Hybrid training: freeze the ex-situ layers, fine-tune the last one on the circuit's outputs.

As memristor-CNN hardware work does on real arrays, SPICE stands in for the chip: the
training samples are simulated, the last hidden layer's ``outp``/``outn`` are read back, and
only the last layer's θ is trained with those voltages as its rows (:class:`LastLayerModel`).
In the circuit the last crossbar also *loads* those hidden outputs, so reprogramming it moves
them; the procedure therefore iterates simulate → fit → re-simulate and reports, per
iteration, how far the hidden outputs moved, the training accuracy the model expected on the
old outputs versus what SPICE then gave, and the number of samples simulated.

:func:`hybrid_train_layered` is the whole procedure of the memristor-CNN work for any layered
network (dense, conv, pooled) whose last crossbar layer is dense: the ex-situ network is
*transferred* to hardware (every physical device programmed on its own: levels, programming
variation, stuck devices, :mod:`memspice.train.layered_devices`), a small fraction of the
training images is simulated through that circuit, only the last layer's θ is retrained on
the circuit's own inputs to it (:class:`DeviceLastLayerModel`: its devices, levels and stuck
devices as they are), the new last layer is programmed again as hardware, and the test images
are simulated before and after.
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
from memspice.network.wiring import CrossbarWiring, network_wiring, theta_gradient
from memspice.safe_io import dumps_strict
from memspice.sim import SimOptions
from memspice.train.conv_coupled import row_column_matrix
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.coupled import column_vjp, column_voltages
from memspice.train.hardware import FaultMap
from memspice.train.layered_devices import DeviceSettings, device_trace, device_window, draw_devices, program_layer
from memspice.train.losses import Loss, accuracy
from memspice.train.mapping import (
    ConductanceWindow,
    conductance_to_theta,
    quantize_conductance,
    theta_to_conductance,
    theta_to_conductance_vjp,
)
from memspice.train.network_io import TrainedNetwork
from memspice.train.trainer import TrainConfig, train
from memspice.validate.api import RunSettings, ValidationReport, validate_network

HYBRID_CSV = "hybrid.csv"
HYBRID_JSON = "hybrid.json"
#: Seed-002-like hardware: 8 levels per device (15 signed levels per differential pair) and a
#: 10 % lognormal programming spread.
DEFAULT_TRANSFER = DeviceSettings(levels=8, variation_sigma=0.1)
#: Loss of the last layer's retraining in :func:`hybrid_train_layered`: softmax cross-entropy
#: on the output logits (chosen on a validation split of the training images: on the two-conv
#: MNIST CNN it recovered 0.76–0.83 of the transfer loss where ``bce`` recovered 0.50–0.62).
DEFAULT_RETRAIN_LOSS = "softmax_ce"
#: Learning rate of that retraining (Adam, cosine schedule, 30 epochs per round, batch 32).
DEFAULT_RETRAIN_LR = 0.01
#: Simulate → fit → program rounds of :func:`hybrid_train_layered`. The retrained layer loads
#: the hidden neurons it reads, so their outputs move once it is programmed; fitting again on
#: what the circuit then gives (from the current θ) compensates that.
#: Chosen on the validation split of the two-conv MNIST CNN (coupled model, 3 programming
#: seeds): 3 rounds at lr 0.01 (cosine) recovered 0.85–0.86 of the transfer loss, one round
#: at lr 0.003 0.67–0.80 (``docs/hybrid-cnn.md``).
DEFAULT_RETRAIN_ITERATIONS = 3
#: The retraining of one round.
DEFAULT_RETRAIN = TrainConfig(epochs=30, batch_size=32, lr=DEFAULT_RETRAIN_LR, schedule="cosine",
                              loss=DEFAULT_RETRAIN_LOSS, loss_link="logit", val_fraction=0.0, progress=False)
#: Largest share of the training images hybrid training may simulate (the memristor-CNN
#: work retrains its last layer on 10 % of them).
MAX_DATA_FRACTION = 0.1
#: Second element of the generator seeds of the training subset and of the re-programmed
#: last layer: ``[seed, HYBRID_STREAM]`` and ``[seed, HYBRID_STREAM, iteration]``.
HYBRID_STREAM = 11


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

    def _column(self, params: Sequence[np.ndarray], x: np.ndarray
                ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Column voltages ``(B, n_classes)`` (V) and the pull-back ``∂L/∂column → ∂L/∂θ``."""
        theta = params[0]
        g = theta_to_conductance(theta, self.window)
        rows = self._rows(x)
        column = column_voltages(g, rows)

        def vjp(grad_column: np.ndarray) -> np.ndarray:
            grad_g, _ = column_vjp(g, rows, column, grad_column)
            return theta_to_conductance_vjp(theta, self.window, grad_g)

        return column, vjp

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        return self._outputs(self._column(params, x)[0])[0]

    @property
    def logit_gain(self) -> float:
        """``2·c4·sign(c2)`` of the output neuron's static fit (1/V), as the full models use."""
        act = self.calibration.activation.noninverting
        return 2.0 * act.c4 * float(np.sign(act.c2))

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """Output logits ``2·c4·sign(c2)·(column − c3)`` (the ``logit`` loss link)."""
        column = self._column(params, x)[0]
        return self.logit_gain * (column - self.calibration.activation.noninverting.c3)

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray, loss: Loss,
                      rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        """Loss and ``∂loss/∂θ`` of the output layer (either loss link)."""
        from memspice.train.coupled_solve import jacobian_solve

        column, vjp = self._column(params, x)
        if loss.link == "logit":
            logits = self.logit_gain * (column - self.calibration.activation.noninverting.c3)
            value, grad_z = loss.logit_value_and_grad(logits, labels)
            return value, [vjp(grad_z * self.logit_gain)]
        out, lin = self._outputs(column)
        value, grad_out = loss.value_and_grad(out, labels, *self.output_range)
        if lin is None:
            assert self._tanh is not None
            grad_column = grad_out * self._tanh.derivative(column)
        else:
            lam_n, _ = jacobian_solve(lin, None, np.zeros_like(grad_out), grad_out, transpose=True)
            grad_column = -lam_n * lin.i1_in
        return value, [vjp(grad_column)]


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


class DeviceLastLayerModel(LastLayerModel):
    """The last (dense) crossbar layer of a layered network, device by device, fed measured
    inputs: a trainer ``Trainable``.

    Inputs are ``(B, 2S)`` voltages ``[outp | outn]`` of the ``S`` neurons driving the layer
    (flat in C order: a pooled conv map's neurons, pooling folded into this layer's devices).
    θ has the layer's ``plan.theta_shape``; each device is ``scale·q(σ(θ))`` with ``q`` the
    rounding to ``levels`` (straight-through in the backward pass), and a stuck device sits
    at the top or bottom of its window whatever θ says (no gradient reaches it). The output
    neurons are :class:`LastLayerModel`'s.

    Args:
        calibration: rails, window and the mode's model.
        wiring: the layer's wiring (sources, θ index, scale, present devices).
        levels: conductance levels per device (0 = continuous).
        stuck_high: ``(n_columns, D)`` devices stuck at the top of their window, or None.
        stuck_low: ``(n_columns, D)`` devices stuck at the bottom, or None.
        mode: ``static``, ``load-aware`` or ``coupled``.

    Raises:
        ConfigError: a layer that is not dense (one column per output), or an unknown mode.
    """

    def __init__(self, calibration: Calibration, wiring: CrossbarWiring, levels: int = 0,
                 stuck_high: np.ndarray | None = None, stuck_low: np.ndarray | None = None,
                 mode: str = "coupled") -> None:
        if wiring.plan.positions != 1:
            raise ConfigError(f"the last layer must be dense to retrain it alone, not {wiring.plan.kind}")
        super().__init__(calibration, wiring.plan.theta_shape, mode)
        self.wiring = wiring
        self.levels = int(levels)
        shape = wiring.present.shape
        high = np.zeros(shape, dtype=bool) if stuck_high is None else np.asarray(stuck_high, dtype=bool)
        low = np.zeros(shape, dtype=bool) if stuck_low is None else np.asarray(stuck_low, dtype=bool)
        lo, hi = device_window(wiring, self.window)
        self._stuck = (high | low) & wiring.present
        self._stuck_value = np.where(high, hi, lo)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        s = self.wiring.plan.n_sources
        if x.ndim != 2 or x.shape[1] != 2 * s:
            raise ConfigError(f"the output layer takes {2 * s} input voltages, got an array of shape {x.shape}")
        return self.wiring.row_source_voltages(x[:, :s], x[:, s:], self._vdd, self._vss)

    def devices(self, theta: np.ndarray) -> np.ndarray:
        """``(n_columns, D)`` device conductances for θ (S; 0 = absent), without variation."""
        sigma = quantize_conductance(theta_to_conductance(theta, self.window), self.window, self.levels)
        return np.where(self._stuck, self._stuck_value, self.wiring.conductances(sigma))

    def _column(self, params: Sequence[np.ndarray], x: np.ndarray
                ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        theta = params[0]
        wiring = self.wiring
        matrix = row_column_matrix(wiring, self.devices(theta))
        total = matrix.sum(axis=1)
        rows = self._rows(x)
        column = rows @ (matrix / total[:, None]).T

        def vjp(grad_column: np.ndarray) -> np.ndarray:
            # V_m = Σ_r M_mr R_r / Σ_r M_mr  ⇒  ∂V_m/∂M_mr = (R_r − V_m)/Σ_r M_mr
            grad_matrix = (grad_column.T @ rows - (grad_column * column).sum(axis=0)[:, None]) / total[:, None]
            per_device = np.take_along_axis(grad_matrix, wiring.source, axis=1)
            per_device = np.where(self._stuck | ~wiring.present, 0.0, per_device)
            return theta_to_conductance_vjp(theta, self.window, theta_gradient(wiring, per_device))

        return column, vjp


@dataclass
class LayeredHybridResult:
    """Outcome of :func:`hybrid_train_layered` (accuracies are fractions, in SPICE, on the
    same test images).

    Attributes:
        software: the ex-situ network with its ideal (target) devices.
        transfer: after transfer: every device programmed (levels, variation, faults).
        hybrid: after hybrid training, the retrained last layer programmed again.
        recovered_fraction: ``(hybrid − transfer)/(software − transfer)``; NaN when the
            transfer lost nothing.
        data_fraction: training images simulated / training images available.
        software_model: the model's accuracy with ideal devices (the ex-situ figure).
        iterations: per simulate → fit round: SPICE training accuracy before the fit, the
            model's accuracy on those SPICE inputs after it, SPICE training accuracy with the
            re-programmed layer (next round's "before", NaN for the last), how far the last
            layer's inputs moved (RMS, V), samples simulated so far.
        network: the network with the retrained last layer (σ before quantization).
        transfer_devices: per layer ``(n_columns, D)`` conductances after transfer (S).
        hybrid_devices: the same after hybrid training (only the last layer differs).
        settings: the transfer's levels, variation, fault rate and seed.
        train_samples: training images simulated per round.
        test_samples: test images simulated per evaluation.
        spice_samples: samples simulated in all.
        seconds: wall time (s).
    """

    software: float
    transfer: float
    hybrid: float
    recovered_fraction: float
    data_fraction: float
    software_model: float
    iterations: pd.DataFrame
    network: TrainedCrossbarNetwork
    transfer_devices: tuple[np.ndarray, ...]
    hybrid_devices: tuple[np.ndarray, ...]
    settings: DeviceSettings
    train_samples: int
    test_samples: int
    spice_samples: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-safe figures (NaN as None)."""
        def clean(value: float) -> float | None:
            return None if not np.isfinite(value) else float(value)

        rows = [{k: clean(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in self.iterations.to_dict(orient="records")]
        return {"software": self.software, "transfer": self.transfer, "hybrid": self.hybrid,
                "recovered_fraction": clean(self.recovered_fraction), "data_fraction": self.data_fraction,
                "software_model": self.software_model, "devices": self.settings.as_dict(),
                "train_samples": self.train_samples, "test_samples": self.test_samples,
                "spice_samples": self.spice_samples, "seconds": self.seconds, "iterations": rows}


def check_hybrid_inputs(network: TrainedCrossbarNetwork, devices: DeviceSettings, data_fraction: float,
                        iterations: int = 1) -> None:
    """Refuse what hybrid training of a layered network cannot take.

    Raises:
        ConfigError: levels below 2 (the hardware has finite levels), a data fraction outside
            (0, 0.1], fewer than one iteration, a network with one crossbar layer, one whose
            last crossbar layer is not dense, or one already programmed device by device.
    """
    if network.devices is not None:
        raise ConfigError("hybrid training transfers a network's shared conductances to new devices; this "
                          "network is already programmed device by device (network format version 3, "
                          "memspice train --per-replica): give the network it started from")
    if devices.levels < 2:
        raise ConfigError(f"hybrid training programs devices with finite levels: levels must be at least 2, "
                          f"got {devices.levels}")
    if not (np.isfinite(data_fraction) and 0 < data_fraction <= MAX_DATA_FRACTION):
        raise ConfigError(f"data fraction must be in (0, {MAX_DATA_FRACTION:g}], got {data_fraction!r}")
    if iterations < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    plans = network.spec.plans
    if len(plans) < 2:
        raise ConfigError("hybrid training needs at least two crossbar layers (one to freeze, one to retrain)")
    if plans[-1].kind != "dense":
        raise ConfigError(f"hybrid training retrains the last crossbar layer, which must be dense; this "
                          f"network's is {plans[-1].kind} (layer {plans[-1].index})")


def _spice_accuracy(layers: Sequence[Any], labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(layers[-1].outp, axis=1) == labels))


def hybrid_train_layered(network: TrainedCrossbarNetwork, tech: Technology, x_train: np.ndarray,
                         y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                         devices: DeviceSettings = DEFAULT_TRANSFER, faults: FaultMap | None = None,
                         data_fraction: float = MAX_DATA_FRACTION, sizing: InverterSizing = InverterSizing(),
                         mode: str = "coupled", iterations: int = DEFAULT_RETRAIN_ITERATIONS,
                         config: TrainConfig = DEFAULT_RETRAIN,
                         batch_size: int = 100, workers: int | None = None,
                         sim_options: SimOptions = SimOptions(), out_dir: Path | None = None,
                         software_accuracy: float | None = None, simulator: str = "spice",
                         log: Callable[[str], None] | None = None) -> LayeredHybridResult:
    """Transfer a layered network to hardware and retrain its last dense layer on the circuit.

    1. *software*: the test images through the circuit of the ideal devices (SPICE);
    2. *transfer*: every physical device programmed with ``devices`` (and ``faults``), the
       test images simulated again;
    3. ``data_fraction`` of the training images (a seeded random subset) simulated through the
       transferred circuit; the last layer's θ is retrained (from the ex-situ θ) on the
       circuit's own inputs to it, with the layer's levels and stuck devices, then that layer
       is programmed again (levels, a fresh variation draw, the same stuck devices); with
       ``iterations`` > 1 (default 3) the subset is simulated again through the new layer (it
       loads its inputs) and the fit repeated from the current θ;
    4. *hybrid*: the test images through the final circuit.

    Args:
        network: the ex-situ trained network; its last crossbar layer must be dense.
        tech: technology of the circuit ("the chip").
        x_train: ``(n, n_inputs)`` training inputs (V); only the subset is simulated.
        y_train: ``(n,)`` labels.
        x_test: ``(S, n_inputs)`` test inputs (V).
        y_test: ``(S,)`` labels.
        devices: levels (≥ 2), variation, fault rate and seed of the programming (the seed
            also picks the training subset).
        faults: known stuck devices per layer ``(n_columns, D)``, or None.
        data_fraction: share of the training images simulated, in (0, 0.1].
        sizing: inverter sizes (m).
        mode: model of the output neurons in the fit (``coupled`` is exact for them).
        iterations: simulate → fit rounds.
        config: training of the last layer per round, from the ex-situ θ (a small learning rate
            keeps it near them: 800 images do not pin down a whole dense layer).
        batch_size: samples per ngspice deck.
        workers: parallel ngspice processes (default: CPU count).
        sim_options: simulator options.
        out_dir: where ``hybrid.json``, ``hybrid.csv`` and the retrained network go (written at
            the end), or None.
        software_accuracy: the SPICE accuracy of this network's ideal devices on these test
            images from an earlier run (fraction), to skip simulating them again (e.g. for
            further programming seeds); None simulates them.
        simulator: ``spice`` (ngspice, "the chip") or ``model``: the coupled model
            (:func:`~memspice.train.layered_devices.device_trace`) stands in for SPICE in every
            step, a fast check of the procedure itself (no ngspice run).
        log: optional ``callable(message)``.

    Raises:
        ConfigError: see :func:`check_hybrid_inputs`; inputs that do not fit the network.
        SimError: a SPICE run failed.
    """
    from memspice.loop.layered_spice import simulate_devices
    from memspice.safe_io import check_output_dir

    check_hybrid_inputs(network, devices, data_fraction, iterations)
    if simulator not in ("spice", "model"):
        raise ConfigError(f"unknown simulator {simulator!r}; choose spice or model")
    if simulator == "model" and network.calibration.inverter_current is None:
        raise ConfigError("the model standing in for SPICE needs a calibration with an inverter current model")
    if out_dir is not None:
        check_output_dir(Path(out_dir), "output directory")
    say = log or (lambda message: None)
    t0 = time.perf_counter()
    x_train, y_train = np.asarray(x_train, dtype=np.float64), np.asarray(y_train, dtype=np.int64)
    x_test, y_test = np.asarray(x_test, dtype=np.float64), np.asarray(y_test, dtype=np.int64)
    for name, x, y in (("training", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 2 or x.shape[1] != network.spec.n_inputs or len(x) != len(y) or len(x) == 0:
            raise ConfigError(f"{name} inputs {x.shape} and labels {y.shape} do not fit a network of "
                              f"{network.spec.n_inputs} inputs")
    if software_accuracy is not None and not (np.isfinite(software_accuracy) and 0 <= software_accuracy <= 1):
        raise ConfigError(f"software accuracy must be a fraction in [0, 1], got {software_accuracy!r}")
    n_sub = max(1, int(round(data_fraction * len(x_train))))
    subset = np.sort(np.random.default_rng([devices.seed, HYBRID_STREAM]).permutation(len(x_train))[:n_sub])
    x_sub, y_sub = x_train[subset], y_train[subset]

    def spice(devs: Sequence[np.ndarray], x: np.ndarray) -> list[Any]:
        if simulator == "model":
            return list(device_trace(network, devs, x, "coupled").layers)
        return simulate_devices(network, devs, tech, sizing, x, batch_size=batch_size, workers=workers,
                                options=sim_options)

    # everything that can be refused is checked before the first simulation
    draw = draw_devices(network, devices, faults)
    wiring = network_wiring(network.spec)[-1]
    last = DeviceLastLayerModel(network.calibration, wiring, devices.levels, draw.stuck_high[-1],
                                draw.stuck_low[-1], mode)
    ideal = network.device_conductances()
    model_mode = "coupled" if network.calibration.inverter_current is not None else "static"
    software_model = accuracy(device_trace(network, ideal, x_test, model_mode).output, y_test)
    if software_accuracy is None:
        software = _spice_accuracy(spice(ideal, x_test), y_test)
        simulated = len(x_test)
    else:
        software, simulated = float(software_accuracy), 0
    say(f"software (ideal devices, {simulator}): {100 * software:.2f} %  (model {100 * software_model:.2f} %)")
    transfer = _spice_accuracy(spice(draw.conductances, x_test), y_test)
    say(f"after transfer ({devices.levels} levels, variation {devices.variation_sigma:g}, "
        f"{draw.n_stuck} stuck devices): {100 * transfer:.2f} %")
    simulated += len(x_test)

    theta = np.clip(conductance_to_theta(network.conductances[-1], network.window), -20.0, 20.0)
    current = list(draw.conductances)
    rows: list[dict[str, Any]] = []
    previous: np.ndarray | None = None
    sim = spice(current, x_sub)
    simulated += n_sub
    for k in range(1, iterations + 1):
        hidden = sim[-2]
        h = np.concatenate([hidden.outp, hidden.outn], axis=1)
        moved = float(np.sqrt(np.mean((h - previous) ** 2))) if previous is not None else float("nan")
        previous = h
        before = _spice_accuracy(sim, y_sub)
        theta = train(last, h, y_sub, config, initial_params=[theta]).params[0]
        expected = accuracy(last.predict([theta], h), y_sub)
        rng = np.random.default_rng([devices.seed, HYBRID_STREAM, k])
        current[-1] = program_layer(wiring, theta_to_conductance(theta, network.window), network.window,
                                    devices.levels, devices.variation_sigma, rng, draw.stuck_high[-1],
                                    draw.stuck_low[-1])
        after = float("nan")
        if k < iterations:
            sim = spice(current, x_sub)
            simulated += n_sub
            after = _spice_accuracy(sim, y_sub)
        rows.append({"iteration": k, "train_spice_accuracy_before_fit": before,
                     "train_model_accuracy_after_fit": expected, "train_spice_accuracy_after_fit": after,
                     "inputs_moved_rms_v": moved, "spice_samples": simulated})
        say(f"hybrid round {k}: {n_sub} training images, {simulator} {100 * before:.2f} % → fitted layer on "
            f"those inputs {100 * expected:.2f} %")
    hybrid = _spice_accuracy(spice(current, x_test), y_test)
    simulated += len(x_test)
    lost = software - transfer
    recovered = (hybrid - transfer) / lost if lost > 0 else float("nan")
    say(f"after hybrid training: {100 * hybrid:.2f} % (recovered {recovered:.2f} of the transfer loss)")
    retrained = dataclasses.replace(
        network, conductances=(*network.conductances[:-1], theta_to_conductance(theta, network.window)),
        metadata={**network.metadata, "hybrid": {"devices": devices.as_dict(), "data_fraction": n_sub / len(x_train)}})
    result = LayeredHybridResult(software, transfer, hybrid, recovered, n_sub / len(x_train), software_model,
                                 pd.DataFrame(rows), retrained, tuple(draw.conductances), tuple(current), devices,
                                 n_sub, len(x_test), simulated, time.perf_counter() - t0)
    if out_dir is not None:
        from memspice.train.conv_io import save_layered_network

        out = Path(out_dir)
        save_layered_network(retrained, out / "network")
        write_text_atomic(out / HYBRID_CSV, result.iterations.to_csv(index=False))
        write_text_atomic(out / HYBRID_JSON, dumps_strict(result.summary(), default=float) + "\n")
    return result
