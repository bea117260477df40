"""`memspice run` configuration: every key checked, defaults round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from memspice.errors import ConfigError
from memspice.pipeline.config import RunConfig, config_from_dict, config_to_toml, default_config_toml, load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_defaults_round_trip_through_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(default_config_toml())
    assert load_config(path) == RunConfig()
    changed = config_from_dict({"training": {"hidden": [16, 8], "epochs": 3}, "technology": {"vdd": 0.3}})
    path.write_text(config_to_toml(changed))
    assert load_config(path) == changed


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"training": {"epoch": 3}}, "unknown key training.epoch"),
        ({"trainig": {}}, "unknown section [trainig]"),
        ({"training": {"epochs": "ten"}}, "training.epochs must be an integer"),
        ({"training": {"epochs": 0}}, "training.epochs must be in [1, 100000]"),
        ({"training": {"hidden": [32, 0]}}, "training.hidden must be positive integers"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"training": {"mode": "magic"}}, "training.mode"),
        ({"device": {"g_min_us": 9.0}}, "device.g_max_us must be above g_min_us"),
        ({"device": {"g_min_us": -1.0}}, "device.g_min_us must be positive"),
        ({"device": {"levels": 1}}, "device.levels"),
        ({"technology": {"vdd": -0.5}}, "technology.vdd must be above vss"),
        ({"technology": {"name": "tsmc"}}, "technology.name"),
        ({"technology": {"name": "user"}}, "technology.lib is required"),
        ({"technology": {"subckt_devices": 1}}, "technology.subckt_devices must be true or false"),
        ({"characterize": {"load_min_ohm": -5.0}}, "characterize.load_min_ohm must be positive"),
        ({"dataset": {"name": "mnist"}}, "dataset.mnist_dir is required"),
        ({"dataset": {"test_fraction": 1.5}}, "dataset.test_fraction"),
        ({"validation": {"batch_size": -1}}, "validation.batch_size must be 0 (automatic) or in [1, 5000]"),
        ({"sizing": {"wn_um": 1e6}}, "sizing.wn_um"),
        ({"training": {"learning_rate": float("nan")}}, "training.learning_rate must be finite"),
    ],
)
def test_bad_values_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(path: Path) -> None:
    load_config(path)
