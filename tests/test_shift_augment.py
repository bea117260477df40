"""Training-data augmentation by one-pixel shifted copies (`[training] shifts`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memspice.cli import main
from memspice.datasets import SHIFT_MOVES, shift_images
from memspice.errors import ConfigError
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.pipeline import layered_train
from memspice.pipeline.config import config_from_dict
from memspice.train.conv_model import TanhConvNet
from memspice.train.trainer import TrainConfig, split_validation, train

CNN = [{"kind": "conv2d", "out_channels": 2, "kernel": 3}, {"kind": "avgpool2d", "size": 2},
       {"kind": "flatten"}, {"kind": "dense", "units": 10}]


def _moved(image: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """``image`` (c, h, w) moved dy rows down and dx columns right, written out pixel by pixel."""
    c, h, w = image.shape
    out = np.full_like(image, fill)
    for r in range(h):
        for col in range(w):
            if 0 <= r - dy < h and 0 <= col - dx < w:
                out[:, r, col] = image[:, r - dy, col - dx]
    return out


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
def test_every_copy_is_a_distinct_one_pixel_move_of_its_image(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    n, d = 6, int(np.prod(shape))
    x, y = rng.random((n, d)) + 1.0, np.arange(n)
    xs, ys = shift_images(x, y, shape, 3, seed=4, fill=-0.5)
    assert xs.shape == (4 * n, d) and np.array_equal(ys, np.tile(y, 4))
    assert np.array_equal(xs[:n], x)  # the originals first, untouched
    images = x.reshape(n, *((1, *shape) if len(shape) == 2 else shape))
    for i in range(n):
        moves = []
        for j in range(1, 4):
            copy = xs[j * n + i].reshape(images[i].shape)
            found = [m for m in SHIFT_MOVES if np.array_equal(copy, _moved(images[i], *m, -0.5))]
            assert len(found) == 1, (i, j)
            moves.append(found[0])
        assert len(set(moves)) == 3  # three different moves per image
    again, _ = shift_images(x, y, shape, 3, seed=4, fill=-0.5)
    other, _ = shift_images(x, y, shape, 3, seed=5, fill=-0.5)
    assert np.array_equal(again, xs) and not np.array_equal(other, xs)


def test_zero_copies_return_the_inputs_and_bad_requests_are_refused() -> None:
    x, y = np.zeros((2, 9)), np.array([0, 1])
    same_x, same_y = shift_images(x, y, (3, 3), 0)
    assert same_x is x and same_y is y
    for copies in (-1, 9, 1.0, True):
        with pytest.raises(ConfigError, match="shifted copies must be an integer in"):
            shift_images(x, y, (3, 3), copies)
    with pytest.raises(ConfigError, match="cannot shift inputs"):
        shift_images(x, y, (4, 4), 1)


def test_the_trainer_augments_the_training_part_only() -> None:
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.25, 0.25, (40, 36)), rng.integers(0, 3, 40)
    seen: list[np.ndarray] = []

    def augment(xt: np.ndarray, yt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(xt)
        return shift_images(xt, yt, (6, 6), 2, fill=-0.25)

    config = TrainConfig(epochs=2, batch_size=8, lr=0.01, loss="softmax_ce", loss_link="logit", seed=0,
                         val_fraction=0.25, progress=False)
    model = TanhConvNet(spec, -0.25, 0.25)
    plain = train(model, x, y, config)
    shifted = train(model, x, y, config, augment=augment)
    train_idx, _ = split_validation(40, 0.25, 0)
    assert len(seen) == 1 and np.array_equal(seen[0], x[train_idx])  # validation images never shifted
    assert not np.allclose(plain.params[0], shifted.params[0])
    # the layered trainer's shifts are the same augmentation, with the calibration's vss as background
    via_helper = layered_train.train_float(spec, -0.25, 0.25, x, y, config, None, False, shifts=2)[1]
    assert all(np.array_equal(a, b) for a, b in zip(via_helper.params, shifted.params))
    assert layered_train.shift_augment((1, 6, 6), 0, 0, -0.25) is None


@pytest.mark.parametrize(("training", "network", "needle"), [
    ({"shifts": 9}, True, "training.shifts must be an integer in [0, 8], got 9"),
    ({"shifts": -1}, True, "training.shifts must be an integer in [0, 8], got -1"),
    ({"shifts": 1.5}, True, "training.shifts must be an integer, got 1.5"),
    ({"shifts": True}, True, "training.shifts must be an integer, got True"),
])
def test_bad_shifts_are_refused(training: dict, network: bool, needle: str) -> None:
    data = {"loop": {"enabled": False}, "training": training}
    if network:
        data["network"] = {"layers": CNN}
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_a_dense_network_table_refuses_shifts_of_data_that_are_not_images() -> None:
    dense = [{"kind": "flatten"}, {"kind": "dense", "units": 3}]
    with pytest.raises(ConfigError, match="training.shifts needs a dataset of images"):
        config_from_dict({"training": {"shifts": 1}, "dataset": {"name": "iris"}, "network": {"layers": dense}})
    assert config_from_dict({"loop": {"enabled": False}, "training": {"shifts": 4},
                             "network": {"layers": CNN}}).training.shifts == 4


def test_memspice_run_refuses_bad_shifts_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[loop]\nenabled = false\n[training]\nmode = \"static\"\nshifts = 12\n[network]\n"
                      "layers = [{kind = \"conv2d\", out_channels = 2, kernel = 3}, {kind = \"flatten\"}, "
                      "{kind = \"dense\", units = 10}]\n")
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["memspice: error: training.shifts must be an integer in [0, 8], got 12"]
    assert not run_dir.exists()


def test_the_constrained_trainer_shifts_with_the_calibration_background() -> None:
    from memspice.fit.calibration import phax_reference_calibration

    cal = phax_reference_calibration()
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    rng = np.random.default_rng(2)
    x, y = rng.uniform(cal.rails.vss, cal.rails.vdd, (30, 36)), rng.integers(0, 3, 30)
    config = TrainConfig(epochs=1, batch_size=10, lr=0.05, loss="softmax_ce", loss_link="logit", seed=3,
                         val_fraction=0.2, progress=False)

    def model() -> layered_train.CrossbarNetwork:
        return layered_train.constrained_model(cal, spec, "static", 0, -2.0, 10)

    _, shifted = layered_train.train_constrained(model(), x, y, config, None, False, {}, shifts=2)
    by_hand = train(model(), x, y, config, augment=lambda a, b: shift_images(a, b, (1, 6, 6), 2, 3, cal.rails.vss))
    _, plain = layered_train.train_constrained(model(), x, y, config, None, False, {})
    assert all(np.array_equal(a, b) for a, b in zip(shifted.params, by_hand.params))
    assert not np.array_equal(shifted.params[0], plain.params[0])
