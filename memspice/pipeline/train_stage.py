"""Pipeline stage: train the hardware-constrained network and its float baseline."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import DeviceWindow, load_calibration
from memspice.safe_io import dumps_strict, write_text_atomic
from memspice.pipeline import data
from memspice.pipeline.stages import StageContext
from memspice.train.evaluate import network_from_params
from memspice.train.hardware import HardwareConfig
from memspice.train.losses import accuracy
from memspice.train.model import PhaxNetwork, TanhMLP
from memspice.train.network_io import save_network, verify_checkpoint
from memspice.train.schedule import epoch_learning_rate
from memspice.train.trainer import CHECKPOINT_NAME, TrainConfig, TrainResult, train

CALIBRATION_FILE = "calibration.json"
#: Share of the training samples held out to choose the epoch whose parameters are kept.
VALIDATION_FRACTION = 0.1


def topology(ctx: StageContext, n_features: int, n_classes: int) -> tuple[int, ...] | None:
    """The dense topology; None for a ``[network]`` with conv or pooling layers."""
    return ctx.config.topology(n_features, n_classes)


def baseline_settings(settings: TrainConfig, float_lr: float = 0.0) -> TrainConfig:
    """The float baseline's training settings, derived from the constrained network's.

    With the ``output`` link the baseline keeps its softmax cross-entropy of the rescaled
    outputs. With the ``logit`` link it takes the configured loss on its logits ``2a`` (its
    outputs are ``tanh(a)``, so BCE there is exactly BCE of its rescaled outputs, minus the clip).
    ``float_lr`` (0 = the constrained network's) is its own learning rate: the two models
    parameterize their weights differently, so one step size rarely suits both.
    """
    lr = float_lr or settings.lr
    if settings.loss_link == "logit":
        return dataclasses.replace(settings, lr=lr)
    return dataclasses.replace(settings, loss="softmax_ce", lr=lr)


def pretrain_phases(settings: TrainConfig, pretrain_epochs: int) -> tuple[TrainConfig, TrainConfig]:
    """``settings`` (``epochs`` in the final mode) cut into a pre-training phase of ``pretrain_epochs``
    and the final phase, which continues the exponential learning-rate schedule where the first left it.

    Each phase keeps its parameters of lowest validation loss; the second starts from the first's.
    """
    if settings.schedule != "exponential" or pretrain_epochs < 1:
        raise ConfigError("pre-training needs the exponential schedule and at least one epoch")
    total = pretrain_epochs + settings.epochs
    lr = epoch_learning_rate(settings.lr, pretrain_epochs + 1, total, settings.schedule, settings.lr_decay,
                             settings.warmup_epochs)
    return (dataclasses.replace(settings, epochs=pretrain_epochs),
            dataclasses.replace(settings, lr=lr, warmup_epochs=0))


def run_train(ctx: StageContext) -> dict[str, Any]:
    """Train the PHAX network against the calibration; train the float baseline alike.

    BLAS runs single-threaded here: the products are small (batch 16 × a few hundred inputs), so
    thread hand-off costs more than it saves (as in scripts/bench_train.py), and on a loaded
    2-core machine OpenBLAS's spinning threads made MNIST epochs ~6× slower (measured: 50
    coupled 196-100-10 steps 6.4 s with its default threads, 1.1 s with one, next to another
    CPU-bound process).
    """
    with single_threaded_blas():
        return _train(ctx)


def single_threaded_blas() -> Any:
    """A context in which NumPy's BLAS uses one thread (threadpoolctl comes with scikit-learn)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _train(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    out = ctx.stage_dir("train")
    calibration = load_calibration(ctx.run_dir / "calibrate" / CALIBRATION_FILE)
    window = DeviceWindow(cfg.device.g_min_us * 1e-6, cfg.device.g_max_us * 1e-6, cfg.device.levels)
    calibration = dataclasses.replace(calibration, device=window)
    train_set, test_set = data.split_dataset(cfg)
    rails = calibration.rails
    x_train, x_test = data.voltages(train_set, rails), data.voltages(test_set, rails)
    sizes = topology(ctx, train_set.n_features, train_set.n_classes)
    t = cfg.training
    settings = TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.learning_rate, optimizer=t.optimizer,  # type: ignore[arg-type]
                           loss=t.loss, loss_link=t.loss_link, logit_temperature=t.logit_temperature,  # type: ignore[arg-type]
                           average_decay=t.average_decay, distill_weight=t.distill_weight,
                           distill_temperature=t.distill_temperature, input_noise_std=t.input_noise_std,
                           seed=t.seed, val_fraction=VALIDATION_FRACTION,
                           lr_decay=t.lr_decay if t.schedule == "exponential" else 1.0,  # cosine ignores it
                           schedule=t.schedule, warmup_epochs=t.warmup_epochs,  # type: ignore[arg-type]
                           lr_floor_fraction=t.lr_floor_fraction, grad_clip_norm=t.grad_clip_norm,
                           progress=not ctx.quiet)  # type: ignore[arg-type]
    if ctx.fresh:  # a changed configuration or --force: earlier checkpoints belong to another run
        for name in ("pretrain", "constrained", "baseline"):
            (out / name / CHECKPOINT_NAME).unlink(missing_ok=True)
    for name in ("pretrain", "constrained", "baseline"):  # resuming: a damaged checkpoint stops here, named
        verify_checkpoint(out / name / CHECKPOINT_NAME)
    if sizes is None:
        return _train_layered(ctx, calibration, settings, train_set, test_set, x_train, x_test)
    hardware = HardwareConfig(levels=cfg.device.levels)
    augment = dense_shift_augment(cfg, t.shifts, t.seed, rails.vss)
    # The float baseline first: with distill_weight it is the circuit network's teacher.
    baseline = TanhMLP(sizes, rails.vss, rails.vdd)
    base_settings = _baseline_phase_settings(settings, t)
    base = train(baseline, x_train, train_set.labels, base_settings, out_dir=out / "baseline", resume=True,
                 augment=augment)
    base_test = accuracy(baseline.predict(base.params, x_test), test_set.labels)
    teacher = functools.partial(baseline.predict_logits, base.params) if t.distill_weight else None
    pre = None
    if t.pretrain_epochs:
        pretrain_model = PhaxNetwork(calibration, sizes, hardware, evaluator=t.pretrain_mode, init_mean=t.init_theta_mean,
                                     drive_power_weight_per_w=1e3 * t.drive_power_weight_per_mw)
        first, settings = pretrain_phases(settings, t.pretrain_epochs)
        pre = train(pretrain_model, x_train, train_set.labels, first, out_dir=out / "pretrain", resume=True,
                    augment=augment, teacher=teacher)
    model = PhaxNetwork(calibration, sizes, hardware, evaluator=t.mode, init_mean=t.init_theta_mean,
                        drive_power_weight_per_w=1e3 * t.drive_power_weight_per_mw)
    result = train(model, x_train, train_set.labels, settings, out_dir=out / "constrained", resume=True,
                   initial_params=None if pre is None else pre.params, augment=augment, teacher=teacher)
    network = network_from_params(model, result.params, {"dataset": cfg.dataset.name, "best_epoch": result.best_epoch})
    save_network(network, out / "network")
    acc_train = accuracy(network.predict(x_train), train_set.labels)
    acc_test = accuracy(network.predict(x_test), test_set.labels)
    summary = {"topology": list(sizes),
               **_results_summary(train_set, test_set, acc_train, acc_test, base_test, result, base, pre,
                                  settings, base_settings, t)}
    write_text_atomic(out / "summary.json", dumps_strict(summary, indent=2) + "\n")
    return summary


def dense_shift_augment(cfg: Any, shifts: int, seed: int, fill: float) -> Any:
    """The trainer's ``augment`` for a dense network on an image dataset (``[training] shifts``
    shifted copies of each training image, uncovered pixels at ``fill``); None when ``shifts`` is 0."""
    from memspice.pipeline.layered_train import shift_augment
    from memspice.pipeline.network_config import DATASET_SHAPES

    return shift_augment(DATASET_SHAPES[cfg.dataset.name][0], shifts, seed, fill) if shifts else None


def _train_layered(ctx: StageContext, calibration: Any, settings: TrainConfig, train_set: Any, test_set: Any,
                   x_train: np.ndarray, x_test: np.ndarray) -> dict[str, Any]:
    """The train stage for a ``[network]`` with conv or pooling layers (docs/cnn.md)."""
    from memspice.pipeline import layered_train
    from memspice.train.conv_io import save_layered_network

    cfg, t, out = ctx.config, ctx.config.training, ctx.stage_dir("train")
    spec = cfg.layered_spec()
    pre = None
    if t.pretrain_epochs:  # e.g. load-aware epochs, then coupled fine-tuning (docs/cnn-results.md)
        pre_model = layered_train.constrained_model(calibration, spec, t.pretrain_mode, cfg.device.levels,
                                                    t.init_theta_mean, t.batch_size)
        first, settings = pretrain_phases(settings, t.pretrain_epochs)
        _, pre = layered_train.train_constrained(pre_model, x_train, train_set.labels, first, out / "pretrain", True,
                                                 {"dataset": cfg.dataset.name}, shifts=t.shifts)
    model = layered_train.constrained_model(calibration, spec, t.mode, cfg.device.levels, t.init_theta_mean,
                                            t.batch_size)
    network, result = layered_train.train_constrained(model, x_train, train_set.labels, settings,
                                                      out / "constrained", True, {"dataset": cfg.dataset.name},
                                                      initial_params=None if pre is None else pre.params,
                                                      shifts=t.shifts)
    save_layered_network(network, out / "network")
    kernels = layered_train.plot_kernels(network, out / layered_train.KERNELS_PNG)
    acc_train = accuracy(layered_train.predict(model, result.params, x_train), train_set.labels)
    acc_test = accuracy(layered_train.predict(model, result.params, x_test), test_set.labels)
    rails = calibration.rails
    base_settings = _baseline_phase_settings(settings, t)
    baseline, base = layered_train.train_float(spec, rails.vss, rails.vdd, x_train, train_set.labels, base_settings,
                                               out / "baseline", True, shifts=t.shifts)
    layered_train.save_float_network(spec, base.params, out / "baseline", {"best_epoch": int(base.best_epoch)})
    base_test = accuracy(layered_train.predict(baseline, base.params, x_test), test_set.labels)
    estimate = spec.estimate(t.batch_size)
    summary = {
        "topology": layered_train.describe_layers(spec),
        "network": spec.to_dict(),
        "devices": estimate.devices, "columns": estimate.columns, "thetas": estimate.thetas,
        "mode": t.mode, "shifts": t.shifts,
        **_results_summary(train_set, test_set, acc_train, acc_test, base_test, result, base, pre,
                           settings, base_settings, t),
        "kernels_png": None if kernels is None else kernels.name,
    }
    write_text_atomic(out / "summary.json", dumps_strict(summary, indent=2) + "\n")
    return summary


def _baseline_phase_settings(settings: TrainConfig, t: Any) -> TrainConfig:
    """The float baseline's settings: as long as both training phases together, on the same
    (uninterrupted) schedule, on clean inputs (input noise is the circuit network's regularizer;
    on the sky130 example's validation split it cost the float baseline 0.4-0.6 points)."""
    return baseline_settings(dataclasses.replace(settings, epochs=t.pretrain_epochs + t.epochs,
                                                 lr=t.learning_rate, warmup_epochs=t.warmup_epochs,
                                                 distill_weight=0.0, distill_temperature=1.0,
                                                 input_noise_std=0.0),
                             t.float_learning_rate)


def _results_summary(train_set: Any, test_set: Any, acc_train: float, acc_test: float, base_test: float,
                     result: TrainResult, base: TrainResult, pre: TrainResult | None, settings: TrainConfig,
                     base_settings: TrainConfig, t: Any) -> dict[str, Any]:
    """The train summary's accuracies, epochs and settings, shared by dense and layered networks."""
    summary: dict[str, Any] = {
        "train_samples": int(len(train_set.labels)),
        "test_samples": int(len(test_set.labels)),
        "model_train_accuracy": round(acc_train, 5),
        "model_test_accuracy": round(acc_test, 5),
        "float_baseline_test_accuracy": round(base_test, 5),
        "best_epoch": int(result.best_epoch),
        "model_val_accuracy": _val_accuracy(result),
        "float_baseline_val_accuracy": _val_accuracy(base),
        "loss": settings.loss, "loss_link": settings.loss_link, "baseline_loss": base_settings.loss,
        "baseline_learning_rate": base_settings.lr,
        "epoch_seconds_median": float(np.median(result.history["seconds"])) if "seconds" in result.history else None,
    }
    if pre is not None:
        summary.update(pretrain_mode=t.pretrain_mode, pretrain_best_epoch=int(pre.best_epoch),
                       pretrain_val_accuracy=_val_accuracy(pre),
                       pretrain_epoch_seconds_median=float(np.median(pre.history["seconds"])))
    return summary


def _val_accuracy(result: TrainResult) -> float | None:
    """Validation accuracy of the epoch whose parameters were kept (the split the recipe is chosen on)."""
    column = result.history.get("val_accuracy")
    if column is None or not result.best_epoch or np.isnan(column.iloc[result.best_epoch - 1]):
        return None
    return round(float(column.iloc[result.best_epoch - 1]), 5)
