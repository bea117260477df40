"""The training benchmark script runs end to end on a tiny synthetic MNIST."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from script_loader import load_script


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return gzip.compress(header + array.astype(">u1").tobytes())


def _tiny_mnist_and_script(folder: Path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 60)
    images = (rng.random((60, 28, 28)) * 40 + labels[:, None, None] * 20).astype(np.uint8)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(_idx(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(labels))
    return load_script("bench_train")


def test_bench_train_main_prints_json_last(tmp_path, capsys):
    module = _tiny_mnist_and_script(tmp_path)
    assert module.main(["--quick", "--no-torch", "--mnist-dir", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("float_accuracy", "constrained_accuracy", "levels32_accuracy",
                "fault20_aware_accuracy", "fault20_oblivious_accuracy", "float_val_accuracy",
                "constrained_val_accuracy"):
        assert 0 <= figures[key] <= 1
    assert figures["numpy_epoch_s"] > 0
    assert figures["gap_float_minus_constrained_points"] == pytest.approx(
        100 * (figures["float_accuracy"] - figures["constrained_accuracy"]))


def test_bench_train_passes_the_schedule_to_every_model(tmp_path, capsys, monkeypatch):
    module = _tiny_mnist_and_script(tmp_path)
    import memspice.train.trainer as trainer

    seen = []
    real_train = trainer.train

    def spy(model, x, labels, config, *args, **kwargs):
        seen.append((type(model).__name__, config.schedule, config.lr_floor_fraction,
                     config.lr_decay, config.warmup_epochs))
        return real_train(model, x, labels, config, *args, **kwargs)

    monkeypatch.setattr(trainer, "train", spy)
    assert module.main(["--quick", "--no-torch", "--mnist-dir", str(tmp_path), "--schedule",
                        "cosine", "--lr-floor-fraction", "0.1", "--warmup-epochs", "1"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["schedule"] == "cosine" and figures["warmup_epochs"] == 1
    assert {name for name, *_ in seen} == {"TanhMLP", "PhaxNetwork"}
    assert len(seen) == 6  # float, constrained, 32 levels, three fault-aware runs
    assert all(entry[1:] == ("cosine", 0.1, 1.0, 1) for entry in seen)
