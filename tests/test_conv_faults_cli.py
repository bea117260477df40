"""`memspice train --network ... --fault-rate/--fault-map` and `memspice validate` of a CNN with the
same per-device fault map; one clear error for each map that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conv_problems import TINY_CNN_TOML as NETWORK

from memspice.cli import main
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.fault_map import (
    FAULT_MAP_NAME,
    load_device_fault_map,
    save_device_fault_map,
    save_fault_map,
    seeded_fault_map,
)
from memspice.train.layered_devices import seeded_device_faults

#: the same network on digits' 1×8×8 images
DIGITS_CNN = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
OTHER_CNN = NetworkSpec((1, 8, 8), (Conv2d(3, 3), AvgPool2d(2), Flatten(), Dense(10)))
FAST = ["--epochs", "1", "--lr", "0.05", "--loss-link", "logit", "--batch-size", "64", "--mode", "static",
        "-q", "--json"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not line.startswith("memspice: warning:")]
    assert len(lines) == 1 and lines[0].startswith("memspice: error: "), lines
    return lines[0]


def test_train_writes_the_per_device_map_it_trained_against(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK)
    out = tmp_path / "aware"
    assert main(["train", "--network", str(net), "--out", str(out), "--fault-rate", "0.2", "--fault-seed", "4",
                 "--fault-aware", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fault_aware"] is True and summary["fault_seed"] == 4
    faults = load_device_fault_map(out / FAULT_MAP_NAME, DIGITS_CNN)
    expected = seeded_device_faults(DIGITS_CNN, 0.2, 4)
    for got, want in zip(faults.stuck_high + faults.stuck_low, expected.stuck_high + expected.stuck_low):
        np.testing.assert_array_equal(got, want)
    assert summary["fault_map"]["stuck_high"] + summary["fault_map"]["stuck_low"] == sum(
        int(m.sum()) for m in faults.stuck_high + faults.stuck_low) > 0
    assert json.loads((out / "network.json").read_text())["metadata"]["fault_map"]["seed"] == 4
    # the same map given as a file trains the same network; without --fault-aware it is only tested
    again = tmp_path / "again"
    assert main(["train", "--network", str(net), "--out", str(again), "--fault-map", str(out / FAULT_MAP_NAME),
                 "--fault-aware", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == summary["test_accuracy"]
    oblivious = tmp_path / "oblivious"
    assert main(["train", "--network", str(net), "--out", str(oblivious), "--fault-map",
                 str(out / FAULT_MAP_NAME), *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["fault_aware"] is False
    assert (oblivious / FAULT_MAP_NAME).is_file()
    # retrained into the same folder without a map: the stale map goes
    assert main(["train", "--network", str(net), "--out", str(oblivious), *FAST]) == 0
    capsys.readouterr()
    assert not (oblivious / FAULT_MAP_NAME).exists()


def test_train_refuses_maps_that_do_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK)
    other = tmp_path / "other.npz"
    save_device_fault_map(seeded_device_faults(OTHER_CNN, 0.1, 0), other, OTHER_CNN)
    dense = tmp_path / "dense.npz"
    save_fault_map(seeded_fault_map((64, 16, 10), 0.1, 0), dense, (64, 16, 10))
    out = tmp_path / "out"
    cases = [
        (["--fault-map", str(other), "--fault-aware"], "layer 0 (conv2d 2×6×6) is 108×20"),
        (["--fault-map", str(dense), "--fault-aware"], "layer 0 (conv2d 2×6×6) is 16×130"),
        (["--fault-map", str(tmp_path / "missing.npz")], "does not exist"),
        (["--fault-map", str(net)], "not a readable fault map"),
        (["--fault-map", str(other), "--fault-rate", "0.1"], "not both"),
        (["--fault-aware"], "--fault-aware needs a fault map"),
        (["--fault-rate", "0.1", "--variation", "0.05"], "--variation is not available with --network"),
    ]
    for extra, needle in cases:
        assert main(["train", "--network", str(net), "--out", str(out), *FAST, *extra]) == 2, extra
        line = _error_line(capsys)
        assert needle in line, (extra, line)
        assert not out.exists(), extra
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check of the rate
        main(["train", "--network", str(net), "--out", str(out), *FAST, "--fault-rate", "1.5"])
    assert exit_info.value.code == 2
    assert "--fault-rate: must be a finite number ≥ 0 and < 1" in _error_line(capsys)
    assert not out.exists()


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin
    from memspice.train.conv_io import TrainedCrossbarNetwork, save_layered_network
    from memspice.train.mapping import ConductanceWindow, theta_to_conductance

    cal = calibrate(builtin(), InverterSizing())
    rng = np.random.default_rng(7)
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    sigma = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape) - 2.0, window)
                  for p in DIGITS_CNN.plans)
    directory = tmp_path_factory.mktemp("cnn") / "net"
    save_layered_network(TrainedCrossbarNetwork(DIGITS_CNN, sigma, cal, "coupled"), directory)
    save_device_fault_map(seeded_device_faults(DIGITS_CNN, 0.2, 1), directory / FAULT_MAP_NAME, DIGITS_CNN)
    return directory


@pytest.mark.ngspice
def test_validate_builds_the_map_in_spice_and_in_the_model(tmp_path: Path, network_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.train.conv_io import load_layered_network
    from memspice.train.conv_faults import FaultAwareCrossbarNetwork
    from memspice.train.mapping import conductance_to_theta

    base = ["validate", str(network_dir), "--samples", "4", "--batch-size", "4", "--workers", "1", "--json", "-q"]
    assert main([*base, "--out", str(tmp_path / "own")]) == 0
    captured = capsys.readouterr()
    assert "(the network's own)" in captured.err and "drawn with seed 1" in captured.err
    summary = json.loads(captured.out)
    drawn = summary["drawn_devices_model"]
    assert drawn["agreement"] == 1.0
    assert max(row["max_v"] for row in drawn["layer_errors"]) < 2e-3
    # SPICE built the stuck devices: the ideal network's model is far from it
    assert max(row["max_v"] for row in summary["layer_errors"]) > 10e-3
    # the devices in the deck are the training model's: stuck ones at the ends of their windows
    network = load_layered_network(network_dir)
    faults = load_device_fault_map(network_dir / FAULT_MAP_NAME, network.spec)
    model = FaultAwareCrossbarNetwork(network.calibration, network.spec, faults, evaluator="coupled")
    params = [conductance_to_theta(g, network.window) for g in network.conductances]
    expected = model.device_conductances(model.conductances(params)[0])
    from memspice.train.layered_devices import DeviceSettings, draw_devices

    built = draw_devices(network, DeviceSettings(), faults).conductances
    for wiring, mine, theirs, high in zip(network_wiring(network.spec), expected, built, faults.stuck_high):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(theirs[high], wiring.scale[high] * network.window.g_max_siemens)
    # another network's map: one error line, nothing written
    other = tmp_path / "other.npz"
    save_device_fault_map(seeded_device_faults(OTHER_CNN, 0.1, 0), other, OTHER_CNN)
    out = tmp_path / "refused"
    assert main([*base, "--fault-map", str(other), "--out", str(out)]) == 2
    assert "layer 0 (conv2d 2×6×6) is 108×20" in _error_line(capsys)
    assert not out.exists()


def test_validate_draws_further_faults_and_needs_a_recorded_map(tmp_path: Path) -> None:
    import argparse

    from memspice.errors import ConfigError
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network
    from memspice.train.layered_devices import DeviceSettings, draw_devices
    from memspice.validate.command import _layered_devices

    cal = phax_reference_calibration()
    sigma = tuple(np.full(p.theta_shape, 1e-6) for p in DIGITS_CNN.plans)
    directory = tmp_path / "net"
    save_layered_network(TrainedCrossbarNetwork(DIGITS_CNN, sigma, cal), directory)
    network = load_layered_network(directory)
    args = argparse.Namespace(fault_map=None, fault_rate=0.0, seed=3)
    assert _layered_devices(args, network, directory) is None
    args.fault_rate = 0.1
    drawn = _layered_devices(args, network, directory)
    expected = draw_devices(network, DeviceSettings(fault_rate=0.1, seed=3)).conductances
    for a, b in zip(drawn, expected):
        np.testing.assert_array_equal(a, b)
    # a network trained with a map whose file has gone is refused, not validated ideal
    recorded = TrainedCrossbarNetwork(DIGITS_CNN, sigma, cal, metadata={"fault_map": {"seed": 1}})
    save_layered_network(recorded, tmp_path / "lost")
    with pytest.raises(ConfigError, match="fault_map.npz is missing"):
        _layered_devices(argparse.Namespace(fault_map=None, fault_rate=0.0, seed=0),
                         load_layered_network(tmp_path / "lost"), tmp_path / "lost")
