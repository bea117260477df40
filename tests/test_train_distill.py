"""Knowledge distillation: soft targets in the losses, the trainer and the run configuration."""

import numpy as np
import pytest

from memspice.datasets import features_to_voltages, load_iris
from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.pipeline.config import config_from_dict
from memspice.train.losses import LOSS_NAMES, Loss, distillation_targets
from memspice.train.model import PhaxNetwork, TanhMLP
from memspice.train.trainer import TrainConfig, split_validation, train

CAL = phax_reference_calibration()


def test_distillation_targets_mix_the_labels_with_the_teacher():
    z = np.array([[2.0, -1.0, 0.0], [0.0, 4.0, -4.0]])
    labels = np.array([0, 2])
    one_hot = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    for name in LOSS_NAMES:
        np.testing.assert_array_equal(distillation_targets(z, labels, name, 0.0), one_hot)
    sigmoid = 1 / (1 + np.exp(-z / 2))
    np.testing.assert_allclose(distillation_targets(z, labels, "bce", 1.0, 2.0), sigmoid, rtol=1e-14)
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    mixed = distillation_targets(z, labels, "softmax_ce", 0.25)
    np.testing.assert_allclose(mixed, 0.75 * one_hot + 0.25 * softmax, rtol=1e-14)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-14)
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="distillation weight must be in"):
            distillation_targets(z, labels, "bce", bad)
    for bad in (0.0, np.inf):
        with pytest.raises(ConfigError, match="distillation temperature must be positive"):
            distillation_targets(z, labels, "bce", 0.5, bad)


@pytest.mark.parametrize("link", ["output", "logit"])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_one_hot_targets_are_the_labels(name, link):
    """A (B, C) one-hot matrix is the same loss as the class indices, value and gradient."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 7)
    one_hot = np.eye(4)[labels]
    loss = Loss(name, link=link)
    if link == "logit":
        z = rng.normal(0, 3, (7, 4))
        a, b = loss.logit_value_and_grad(z, labels), loss.logit_value_and_grad(z, one_hot)
    else:
        y = rng.uniform(-0.2, 0.2, (7, 4))
        a, b = loss.value_and_grad(y, labels, -0.25, 0.25), loss.value_and_grad(y, one_hot, -0.25, 0.25)
    assert b[0] == pytest.approx(a[0], rel=1e-13)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-12, atol=1e-300)


def test_bce_of_soft_targets_is_smallest_at_the_targets():
    """BCE on logits against a target t is minimal (zero gradient) where sigmoid(z) = t."""
    t = np.array([[0.2, 0.7, 0.05]])
    z = np.log(t / (1 - t))
    _, grad = Loss("bce", link="logit").logit_value_and_grad(z, t)
    np.testing.assert_allclose(grad, 0.0, atol=1e-15)
    with pytest.raises(ConfigError, match="targets .* do not match outputs"):
        Loss("bce", link="logit").logit_value_and_grad(z, np.ones((1, 2)))


def _iris():
    data = load_iris()
    return features_to_voltages(data.features, CAL.rails.vdd, CAL.rails.vss), data.labels


def test_the_trainer_steps_on_the_teachers_targets_and_validates_on_the_labels():
    x, y = _iris()
    teacher_model = TanhMLP((4, 6, 3), CAL.rails.vss, CAL.rails.vdd)
    teacher = train(teacher_model, x, y, TrainConfig(epochs=5, batch_size=16, lr=0.02, loss_link="logit",
                                                    progress=False))
    calls = []

    def logits(inputs):
        calls.append(inputs)
        return teacher_model.predict_logits(teacher.params, inputs)

    student = PhaxNetwork(CAL, (4, 6, 3), init_mean=-1.0)
    base = dict(epochs=3, batch_size=16, lr=0.02, loss_link="logit", progress=False, val_fraction=0.2, seed=3)
    plain = train(student, x, y, TrainConfig(**base), teacher=logits)
    assert not calls  # no weight, no teacher
    distilled = train(student, x, y, TrainConfig(**base, distill_weight=0.7, distill_temperature=2.0), teacher=logits)
    train_idx, val_idx = split_validation(len(x), 0.2, 3)
    assert len(calls) == 1 and np.array_equal(calls[0], x[train_idx])  # the steps' samples only, once
    assert not np.allclose(plain.params[0], distilled.params[0])
    expected = Loss("bce", link="logit").logit_value_and_grad(
        student.predict_logits(distilled.params, x[val_idx]), y[val_idx])[0]
    assert distilled.history["val_loss"].iloc[distilled.best_epoch - 1] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ConfigError, match="distill_weight needs a teacher"):
        train(student, x, y, TrainConfig(**base, distill_weight=0.5))
    for bad in ({"distill_weight": 1.5}, {"distill_weight": -0.1}, {"distill_temperature": 0.0},
                {"distill_temperature": np.nan}):
        with pytest.raises(ConfigError, match="distill_"):
            TrainConfig(**bad)


@pytest.mark.parametrize(("training", "extra", "needle"), [
    ({"distill_weight": 1.5}, {}, "training.distill_weight must be 0 (off) or in (0, 1], got 1.5"),
    ({"distill_weight": -0.5}, {}, "training.distill_weight must be 0 (off) or in (0, 1], got -0.5"),
    ({"distill_weight": "half"}, {}, "training.distill_weight must be a number"),
    ({"distill_weight": 0.5, "distill_temperature": 0}, {}, "training.distill_temperature must be in (0, 100]"),
    ({"distill_temperature": 2.0}, {}, "training.distill_temperature other than 1 needs distill_weight > 0"),
    ({"shifts": 1}, {"dataset": {"name": "iris"}}, "training.shifts needs a dataset of images (digits or mnist)"),
    ({"distill_weight": 0.5}, {"loop": {"enabled": False}, "network": {"layers": [
        {"kind": "conv2d", "out_channels": 2, "kernel": 3}, {"kind": "flatten"}, {"kind": "dense", "units": 10}]}},
     "training.distill_weight needs a dense network"),
])
def test_bad_distillation_and_shift_keys_are_refused(training, extra, needle):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"training": training, **extra})
    assert needle in str(info.value)


def test_a_dense_network_on_images_takes_shifts_and_distillation():
    config = config_from_dict({"training": {"shifts": 2, "distill_weight": 0.5, "distill_temperature": 2.0}})
    assert (config.training.shifts, config.training.distill_weight) == (2, 0.5)
    dense = [{"kind": "flatten"}, {"kind": "dense", "units": 10}]
    assert config_from_dict({"training": {"shifts": 1}, "network": {"layers": dense}}).training.shifts == 1


def test_memspice_run_refuses_a_bad_distillation_key_in_one_line(tmp_path, capsys):
    from memspice.cli import main

    config = tmp_path / "bad.toml"
    config.write_text("[training]\ndistill_weight = 2\n")
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["memspice: error: training.distill_weight must be 0 (off) or in (0, 1], got 2.0"]
    assert not run_dir.exists()
