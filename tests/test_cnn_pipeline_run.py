"""`memspice run` of a tiny digits CNN: train (coupled), validate in SPICE, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memspice.cli import main

CONFIG = """\
[characterize]
load_points = 5
[dataset]
max_train = 300
max_test = 30
[training]
mode = "coupled"
epochs = 3
batch_size = 32
learning_rate = 0.05
float_learning_rate = 0.05
loss_link = "logit"
init_theta_mean = -1.0
schedule = "exponential"   # three epochs: the cosine default would spend the last at lr 0
input_noise_std = 0.0
[loop]
enabled = false
[validation]
batch_size = 15
[network]
layers = [
  {kind = "conv2d", out_channels = 3, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "flatten"},
  {kind = "dense", units = 10},
]
"""


@pytest.mark.ngspice
@pytest.mark.slow
def test_a_tiny_cnn_runs_the_whole_pipeline(tmp_path: Path) -> None:
    config = tmp_path / "cnn.toml"
    config.write_text(CONFIG)
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 0
    for name in ("report.md", "summary.json", "train/network/network.json", "train/kernels.png",
                 "train/baseline/float_network.npz", "validate/summary.json"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    head, stages = summary["headline"], summary["stages"]
    assert head["topology"] == "1x8x8 → conv3k3 → pool2 → flatten → dense10"
    assert stages["train"]["mode"] == "coupled" and stages["loop"] == {**stages["loop"], "enabled": False}
    assert stages["validate"]["n_samples"] == 30 and stages["validate"]["model_evaluator"] == "coupled"
    assert head["model_test_accuracy"] > 0.3 and head["float_baseline_test_accuracy"] > 0.3  # chance: 0.1
    # the coupled model predicts its circuit: same class on (nearly) every image, sub-mV outputs
    assert head["agreement"] >= 0.9
    assert max(head["output_rms_error_v"].values()) < 2e-3
    report = (run_dir / "report.md").read_text()
    assert "float tanh-CNN baseline" in report and "train/kernels.png" in report
    # unchanged: nothing is redone
    mtime = (run_dir / "train/network/network.npz").stat().st_mtime_ns
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 0
    assert (run_dir / "train/network/network.npz").stat().st_mtime_ns == mtime
