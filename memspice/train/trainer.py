"""The training loop: mini-batch Adam/SGD or full-batch L-BFGS/CG, validation split, early
stopping, atomic checkpoints with resume, a progress bar, and a saved history (CSV + PNG).

Randomness is derived from the seed only, by purpose and epoch
(``default_rng([seed, purpose, epoch])``), so a resumed run repeats the uninterrupted one
exactly without storing generator state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from memspice.errors import ConfigError
from memspice.io import write_atomic, write_text_atomic
from memspice.train.losses import (
    LOSS_LINKS,
    LOSS_NAMES,
    Loss,
    LossLink,
    LossName,
    accuracy,
    distillation_targets,
)
from memspice.train.optim import (
    FULL_BATCH,
    OPTIMIZER_NAMES,
    OptimizerName,
    ParameterAverage,
    clip_global_norm,
    make_optimizer,
    minimize_full_batch,
)
from memspice.train.schedule import (
    ScheduleName,
    check_schedule,
    epoch_learning_rate,
    warmup_factor,
)

CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_CSV = "history.csv"
HISTORY_PNG = "history.png"

# Purposes mixed into the seed so each random stream is independent and reproducible.
_SPLIT, _INIT, _EPOCH, _NOISE = 1, 2, 3, 4


class Trainable(Protocol):
    """What the trainer needs from a model (see :mod:`memspice.train.model`)."""

    output_range: tuple[float, float]

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]: ...

    def predict(self, params: list[np.ndarray], x: np.ndarray) -> np.ndarray: ...

    def loss_and_grad(self, params: list[np.ndarray], x: np.ndarray, labels: np.ndarray,
                      loss: Loss, rng: np.random.Generator | None = None,
                      ) -> tuple[float, list[np.ndarray]]: ...


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training settings.

    Attributes:
        epochs: passes over the training set (iterations for full-batch methods).
        batch_size: samples per mini-batch step.
        lr: learning rate (θ units per step for the constrained network).
        lr_decay: multiplicative learning-rate factor applied after every epoch (``exponential``
            schedule only).
        schedule: ``exponential`` (``lr_decay`` per epoch) or ``cosine`` (half a cosine from
            ``lr`` to ``lr · lr_floor_fraction`` over the epochs after the warm-up); see
            :mod:`memspice.train.schedule`. Mini-batch optimizers only.
        warmup_epochs: epochs over which the learning rate rises linearly, step by step, to
            ``lr`` before the decay starts (0 = none).
        lr_floor_fraction: where the cosine ends, as a fraction of ``lr``, in [0, 1).
        grad_clip_norm: 0 (off) or the largest joint L2 norm of a mini-batch gradient (over all
            parameter arrays, in loss units per parameter unit); longer ones are scaled down.
        optimizer: ``adam``, ``sgd``, ``lbfgs`` or ``cg``.
        loss: ``bce``, ``mse`` or ``softmax_ce``.
        loss_link: ``output`` (the loss sees the rescaled outputs, PHAX) or ``logit`` (it sees
            the output neurons' logits, which keeps a saturated output neuron trainable; see
            :mod:`memspice.train.losses`). The model needs ``predict_logits`` for ``logit``.
        logit_temperature: divides the logits before the loss (``logit`` link only; > 0).
        average_decay: 0 (off) or ``d`` in (0, 1): evaluate, select and return an exponential
            moving average of the parameters over optimizer steps (mini-batch optimizers
            only); it averages over the last ~``1/(1 − d)`` steps. The history's
            ``train_loss`` stays that of the steps; its accuracies and ``val_loss`` are the
            average's.
        distill_weight: 0 (off) or the share of a teacher's soft targets in the targets the
            optimizer steps on, in (0, 1] (knowledge distillation; :func:`train` needs
            ``teacher``, see :func:`~memspice.train.losses.distillation_targets`). Validation
            and the choice of epoch use the labels alone.
        distill_temperature: divides the teacher's logits before they become probabilities
            (> 0; above 1 softer targets).
        input_noise_std: 0 (off) or the standard deviation (in input units, V for the
            circuit) of Gaussian noise added afresh to every mini-batch's inputs before the
            step (noise injection, a regularizer; mini-batch optimizers only). Its draws come
            from their own seeded stream, so the shuffles and variation draws do not change.
            Training accuracy, validation and the choice of epoch see the clean inputs.
        seed: seeds the split, the initialization, the shuffles and the noise draws.
        val_fraction: share of the training data held out for validation (0 = none).
        patience: stop after this many epochs without a better validation loss (0 = never).
        progress: show a tqdm progress bar.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.02
    lr_decay: float = 1.0
    schedule: ScheduleName = "exponential"
    warmup_epochs: int = 0
    lr_floor_fraction: float = 0.0
    grad_clip_norm: float = 0.0
    optimizer: OptimizerName = "adam"
    loss: LossName = "bce"
    loss_link: LossLink = "output"
    logit_temperature: float = 1.0
    average_decay: float = 0.0
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    input_noise_std: float = 0.0
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of {list(OPTIMIZER_NAMES)}"
            )
        if self.loss not in LOSS_NAMES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {list(LOSS_NAMES)}")
        if self.loss_link not in LOSS_LINKS:
            raise ConfigError(
                f"unknown loss link {self.loss_link!r}; choose one of {list(LOSS_LINKS)}"
            )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not (np.isfinite(self.logit_temperature) and self.logit_temperature > 0):
            raise ConfigError(
                f"logit_temperature must be positive and finite, got {self.logit_temperature}"
            )
        if self.logit_temperature != 1.0 and self.loss_link != "logit":
            raise ConfigError("logit_temperature needs loss_link='logit'")
        if not 0 <= self.average_decay < 1:
            raise ConfigError(f"average_decay must be 0 (off) or in (0, 1), got {self.average_decay}")
        if self.average_decay and self.optimizer in FULL_BATCH:
            raise ConfigError(f"average_decay needs a mini-batch optimizer, not {self.optimizer!r}")
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if not (np.isfinite(self.distill_temperature) and self.distill_temperature > 0):
            raise ConfigError(
                f"distill_temperature must be positive and finite, got {self.distill_temperature}")
        if not (np.isfinite(self.input_noise_std) and self.input_noise_std >= 0):
            raise ConfigError(
                f"input_noise_std must be 0 (off) or positive, got {self.input_noise_std}")
        if self.input_noise_std and self.optimizer in FULL_BATCH:
            raise ConfigError(f"input_noise_std needs a mini-batch optimizer, not {self.optimizer!r}")
        if self.patience < 0:
            raise ConfigError(f"patience must be non-negative, got {self.patience}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        self._check_schedule()

    def _check_schedule(self) -> None:
        check_schedule(self.schedule, self.epochs, self.lr_decay, self.warmup_epochs,
                       self.lr_floor_fraction)
        if not (np.isfinite(self.grad_clip_norm) and self.grad_clip_norm >= 0):
            raise ConfigError(
                f"grad_clip_norm must be 0 (off) or positive, got {self.grad_clip_norm}")
        uses_steps = (self.schedule != "exponential" or self.warmup_epochs
                      or self.grad_clip_norm)
        if uses_steps and self.optimizer in FULL_BATCH:
            raise ConfigError("schedule, warmup_epochs and grad_clip_norm need a mini-batch "
                              f"optimizer, not {self.optimizer!r}")


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        params: best parameters (lowest validation loss; the last ones without validation),
            averaged ones when ``average_decay`` is set.
        history: one row per epoch (loss, accuracy, seconds, learning rate).
        best_epoch: epoch the returned parameters come from (1-based).
        stopped_early: whether early stopping ended the run.
    """

    params: list[np.ndarray]
    history: pd.DataFrame
    best_epoch: int
    stopped_early: bool = False
    files: dict[str, Path] = field(default_factory=dict)


def split_validation(
    n_samples: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of sample indices into (train, validation)."""
    order = np.random.default_rng([seed, _SPLIT]).permutation(n_samples)
    n_val = int(round(fraction * n_samples))
    if fraction > 0 and (n_val < 1 or n_val >= n_samples):
        raise ConfigError(f"validation fraction {fraction} of {n_samples} samples is unusable")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, p in enumerate(state["params"]):
        arrays[f"param{i}"] = p
    for i, p in enumerate(state["best_params"]):
        arrays[f"best{i}"] = p
    for key, value in state["optimizer"].items():
        arrays[f"opt_{key}"] = value
    for key, value in state["average"].items():
        arrays[f"avg_{key}"] = value
    meta = {k: state[k] for k in ("epoch", "best_epoch", "best_val", "lr", "history",
                                  "config", "n_params", "bad_epochs")}
    arrays["meta"] = np.array(json.dumps(meta))

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    write_atomic(path, writer)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        n = meta["n_params"]
        state = dict(meta)
        state["params"] = [np.array(data[f"param{i}"]) for i in range(n)]
        state["best_params"] = [np.array(data[f"best{i}"]) for i in range(n)]
        state["optimizer"] = {k[4:]: np.array(data[k]) for k in data.files if k.startswith("opt_")}
        state["average"] = {k[4:]: np.array(data[k]) for k in data.files if k.startswith("avg_")}
    return state


def save_history(history: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write the history as CSV and as a PNG plot (matplotlib imported here, lazily)."""
    out_dir = Path(out_dir)
    csv_path = write_text_atomic(out_dir / HISTORY_CSV, history.to_csv(index=False))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for column in ("train_loss", "val_loss"):
        if column in history and history[column].notna().any():
            ax_loss.plot(history["epoch"], history[column], label=column)
    for column in ("train_accuracy", "val_accuracy"):
        if column in history and history[column].notna().any():
            ax_acc.plot(history["epoch"], 100 * history[column], label=column)
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png_path = write_atomic(out_dir / HISTORY_PNG, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return {"history_csv": csv_path, "history_png": png_path}


def train(
    model: Trainable,
    x: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig = TrainConfig(),
    out_dir: Path | None = None,
    resume: bool = False,
    initial_params: list[np.ndarray] | None = None,
    augment: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    teacher: Callable[[np.ndarray], np.ndarray] | None = None,
) -> TrainResult:
    """Train ``model`` on input voltages ``x`` ``(n, n_inputs)`` and integer ``labels``.

    Args:
        model: a :class:`~memspice.train.model.PhaxNetwork` or
            :class:`~memspice.train.model.TanhMLP`.
        x: inputs (V for the circuit).
        labels: ``(n,)`` class indices.
        config: training settings.
        out_dir: where checkpoints and the history go (nothing is written when None).
        resume: continue from ``out_dir/checkpoint.npz`` when it exists.
        initial_params: start here instead of a seeded random initialization (fine-tuning).
        augment: maps the training part ``(x, labels)`` (after the validation split) to the
            samples the optimizer steps through, e.g. with shifted copies of images
            (:func:`memspice.datasets.shift_images`); the validation part is never augmented and
            the epoch's training accuracy is scored on the unaugmented part.
        teacher: maps inputs ``(n, n_inputs)`` to a teacher's logits ``(n, C)`` (e.g. the
            trained float baseline's ``predict_logits``); with ``config.distill_weight`` the
            optimizer steps on :func:`~memspice.train.losses.distillation_targets` of the
            samples it steps through (augmented ones included), computed once.

    Returns:
        The best parameters and the history.
    """
    if out_dir is None and resume:
        raise ConfigError("resume needs an output directory holding a checkpoint")
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != labels.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"inputs {x.shape} and labels {labels.shape} do not match")
    loss = Loss(config.loss, link=config.loss_link, temperature=config.logit_temperature)
    if loss.link == "logit" and not callable(getattr(model, "predict_logits", None)):
        raise ConfigError(f"{type(model).__name__} has no logits; use loss_link='output'")
    train_idx, val_idx = split_validation(len(x), config.val_fraction, config.seed)
    x_train, y_train = x[train_idx], labels[train_idx]
    x_val, y_val = x[val_idx], labels[val_idx]
    x_steps, y_steps = (x_train, y_train) if augment is None else augment(x_train, y_train)
    if config.distill_weight:
        if teacher is None:
            raise ConfigError("distill_weight needs a teacher (the logits of a trained network)")
        y_steps = distillation_targets(teacher(x_steps), y_steps, config.loss, config.distill_weight,
                                       config.distill_temperature)
    if initial_params is not None:
        params = [np.array(p, dtype=np.float64) for p in initial_params]
    else:
        params = model.init_params(np.random.default_rng([config.seed, _INIT]))
    full_batch = config.optimizer in FULL_BATCH
    optimizer = None if full_batch else make_optimizer(config.optimizer, config.lr)
    average = ParameterAverage(config.average_decay) if config.average_decay else None
    state: dict[str, Any] = {
        "params": params, "best_params": [p.copy() for p in params], "optimizer": {},
        "average": {},
        "epoch": 0, "best_epoch": 0, "best_val": None, "lr": config.lr, "history": [],
        "config": asdict(config), "n_params": len(params), "bad_epochs": 0,
    }
    checkpoint = None if out_dir is None else Path(out_dir) / CHECKPOINT_NAME
    if resume and checkpoint is not None and checkpoint.exists():
        loaded = _load_checkpoint(checkpoint)
        if [p.shape for p in loaded["params"]] != [p.shape for p in params]:
            raise ConfigError(f"checkpoint {checkpoint} belongs to a network of another shape")
        state.update(loaded)
        if optimizer is not None and state["optimizer"]:
            optimizer.load_state_dict(state["optimizer"])
            optimizer.lr = state["lr"]
        if average is not None and state["average"]:
            average.load_state_dict(state["average"])

    stopped = False

    def end_epoch(epoch: int, train_loss: float, seconds: float, current: list[np.ndarray],
                  lr_used: float) -> bool:
        lo, hi = model.output_range
        state["params"] = current
        if average is not None:
            state["average"] = average.state_dict()
            current = average.value()
        out_train = model.predict(current, x_train)
        row = {"epoch": epoch, "train_loss": train_loss,
               "train_accuracy": accuracy(out_train, y_train),
               "val_loss": np.nan, "val_accuracy": np.nan, "seconds": seconds, "lr": lr_used}
        improved = True
        if len(x_val):
            out_val = model.predict(current, x_val)
            if loss.link == "logit":
                row["val_loss"] = loss.logit_value_and_grad(
                    model.predict_logits(current, x_val), y_val)[0]  # type: ignore[attr-defined]
            else:
                row["val_loss"] = loss.value_and_grad(out_val, y_val, lo, hi)[0]
            row["val_accuracy"] = accuracy(out_val, y_val)
            improved = state["best_val"] is None or row["val_loss"] < state["best_val"]
        state["history"].append(row)
        state["epoch"] = epoch
        if improved:
            state["best_val"] = row["val_loss"] if len(x_val) else None
            state["best_epoch"] = epoch
            state["best_params"] = [p.copy() for p in current]
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        if checkpoint is not None:
            _save_checkpoint(checkpoint, state)
        return config.patience > 0 and state["bad_epochs"] >= config.patience

    from tqdm.auto import tqdm

    start_epoch = state["epoch"] + 1
    bar = tqdm(total=config.epochs, initial=state["epoch"], disable=not config.progress,
               desc="train", unit="epoch", leave=False)
    try:
        if start_epoch <= config.epochs and config.patience and state["bad_epochs"] >= config.patience:
            stopped = True
        elif full_batch and start_epoch <= config.epochs:
            clock = [time.perf_counter()]

            def objective(p: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
                return model.loss_and_grad(p, x_steps, y_steps, loss, None)

            def callback(iteration: int, current: list[np.ndarray]) -> bool:
                now = time.perf_counter()
                value = objective(current)[0]
                stop = end_epoch(state["epoch"] + 1, value, now - clock[0], current, np.nan)
                clock[0] = time.perf_counter()
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4g}")
                return stop or state["epoch"] >= config.epochs

            before = state["epoch"]
            minimize_full_batch(objective, state["params"], config.optimizer,
                                config.epochs - before, callback)
            stopped = config.patience > 0 and state["bad_epochs"] >= config.patience
        else:
            assert optimizer is not None
            for epoch in range(start_epoch, config.epochs + 1):
                rng = np.random.default_rng([config.seed, _EPOCH, epoch])
                order = rng.permutation(len(x_steps))
                noise_rng = np.random.default_rng([config.seed, _NOISE, epoch])
                current = state["params"]
                epoch_lr = epoch_learning_rate(
                    config.lr, epoch, config.epochs, config.schedule, config.lr_decay,
                    config.warmup_epochs, config.lr_floor_fraction)
                steps = -(-len(order) // config.batch_size)
                t0 = time.perf_counter()
                total, count = 0.0, 0
                for step, start in enumerate(range(0, len(order), config.batch_size)):
                    batch = order[start : start + config.batch_size]
                    x_batch = x_steps[batch]
                    if config.input_noise_std:
                        x_batch = x_batch + noise_rng.normal(0.0, config.input_noise_std,
                                                             x_batch.shape)
                    value, grads = model.loss_and_grad(
                        current, x_batch, y_steps[batch], loss, rng
                    )
                    if config.grad_clip_norm:
                        grads = clip_global_norm(grads, config.grad_clip_norm)
                    optimizer.lr = epoch_lr * warmup_factor(epoch, step, steps,
                                                            config.warmup_epochs)
                    optimizer.step(current, grads)
                    if average is not None:
                        average.update(current)
                    total += value * len(batch)
                    count += len(batch)
                seconds = time.perf_counter() - t0
                lr_used = optimizer.lr  # the epoch's last (largest, during warm-up) step size
                state["lr"] = lr_used
                stop = end_epoch(epoch, total / count, seconds, current, lr_used)
                bar.update(1)
                bar.set_postfix(loss=f"{total / count:.4g}",
                                val=f"{state['history'][-1]['val_accuracy']:.3f}")
                if stop:
                    stopped = True
                    break
    finally:
        bar.close()
    history = pd.DataFrame(state["history"], columns=[
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "lr"])
    files: dict[str, Path] = {}
    if out_dir is not None:
        files = save_history(history, Path(out_dir))
        if checkpoint is not None and checkpoint.exists():
            files["checkpoint"] = checkpoint
    if len(x_val):
        chosen = state["best_params"]
    elif average is not None and average.t:
        chosen = average.value()
    else:
        chosen = state["params"]
    return TrainResult([np.array(p) for p in chosen], history,
                       state["best_epoch"] if len(x_val) else state["epoch"], stopped, files)
