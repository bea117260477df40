"""Network files: version 2 with the layer description; version 1 dense files still load."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.train.conv_io import (
    TrainedCrossbarNetwork,
    load_layered_network,
    save_layered_network,
)
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.mapping import theta_to_conductance
from memspice.train.network_io import NETWORK_VERSION, TrainedNetwork, load_network, save_network

# Written by memspice before the layer description existed (format version 1): a 4-3-2
# network with a fault map.
V1_DIR = Path(__file__).resolve().parent / "data" / "network_v1"
CNN = NetworkSpec((1, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Flatten(), Dense(3)))


def test_version_1_dense_file_still_loads():
    meta = json.loads((V1_DIR / "network.json").read_text())
    assert meta["version"] == 1 and "layers" not in meta
    old = load_network(V1_DIR)
    assert old.topology == (4, 3, 2) and old.faults is not None
    assert old.faults.stuck_high[0][1, 2] and old.faults.stuck_low[1][0, 5]
    with np.load(V1_DIR / "network.npz") as data:
        assert np.array_equal(old.conductances[1], data["layer1"])
    layered = load_layered_network(V1_DIR)
    assert layered.spec == NetworkSpec.dense((4, 3, 2))
    x = np.random.default_rng(0).uniform(-0.25, 0.25, (3, 4))
    assert np.allclose(layered.predict(x), old.predict(x), rtol=0, atol=1e-14)


def test_dense_files_are_version_2_with_layers(tmp_path):
    assert NETWORK_VERSION == 2
    old = load_network(V1_DIR)
    save_network(old, tmp_path)
    meta = json.loads((tmp_path / "network.json").read_text())
    assert meta["version"] == 2 and meta["topology"] == [4, 3, 2]
    assert meta["layers"] == {"input_shape": [4], "layers": [{"kind": "dense", "units": 3},
                                                             {"kind": "dense", "units": 2}]}
    again = load_network(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(again.conductances, old.conductances))


def _trained_cnn(spec):
    cal = phax_reference_calibration()
    model = CrossbarNetwork(cal, spec)
    window = model.window
    g = [theta_to_conductance(t, window) for t in model.init_params(np.random.default_rng(1))]
    return TrainedCrossbarNetwork(spec, tuple(g), cal, metadata={"epochs": 1})


def test_cnn_round_trip_with_masks(tmp_path):
    theta_mask = np.ones(CNN.plans[1].theta_shape, dtype=bool)
    theta_mask[:, 3] = False
    spec = CNN.with_masks((None, CrossbarMask(theta=theta_mask)))
    net = _trained_cnn(spec)
    save_layered_network(net, tmp_path)
    meta = json.loads((tmp_path / "network.json").read_text())
    assert meta["version"] == 2 and meta["topology"] is None
    assert meta["layers"]["layers"][1] == {"kind": "avgpool2d", "size": 2}
    back = load_layered_network(tmp_path, phax_reference_calibration())
    assert back.spec == spec and back.metadata == {"epochs": 1}
    assert all(np.array_equal(a, b) for a, b in zip(back.conductances, net.conductances))
    x = np.random.default_rng(2).uniform(-0.25, 0.25, (4, 36))
    assert np.array_equal(back.predict(x), net.predict(x))
    devices = back.device_conductances()
    assert devices[0].shape == (2 * 36, 2 * 9 + 2)
    assert np.count_nonzero(devices[1] == 0) == 3 * 4  # θ 3 of each row: its 4 folded devices


def test_cnn_file_is_refused_by_the_dense_reader(tmp_path):
    save_layered_network(_trained_cnn(CNN), tmp_path)
    with pytest.raises(ConfigError, match="conv or pooling layers; read it with"):
        load_network(tmp_path)


def test_unknown_version_is_refused(tmp_path):
    shutil.copytree(V1_DIR, tmp_path / "net")
    path = tmp_path / "net" / "network.json"
    meta = json.loads(path.read_text())
    meta["version"] = 3
    path.write_text(json.dumps(meta))
    for reader in (load_network, load_layered_network):
        with pytest.raises(ConfigError, match=r"version 3 is not supported .*\[1, 2\]"):
            reader(tmp_path / "net")


def test_layered_dense_network_is_written_in_the_dense_form(tmp_path):
    old = load_network(V1_DIR)
    net = TrainedCrossbarNetwork(NetworkSpec.dense(old.topology), old.conductances,
                                 old.calibration, faults=old.faults)
    save_layered_network(net, tmp_path)
    assert isinstance(load_network(tmp_path), TrainedNetwork)
