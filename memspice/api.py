"""Thin entry points behind ``import memspice`` for notebooks and scripts.

Only :func:`train` is new code: the library's own trainer
(:func:`memspice.train.trainer.train`) takes a model object and returns raw parameters, so this
wrapper builds the PHAX network, trains it with the defaults of ``memspice run`` and returns the
conductances to program. Everything else ``memspice`` exports is re-exported as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memspice.errors import ConfigError

if TYPE_CHECKING:
    from memspice.fit.calibration import Calibration
    from memspice.train.hardware import HardwareConfig
    from memspice.train.network_io import TrainedNetwork
    from memspice.train.trainer import TrainConfig


def default_train_config(**changes: object) -> TrainConfig:
    """The training settings of ``memspice run`` (its ``[training]`` defaults), with ``changes``.

    Args:
        **changes: :class:`~memspice.train.trainer.TrainConfig` fields to override, for
            example ``epochs=5``.

    Returns:
        The settings: Adam, batches of 16, learning rate 0.04 on a half-cosine schedule, 20 mV of
        Gaussian noise on every mini-batch's inputs, binary cross-entropy on the output voltages,
        80 epochs, 10 % of the training samples held out for validation, seed 0. With a
        full-batch ``optimizer`` (lbfgs, cg) and no ``schedule`` or ``input_noise_std`` given,
        the exponential schedule (× 0.97 per epoch) and no noise; with an ``lr_decay`` and no
        ``schedule``, the exponential schedule: as in ``memspice run``.
    """
    from memspice.pipeline.config import TrainingConfig, training_defaults
    from memspice.train.trainer import TrainConfig

    unknown = sorted(set(changes) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}")
    given = {k: v for k, v in changes.items() if k in ("optimizer", "schedule", "input_noise_std", "lr_decay")}
    t = TrainingConfig(**training_defaults(given))
    settings = {
        "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.learning_rate, "optimizer": t.optimizer,
        "schedule": t.schedule, "input_noise_std": t.input_noise_std, "loss": t.loss, "loss_link": t.loss_link,
        "seed": t.seed, "val_fraction": 0.1, "progress": False,
    }
    settings["lr_decay"] = t.lr_decay if t.schedule == "exponential" else 1.0
    settings.update(changes)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def train(
    calibration: Calibration,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    hidden: Sequence[int] = (32,),
    n_classes: int | None = None,
    mode: str = "coupled",
    config: TrainConfig | None = None,
    hardware: HardwareConfig | None = None,
    init_theta_mean: float = -2.0,
    out_dir: Path | None = None,
    resume: bool = False,
) -> TrainedNetwork:
    """Train a PHAX-constrained crossbar network against a calibration.

    Args:
        calibration: from :func:`memspice.calibrate` or :func:`memspice.load_calibration`.
        x: ``(n, n_inputs)`` input voltages within the calibration's rails (V); see
            :func:`memspice.features_to_voltages`.
        labels: ``(n,)`` integer classes.
        hidden: hidden layer sizes; the topology is ``(n_inputs, *hidden, n_classes)``.
        n_classes: output neurons (default: ``labels.max() + 1``).
        mode: how the trainer models the circuit: ``static`` (PHAX's tanh under one load),
            ``load-aware`` or ``coupled`` (solves the circuit's DC equations; needs a
            calibration with an inverter current table, as :func:`memspice.calibrate` makes).
        config: training settings (default: :func:`default_train_config`, those of
            ``memspice run``).
        hardware: conductance levels and variation seen in training (default: the
            calibration's device levels, no variation).
        init_theta_mean: mean of the initial θ; negative starts most devices near g_min.
        out_dir: where the checkpoint and ``history.csv`` go (nothing is written when None).
        resume: continue from the checkpoint in ``out_dir``.

    Returns:
        The trained network: conductances per layer (S), the calibration, the mode, and in
        ``metadata`` the best epoch and its training and validation accuracies.

    Raises:
        ConfigError: inputs and labels that do not match, an unknown mode or setting, or a
            coupled mode without an inverter current table.
    """
    from memspice.train.evaluate import network_from_params
    from memspice.train.hardware import HardwareConfig
    from memspice.train.model import PhaxNetwork
    from memspice.train.trainer import train as run_trainer

    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.ndim != 1 or len(x) != len(labels) or len(x) == 0:
        raise ConfigError(f"inputs {x.shape} and labels {labels.shape} do not match: "
                          "expected (n, n_inputs) voltages and (n,) classes")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ConfigError("labels must be non-negative integers")
    classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if classes <= int(labels.max()):
        raise ConfigError(f"n_classes = {classes} but a label is {int(labels.max())}")
    if mode not in ("static", "load-aware", "coupled"):
        raise ConfigError(f"unknown mode {mode!r}; choose static, load-aware or coupled")
    if mode == "coupled" and calibration.inverter_current is None:
        raise ConfigError("mode 'coupled' needs a calibration with an inverter current table "
                          "(memspice.calibrate makes one); use mode='static' otherwise")
    topology = (x.shape[1], *(int(h) for h in hidden), classes)
    hardware = hardware or HardwareConfig(levels=calibration.device.levels)
    model = PhaxNetwork(calibration, topology, hardware, evaluator=mode, init_mean=init_theta_mean)
    settings = config or default_train_config()
    result = run_trainer(model, x, labels.astype(np.int64), settings,
                         out_dir=None if out_dir is None else Path(out_dir), resume=resume)
    best = result.history.iloc[result.best_epoch - 1] if result.best_epoch else result.history.iloc[-1]
    metadata = {
        "mode": mode,
        "best_epoch": int(result.best_epoch),
        "epochs_run": int(len(result.history)),
        "train_accuracy": float(best["train_accuracy"]),
    }
    if np.isfinite(best.get("val_accuracy", np.nan)):
        metadata["val_accuracy"] = float(best["val_accuracy"])
    return network_from_params(model, result.params, metadata)
