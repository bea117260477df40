"""`[network]` in the `memspice run` configuration: good tables, hostile ones, and the dense case."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from memspice.cli import main
from memspice.errors import ConfigError
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.pipeline.config import RunConfig, config_from_dict, config_to_toml, load_config
from memspice.pipeline.run import stages as pipeline_stages
from memspice.pipeline.stages import fingerprint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CNN = [{"kind": "conv2d", "out_channels": 2, "kernel": 3}, {"kind": "avgpool2d", "size": 2},
       {"kind": "flatten"}, {"kind": "dense", "units": 10}]
NO_LOOP = {"loop": {"enabled": False}}


def test_a_cnn_table_takes_the_dataset_input_shape_and_round_trips() -> None:
    config = config_from_dict({**NO_LOOP, "network": {"layers": CNN}})
    spec = config.layered_spec()
    assert spec == NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
    assert config.topology(64, 10) is None and config.training.hidden == []
    again = config_from_dict(tomllib.loads(config_to_toml(config)))
    assert again == config
    mnist = config_from_dict({**NO_LOOP, "dataset": {"name": "mnist"}, "network": {"layers": CNN}})
    assert mnist.layered_spec().input_shape == (1, 14, 14)


def test_dense_configurations_are_unchanged() -> None:
    assert RunConfig().network is None and RunConfig().topology(64, 10) == (64, 32, 10)
    assert "[network]" not in config_to_toml(RunConfig())
    # a [network] of flatten and dense layers is the dense network (loop and all)
    flat = config_from_dict({"network": {"layers": [{"kind": "flatten"}, {"kind": "dense", "units": 16},
                                                    {"kind": "dense", "units": 10}]}})
    assert flat.layered_spec() is None and flat.topology(64, 10) == (64, 16, 10) and flat.loop.enabled


def test_the_network_description_is_part_of_the_train_fingerprint() -> None:
    train = next(s for s in pipeline_stages() if s.name == "train")
    a = config_from_dict({**NO_LOOP, "network": {"layers": CNN}})
    wider = [{**CNN[0], "out_channels": 3}, *CNN[1:]]
    b = config_from_dict({**NO_LOOP, "network": {"layers": wider}})
    assert fingerprint(train, a, {}) != fingerprint(train, b, {})


def _layers(*first: dict) -> dict:
    return {**NO_LOOP, "network": {"layers": [*first, {"kind": "flatten"}, {"kind": "dense", "units": 10}]}}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({**NO_LOOP, "network": {"layers": CNN, "kernels": 3}}, "unknown key network.kernels"),
        (_layers({"kind": "conv2d", "out_channels": 2, "kernel": 3, "dilation": 2}),
         "network.layers[0] (conv2d): unknown key 'dilation'"),
        (_layers({"kind": "conv3d", "out_channels": 2, "kernel": 3}), "network.layers[0]: kind must be one of"),
        (_layers({"kind": "conv2d", "out_channels": 2, "kernel": 9}),
         "network layer 0 (conv2d): kernel 9x9 is larger than its padded input 8x8"),
        (_layers({"kind": "conv2d", "out_channels": 2, "kernel": 3},
                 {"kind": "conv2d", "out_channels": 4, "kernel": 3, "in_channels": 3}),
         "network layer 1 (conv2d): expects 3 input channels but the layer before gives 2"),
        (_layers({"kind": "conv2d", "out_channels": 2, "kernel": 3, "stride": 0}),
         "network.layers[0] (conv2d): stride must be a positive integer, got 0"),
        (_layers({"kind": "conv2d", "out_channels": 2, "kernel": 3, "stride": 1.5}),
         "network.layers[0] (conv2d): stride must be a positive integer, got 1.5"),
        ({**NO_LOOP, "network": {"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": 3},
                                           {"kind": "dense", "units": 10}]}},
         "network layer 1 (dense): needs a vector input but gets a 2x6x6 feature map; put a flatten"),
        (_layers({"kind": "conv2d", "out_channels": 200000, "kernel": 3}),
         "network too large"),
        ({**NO_LOOP, "network": {"layers": CNN[:3] + [{"kind": "dense", "units": 7}]}},
         "network layer 3 (dense) has 7 outputs, but dataset digits has 10 classes"),
        ({**NO_LOOP, "network": {"layers": CNN, "input_shape": [1, 14, 14]}},
         "network.input_shape [1, 14, 14] does not match the data's [1, 8, 8]"),
        ({**NO_LOOP, "network": {"layers": []}}, "network.layers must be a non-empty list"),
        ({**NO_LOOP, "network": {"layers": CNN}, "training": {"hidden": [16]}}, "the network is given twice"),
        ({**NO_LOOP, "network": {"layers": CNN}, "training": {"mode": "load-aware"}},
         "training.mode must be static or coupled for a [network] with conv or pooling layers"),
        ({"network": {"layers": CNN}}, "loop.enabled must be false for a [network] with conv or pooling layers"),
    ],
)
def test_hostile_network_tables_name_the_layer(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_too_large_names_its_largest_layer() -> None:
    big = _layers({"kind": "conv2d", "out_channels": 1000000, "kernel": 8})
    with pytest.raises(ConfigError) as info:
        config_from_dict(big)
    assert "the largest is network layer 0 (conv2d): 130,000,000 devices in 1,000,000 columns" in str(info.value)


HOSTILE_TOML = [
    'layers = [{kind = "conv2d", out_channels = 2, kernel = 3, dilation = 2}, {kind = "flatten"}, '
    '{kind = "dense", units = 10}]',
    'layers = [{kind = "conv2d", out_channels = 2, kernel = 30}, {kind = "flatten"}, {kind = "dense", units = 10}]',
    'layers = [{kind = "conv2d", out_channels = 2, kernel = 3, stride = 0}, {kind = "flatten"}, '
    '{kind = "dense", units = 10}]',
    'layers = [{kind = "conv2d", out_channels = 2, kernel = 3}, {kind = "dense", units = 10}]',
    'layers = [{kind = "conv2d", out_channels = 2, kernel = 3}, '
    '{kind = "conv2d", out_channels = 2, kernel = 3, in_channels = 5}, {kind = "flatten"}, {kind = "dense", units = 10}]',
    'layers = [{kind = "conv2d", out_channels = 400000, kernel = 3}, {kind = "flatten"}, {kind = "dense", units = 10}]',
]


@pytest.mark.parametrize("table", HOSTILE_TOML)
def test_memspice_run_refuses_a_hostile_network_in_one_line(table: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[loop]\nenabled = false\n[network]\n{table}\n")
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memspice: error: network"), err
    assert "layer" in err[0] and "Traceback" not in err[0]
    assert not run_dir.exists()  # nothing written


def test_the_example_cnn_configuration_parses() -> None:
    config = load_config(EXAMPLES / "mnist_cnn.toml")
    spec = config.layered_spec()
    assert spec is not None and spec.input_shape == (1, 14, 14)
    assert sum(isinstance(layer, Conv2d) for layer in spec.layers) >= 2
    assert any(isinstance(layer, AvgPool2d) for layer in spec.layers)
    assert isinstance(spec.layers[-1], Dense) and config.training.mode == "coupled"
