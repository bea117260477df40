"""Learning-rate schedules (warm-up, exponential, cosine) and gradient-norm clipping."""

import argparse
import math

import numpy as np
import pandas as pd
import pytest

from memspice.datasets import features_to_voltages, load_iris
from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.train import command
from memspice.train.model import PhaxNetwork
from memspice.train.optim import clip_global_norm
from memspice.train.schedule import epoch_learning_rate, warmup_factor
from memspice.train.trainer import TrainConfig, train

CAL = phax_reference_calibration()


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return features_to_voltages(data.features, CAL.rails.vdd, CAL.rails.vss), data.labels


def test_exponential_schedule_is_the_old_per_epoch_product():
    rate = 0.01
    for epoch in range(1, 12):
        assert epoch_learning_rate(0.01, epoch, 11, "exponential", 0.93) == rate
        rate *= 0.93


def test_cosine_runs_from_lr_to_the_floor_after_the_warmup():
    lr, epochs, warmup = 0.02, 20, 4
    rates = [epoch_learning_rate(lr, e, epochs, "cosine", 1.0, warmup, 0.05)
             for e in range(1, epochs + 1)]
    assert rates[: warmup + 1] == [lr] * (warmup + 1)
    assert rates[-1] == pytest.approx(0.05 * lr, rel=1e-12)
    assert all(a > b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))
    middle = warmup + 1 + (epochs - warmup - 1) // 2  # progress 1/2 when the span is even
    span = epochs - warmup - 1
    progress = (middle - warmup - 1) / span
    expected = 0.05 * lr + 0.95 * lr * 0.5 * (1 + math.cos(math.pi * progress))
    assert rates[middle - 1] == pytest.approx(expected, rel=1e-12)


def test_warmup_rises_linearly_per_step_to_one():
    steps, warmup = 5, 2
    factors = [warmup_factor(e, s, steps, warmup) for e in (1, 2) for s in range(steps)]
    np.testing.assert_allclose(factors, np.arange(1, 11) / 10, rtol=1e-15)
    assert warmup_factor(3, 0, steps, warmup) == 1.0
    assert warmup_factor(1, 3, steps, 0) == 1.0


@pytest.mark.parametrize("settings,message", [
    ({"schedule": "step"}, "unknown schedule"),
    ({"schedule": "cosine", "lr_decay": 0.9}, "lr_decay applies to the exponential"),
    ({"schedule": "cosine", "lr_floor_fraction": 1.0}, "lr_floor_fraction must be in"),
    ({"schedule": "cosine", "lr_floor_fraction": -0.1}, "lr_floor_fraction must be in"),
    ({"lr_floor_fraction": 0.1}, "needs schedule='cosine'"),
    ({"warmup_epochs": 30}, "warmup_epochs must be in"),
    ({"warmup_epochs": -1}, "warmup_epochs must be in"),
    ({"grad_clip_norm": -1.0}, "grad_clip_norm must be 0"),
    ({"grad_clip_norm": float("inf")}, "grad_clip_norm must be 0"),
    ({"grad_clip_norm": 1.0, "optimizer": "lbfgs"}, "need a mini-batch optimizer"),
    ({"warmup_epochs": 2, "optimizer": "cg"}, "need a mini-batch optimizer"),
])
def test_config_rejects_bad_schedules(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(epochs=30, **settings)


def test_clip_global_norm_shortens_only_long_gradients_and_keeps_their_direction():
    grads = [np.array([3.0, 0.0]), np.array([[0.0], [4.0]])]  # joint norm 5
    clipped = clip_global_norm(grads, 1.0)
    assert math.sqrt(sum(float(np.sum(g * g)) for g in clipped)) == pytest.approx(1.0, rel=1e-15)
    for g, c in zip(grads, clipped):
        np.testing.assert_allclose(c, g / 5.0, rtol=1e-15)
    for g, c in zip(grads, clip_global_norm(grads, 10.0)):
        np.testing.assert_array_equal(c, g)
    with pytest.raises(ConfigError, match="max_norm must be positive"):
        clip_global_norm(grads, 0.0)


def test_training_follows_the_cosine_schedule_and_resumes_exactly(iris, tmp_path):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3), init_mean=-1.0)
    settings = {"lr": 0.02, "batch_size": 16, "progress": False, "schedule": "cosine",
                "warmup_epochs": 2, "lr_floor_fraction": 0.1, "grad_clip_norm": 0.5,
                "loss_link": "logit", "val_fraction": 0.2}
    reference = train(model, x, y, TrainConfig(epochs=6, **settings))
    steps_per_epoch = -(-120 // 16)  # 150 samples, 20 % held out
    # The history holds each epoch's last step size: half of lr at the end of warm-up epoch 1.
    expected = [epoch_learning_rate(0.02, e, 6, "cosine", 1.0, 2, 0.1)
                * warmup_factor(e, steps_per_epoch - 1, steps_per_epoch, 2) for e in range(1, 7)]
    assert expected[:3] == [0.01, 0.02, 0.02]
    np.testing.assert_allclose(reference.history["lr"], expected, rtol=1e-15)
    assert reference.history["lr"].iloc[-1] == pytest.approx(0.002, rel=1e-12)

    class Interrupted(Exception):
        pass

    class StopsMidway:
        """The same model, interrupted during epoch 4 (after 3 checkpoints)."""

        def __init__(self, inner, calls):
            self.inner, self.calls = inner, calls

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def loss_and_grad(self, *args, **kwargs):
            self.calls -= 1
            if self.calls < 0:
                raise Interrupted
            return self.inner.loss_and_grad(*args, **kwargs)

    with pytest.raises(Interrupted):
        train(StopsMidway(model, 3 * steps_per_epoch + 2), x, y, TrainConfig(epochs=6, **settings),
              tmp_path)
    resumed = train(model, x, y, TrainConfig(epochs=6, **settings), tmp_path, resume=True)
    np.testing.assert_allclose(resumed.history["lr"], expected, rtol=1e-15)
    for p, q in zip(reference.params, resumed.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)


def test_clipping_bounds_the_first_sgd_step(iris):
    x, y = iris
    model = PhaxNetwork(CAL, (4, 6, 3), init_mean=-1.0)
    start = model.init_params(np.random.default_rng(0))
    lr, clip = 5.0, 1e-3
    common = {"epochs": 1, "batch_size": 1000, "lr": lr, "optimizer": "sgd", "progress": False,
              "val_fraction": 0.0}
    free = train(model, x, y, TrainConfig(**common), initial_params=start)
    clipped = train(model, x, y, TrainConfig(**common, grad_clip_norm=clip), initial_params=start)

    def step_norm(params):
        return math.sqrt(sum(float(np.sum((p - s) ** 2)) for p, s in zip(params, start)))

    assert step_norm(clipped.params) == pytest.approx(lr * clip, rel=1e-9)
    assert step_norm(free.params) > 10 * lr * clip


def _parse(argv):
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_cli_takes_the_schedule_and_rejects_a_warmup_longer_than_the_run(tmp_path, capsys):
    args = _parse(["--dataset", "iris", "--topology", "4,6,3", "--epochs", "4", "--lr", "0.02",
                   "--schedule", "cosine", "--warmup-epochs", "1", "--lr-floor-fraction", "0.1",
                   "--grad-clip-norm", "1", "--out", str(tmp_path), "--quiet"])
    assert args.func(args) == 0
    history = pd.read_csv(tmp_path / "history.csv")
    np.testing.assert_allclose(history["lr"], [0.02, 0.02, 0.011, 0.002], rtol=1e-12)
    from memspice.cli import main

    assert main(["train", "--dataset", "iris", "--epochs", "3", "--warmup-epochs", "3",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "memspice: error: --warmup-epochs (3) must be below --epochs (3)" in capsys.readouterr().err
