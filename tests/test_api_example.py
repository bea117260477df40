"""The public API from `import memspice`: the train wrapper, and the notebook-style example
`examples/api_quickstart.py` run for real with ngspice."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

import numpy as np
import pytest

import memspice
from memspice.pipeline.config import TrainingConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "api_quickstart.py"


def test_default_train_config_is_the_pipelines() -> None:
    t = TrainingConfig()
    c = memspice.default_train_config()
    assert (c.epochs, c.batch_size, c.lr, c.optimizer, c.schedule, c.input_noise_std, c.loss, c.loss_link) == (
        t.epochs, t.batch_size, t.learning_rate, t.optimizer, t.schedule, t.input_noise_std, t.loss, t.loss_link)
    assert c.lr_decay == (t.lr_decay if t.schedule == "exponential" else 1.0)  # as the train stage passes it
    # the defaults that depend on the optimizer follow the pipeline's: lbfgs trains on the whole set
    full = memspice.default_train_config(optimizer="lbfgs")
    assert (full.schedule, full.input_noise_std, full.lr_decay) == ("exponential", 0.0, t.lr_decay)
    assert memspice.default_train_config(schedule="exponential").lr_decay == t.lr_decay
    assert memspice.default_train_config(lr_decay=0.9).schedule == "exponential"
    assert memspice.default_train_config(input_noise_std=0.0).input_noise_std == 0.0
    assert memspice.default_train_config(epochs=3).epochs == 3
    with pytest.raises(memspice.ConfigError, match="unknown training setting"):
        memspice.default_train_config(epoch=3)


def test_train_returns_a_network_in_the_device_window() -> None:
    cal = memspice.phax_reference_calibration()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    x = np.clip(0.1 * rng.standard_normal((60, 4)) + 0.05 * labels[:, None], -0.25, 0.25)
    network = memspice.train(cal, x, labels, hidden=(5,), mode="static",
                             config=memspice.default_train_config(epochs=2))
    assert isinstance(network, memspice.TrainedNetwork)
    assert network.topology == (4, 5, 3)
    assert network.evaluator == "static"
    assert network.metadata["epochs_run"] == 2 and 1 <= network.metadata["best_epoch"] <= 2
    window = cal.device
    for g in network.conductances:
        assert np.all(g >= window.g_min_siemens * (1 - 1e-12)) and np.all(g <= window.g_max_siemens * (1 + 1e-12))
    assert network.predict(x).shape == (60, 3)


@pytest.mark.parametrize("change, message", [
    ({"labels": np.zeros(5, dtype=int)}, "do not match"),
    ({"labels": np.full(10, -1)}, "non-negative integers"),
    ({"labels": np.linspace(0, 1, 10)}, "non-negative integers"),
    ({"mode": "dynamic"}, "unknown mode"),
    ({"mode": "coupled"}, "inverter current table"),
    ({"n_classes": 1}, "n_classes"),
])
def test_train_refuses_bad_arguments(change: dict, message: str) -> None:
    args = {"calibration": memspice.phax_reference_calibration(), "x": np.zeros((10, 3)),
            "labels": np.arange(10) % 2, "mode": "static"}
    args.update(change)
    with pytest.raises(memspice.ConfigError, match=message):
        memspice.train(**args)


def test_trained_network_round_trips_through_files(tmp_path: Path) -> None:
    cal = memspice.phax_reference_calibration()
    x = np.linspace(-0.2, 0.2, 40).reshape(20, 2)
    labels = (x[:, 0] > 0).astype(int)
    network = memspice.train(cal, x, labels, hidden=(3,), mode="static",
                             config=memspice.default_train_config(epochs=1))
    memspice.save_network(network, tmp_path / "net")
    loaded = memspice.load_network(tmp_path / "net")
    assert loaded.topology == network.topology
    for a, b in zip(loaded.conductances, network.conductances):
        np.testing.assert_array_equal(a, b)
    assert dataclasses.asdict(loaded.calibration.rails) == dataclasses.asdict(cal.rails)


@pytest.mark.ngspice
def test_api_quickstart_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSPICE_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    ns = runpy.run_path(str(EXAMPLE), run_name="__main__")
    network, report = ns["network"], ns["report"]
    assert network.topology == (64, 32, 10)
    assert report.complete and report.comparison.n_samples == 200
    # A trained network well above chance (10 %), predicted by its model sample by sample.
    assert report.comparison.spice_accuracy > 0.6
    assert report.comparison.agreement >= 0.98
    assert ns["output_rms"] < 5e-3
    assert (tmp_path / "validate").is_dir()


def test_readme_quotes_the_example() -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    example_lines = {line.strip() for line in EXAMPLE.read_text(encoding="utf-8").splitlines()}
    quoted = [line.strip() for line in block.splitlines() if line.strip()]
    assert len(quoted) > 10
    missing = [line for line in quoted if line not in example_lines]
    assert not missing, f"README lines not in {EXAMPLE.name}: {missing}"
