"""The pipeline's training stage: the float baseline's settings, pre-training in a cheaper mode."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration, save_calibration
from memspice.pipeline.config import config_from_dict
from memspice.pipeline.stages import StageContext
from memspice.pipeline.train_stage import CALIBRATION_FILE, baseline_settings, pretrain_phases, run_train
from memspice.train.schedule import epoch_learning_rate
from memspice.train.trainer import TrainConfig


def test_output_link_baseline_keeps_softmax_on_rescaled_outputs() -> None:
    settings = TrainConfig(lr=0.005, loss="bce")
    base = baseline_settings(settings)
    assert (base.loss, base.loss_link, base.lr) == ("softmax_ce", "output", 0.005)
    assert baseline_settings(settings, 0.001).lr == 0.001


def test_logit_link_baseline_takes_the_same_loss_on_its_logits() -> None:
    settings = TrainConfig(lr=0.005, loss="bce", loss_link="logit", logit_temperature=2.0, average_decay=0.99)
    base = baseline_settings(settings, 0.001)
    assert (base.loss, base.loss_link, base.logit_temperature, base.average_decay) == ("bce", "logit", 2.0, 0.99)
    assert base.lr == 0.001 and baseline_settings(settings).lr == 0.005


def test_input_noise_trains_the_circuit_network_only() -> None:
    from memspice.pipeline.train_stage import _baseline_phase_settings

    t = config_from_dict({"training": {"input_noise_std": 0.03, "pretrain_epochs": 4, "epochs": 3}}).training
    settings = TrainConfig(epochs=3, lr=t.learning_rate, input_noise_std=t.input_noise_std)
    base = _baseline_phase_settings(settings, t)
    assert (settings.input_noise_std, base.input_noise_std, base.epochs) == (0.03, 0.0, 7)


def test_pretraining_continues_the_exponential_schedule() -> None:
    settings = TrainConfig(epochs=4, lr=0.01, lr_decay=0.9, warmup_epochs=2)
    first, second = pretrain_phases(settings, 5)
    assert (first.epochs, first.lr, first.warmup_epochs) == (5, 0.01, 2)
    assert (second.epochs, second.warmup_epochs, second.lr_decay) == (4, 0, 0.9)
    for epoch in range(1, 5):  # the final phase's epochs are epochs 6..9 of one uninterrupted run
        whole = epoch_learning_rate(0.01, 5 + epoch, 9, "exponential", 0.9, 2)
        assert epoch_learning_rate(second.lr, epoch, 4, "exponential", 0.9) == pytest.approx(whole, rel=1e-12)
    with pytest.raises(ConfigError):
        pretrain_phases(TrainConfig(schedule="cosine"), 3)


def test_the_train_stage_pretrains_then_trains_from_the_pretrained_parameters(tmp_path: Path) -> None:
    config = config_from_dict({
        "dataset": {"max_train": 200, "max_test": 40},
        "training": {"hidden": [8], "epochs": 2, "pretrain_epochs": 3, "pretrain_mode": "static", "mode": "static",
                     "learning_rate": 0.01, "lr_decay": 0.5},
    })
    save_calibration(phax_reference_calibration(), tmp_path / "calibrate" / CALIBRATION_FILE)
    summary = run_train(StageContext(config, tmp_path, {}, quiet=True))
    pre = pd.read_csv(tmp_path / "train" / "pretrain" / "history.csv")
    final = pd.read_csv(tmp_path / "train" / "constrained" / "history.csv")
    base = pd.read_csv(tmp_path / "train" / "baseline" / "history.csv")
    assert len(pre) == 3 and len(final) == 2 and len(base) == 5  # the baseline trains as long as both
    assert final["lr"].tolist() == pytest.approx([0.01 * 0.5**3, 0.01 * 0.5**4])
    assert summary["pretrain_mode"] == "static" and 1 <= summary["pretrain_best_epoch"] <= 3
    assert 0.0 <= summary["pretrain_val_accuracy"] <= 1.0
    # the final phase starts where the pre-training ended: its first epoch is already trained
    assert final["val_loss"].iloc[0] < pre["val_loss"].iloc[0]


def test_a_layered_network_pretrains_then_trains_from_the_pretrained_parameters(tmp_path: Path) -> None:
    config = config_from_dict({
        "dataset": {"max_train": 120, "max_test": 20},
        "training": {"epochs": 1, "pretrain_epochs": 2, "pretrain_mode": "static", "mode": "static",
                     "learning_rate": 0.05, "lr_decay": 0.5, "batch_size": 32},
        "loop": {"enabled": False},
        "network": {"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": 3},
                               {"kind": "avgpool2d", "size": 2}, {"kind": "flatten"},
                               {"kind": "dense", "units": 10}]},
    })
    save_calibration(phax_reference_calibration(), tmp_path / "calibrate" / CALIBRATION_FILE)
    summary = run_train(StageContext(config, tmp_path, {}, quiet=True))
    pre = pd.read_csv(tmp_path / "train" / "pretrain" / "history.csv")
    final = pd.read_csv(tmp_path / "train" / "constrained" / "history.csv")
    base = pd.read_csv(tmp_path / "train" / "baseline" / "history.csv")
    assert len(pre) == 2 and len(final) == 1 and len(base) == 3
    assert final["lr"].tolist() == pytest.approx([0.05 * 0.5**2])
    assert summary["pretrain_mode"] == "static" and summary["mode"] == "static"
    assert final["val_loss"].iloc[0] < pre["val_loss"].iloc[0]  # it starts from the pre-trained θ


def _dense_stage(tmp_path: Path, name: str, **training: object) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    config = config_from_dict({
        "dataset": {"max_train": 200, "max_test": 40},
        "training": {"hidden": [8], "epochs": 2, "pretrain_epochs": 1, "pretrain_mode": "static", "mode": "static",
                     "learning_rate": 0.02, "loss_link": "logit", **training},
    })
    run = tmp_path / name
    save_calibration(phax_reference_calibration(), run / "calibrate" / CALIBRATION_FILE)
    summary = run_train(StageContext(config, run, {}, quiet=True))
    return (summary, pd.read_csv(run / "train" / "constrained" / "history.csv"),
            pd.read_csv(run / "train" / "baseline" / "history.csv"))


def test_the_dense_train_stage_distills_from_its_baseline_and_shifts_images_for_both(tmp_path: Path) -> None:
    plain, plain_circuit, plain_float = _dense_stage(tmp_path, "plain")
    kd, kd_circuit, kd_float = _dense_stage(tmp_path, "kd", distill_weight=0.5, distill_temperature=2.0)
    # the baseline is trained as without distillation; the circuit network steps on other targets
    pd.testing.assert_frame_equal(kd_float.drop(columns="seconds"), plain_float.drop(columns="seconds"))
    assert kd["float_baseline_test_accuracy"] == plain["float_baseline_test_accuracy"]
    assert not kd_circuit["train_loss"].equals(plain_circuit["train_loss"])
    _, shift_circuit, shift_float = _dense_stage(tmp_path, "shifts", shifts=1)
    assert not shift_float["train_loss"].equals(plain_float["train_loss"])  # both networks see the copies
    assert not shift_circuit["train_loss"].equals(plain_circuit["train_loss"])


def test_the_drive_power_term_lowers_the_first_crossbars_driver_power(tmp_path: Path) -> None:
    import numpy as np

    from memspice.train.drive_power import input_drive_power
    from memspice.train.network_io import load_network

    plain, plain_circuit, plain_float = _dense_stage(tmp_path, "plain")
    frugal, frugal_circuit, frugal_float = _dense_stage(tmp_path, "frugal", drive_power_weight_per_mw=500.0)
    pd.testing.assert_frame_equal(frugal_float.drop(columns="seconds"), plain_float.drop(columns="seconds"))
    x = np.random.default_rng(0).uniform(-0.25, 0.25, (50, 64))  # digits: 64 inputs at ±0.25 V

    def power(name: str) -> float:
        network = load_network(tmp_path / name / "train" / "network")
        return float(np.mean(input_drive_power(network.conductances[0], x, 0.25, -0.25)))

    assert power("frugal") < 0.8 * power("plain")
    assert frugal_circuit["train_loss"].iloc[0] > plain_circuit["train_loss"].iloc[0]  # the loss carries the term


@pytest.mark.parametrize("value", [-1.0, 2e6])
def test_a_drive_power_weight_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(ConfigError, match="drive_power_weight_per_mw"):
        config_from_dict({"training": {"drive_power_weight_per_mw": value}})


def test_the_drive_power_term_needs_a_dense_network() -> None:
    with pytest.raises(ConfigError, match="drive_power_weight_per_mw needs a dense network"):
        config_from_dict({
            "training": {"drive_power_weight_per_mw": 1.0, "mode": "static"}, "loop": {"enabled": False},
            "network": {"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": 3}, {"kind": "flatten"},
                                   {"kind": "dense", "units": 10}]},
        }).layered_spec()
