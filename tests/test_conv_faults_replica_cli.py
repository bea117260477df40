"""`memspice train --network ... --fault-aware --per-replica` → network file version 3 →
`memspice validate` builds exactly those devices with the training's fault map; one clear error
for every input that does not fit (options, tampered files, foreign maps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conv_problems import TINY_CNN_TOML as NETWORK

from memspice.cli import main
from memspice.errors import ConfigError
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_faults import FaultAwareCrossbarNetwork, ReplicaFaultAwareNetwork
from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network
from memspice.train.fault_map import FAULT_MAP_NAME, load_device_fault_map, save_device_fault_map
from memspice.train.layered_devices import seeded_device_faults

DENSE_ONLY = """\
[network]
layers = [{kind = "flatten"}, {kind = "dense", units = 10}]
"""
#: the network above on digits' 1×8×8 images
DIGITS_CNN = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
OTHER_CNN = NetworkSpec((1, 8, 8), (Conv2d(3, 3), AvgPool2d(2), Flatten(), Dense(10)))
FAST = ["--epochs", "1", "--replica-epochs", "1", "--lr", "0.05", "--loss-link", "logit", "--batch-size", "64",
        "--mode", "static", "-q", "--json"]
SAMPLES = 6


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines()
             if not line.startswith("memspice: warning:")]
    assert len(lines) == 1 and lines[0].startswith("memspice: error: "), lines
    return lines[0]


def _replica_network(cal, seed: int = 0) -> TrainedCrossbarNetwork:
    faults = seeded_device_faults(DIGITS_CNN, 0.2, 1)
    model = ReplicaFaultAwareNetwork(cal, DIGITS_CNN, faults, init_std=0.7)
    rng = np.random.default_rng(seed)
    shared = FaultAwareCrossbarNetwork(cal, DIGITS_CNN, faults)
    start = shared.conductances(shared.init_params(rng))[0]
    return model.trained_network(model.init_params(rng), start, {"epochs": 1})


def test_per_device_network_round_trips_as_version_3(tmp_path: Path) -> None:
    from memspice.fit.calibration import phax_reference_calibration

    cal = phax_reference_calibration()
    faults = seeded_device_faults(DIGITS_CNN, 0.2, 1)
    model = ReplicaFaultAwareNetwork(cal, DIGITS_CNN, faults, init_std=0.7)
    rng = np.random.default_rng(3)
    params = model.init_params(rng)
    start = [np.full(p.theta_shape, 1e-6) for p in DIGITS_CNN.plans]
    network = model.trained_network(params, start)
    save_layered_network(network, tmp_path / "net")
    meta = json.loads((tmp_path / "net" / "network.json").read_text())
    assert meta["version"] == 3 and meta["per_device"] is True and meta["has_fault_map"] is True
    assert meta["fault_map"]["seed"] == 1 and meta["fault_map"]["rate_high"] == 0.1
    back = load_layered_network(tmp_path / "net")
    for got, want in zip(back.devices, model.programmed(params)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(back.built_devices(), model.devices(params)):  # what validation builds
        np.testing.assert_array_equal(got, want)
    x = rng.uniform(-0.25, 0.25, (5, DIGITS_CNN.n_inputs))
    np.testing.assert_allclose(back.predict(x), model.predict(params, x), rtol=0, atol=1e-12)
    from memspice.train.conv_circuit import crossbar_devices  # `memspice netlist trained` places the same

    for layer, want in zip(crossbar_devices(back), model.devices(params)):
        np.testing.assert_array_equal(layer.conductances, want)
    # each θ's stored σ is the mean of its healthy replicas
    wiring = network_wiring(DIGITS_CNN)[0]
    healthy = wiring.present & ~faults.stuck_high[0] & ~faults.stuck_low[0]
    entry = wiring.theta_index[0, 0]
    replicas = (wiring.theta_index == entry) & healthy
    assert back.conductances[0].ravel()[entry] == pytest.approx(back.devices[0][replicas].mean(), rel=1e-12)
    # a dense network has nothing to program per device
    with pytest.raises(ConfigError, match="already one per device"):
        TrainedCrossbarNetwork(NetworkSpec.dense((4, 2)), (np.full((2, 10), 1e-6),), cal,
                               devices=(np.full((2, 10), 1e-6),))


def _tampered(directory: Path, change) -> None:
    path = directory / "network.npz"
    with np.load(path) as data:
        arrays = {name: np.array(data[name]) for name in data.files}
    change(arrays)
    np.savez(path, **arrays)


def _edit_json(directory: Path, change) -> None:
    path = directory / "network.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _set(arrays: dict, name: str, value) -> None:
    arrays[name] = value


def test_validate_refuses_tampered_per_device_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.fit.calibration import phax_reference_calibration

    good = tmp_path / "good"
    save_layered_network(_replica_network(phax_reference_calibration()), good)
    other_map = seeded_device_faults(DIGITS_CNN, 0.2, 2)
    cases = [
        ("wrong shape", lambda d: _tampered(d, lambda a: _set(a, "device0", a["device0"][:, :-1])),
         "layer 0 (conv2d 2×6×6) is 72×19, the layer has 72×20 devices"),
        ("integer dtype", lambda d: _tampered(d, lambda a: _set(a, "device1", np.ones(a["device1"].shape, np.int64))),
         "layer 1 (dense 10) holds int64 values"),
        ("NaN", lambda d: _tampered(d, lambda a: a["device0"].__setitem__((3, 4), np.nan)),
         "layer 0 (conv2d 2×6×6) has NaN or infinite"),
        ("negative", lambda d: _tampered(d, lambda a: a["device1"].__setitem__((0, 0), -1e-6)),
         "layer 1 (dense 10) has negative conductances"),
        ("outside the window", lambda d: _tampered(d, lambda a: _set(a, "device0", 100 * a["device0"])),
         "outside their conductance window"),
        ("a layer missing", lambda d: _tampered(d, lambda a: a.pop("device1")),
         "holds per-device arrays ['device0'], the network has 2 crossbar layers"),
        ("a layer too many", lambda d: _tampered(d, lambda a: _set(a, "device2", a["device1"])),
         "holds per-device arrays ['device0', 'device1', 'device2']"),
        ("devices in a version 2 file", lambda d: _edit_json(d, lambda m: (m.pop("per_device"), m.update(version=2))),
         "holds per-device arrays but"),
        ("unknown version", lambda d: _edit_json(d, lambda m: m.update(version=4)),
         "version 4 is not supported (this memspice reads versions [1, 2, 3])"),
        ("version 3 without per_device", lambda d: _edit_json(d, lambda m: m.pop("per_device")),
         "format version 3 with per_device False"),
        ("map missing", lambda d: (d / FAULT_MAP_NAME).unlink(), "fault_map.npz is missing"),
        ("another network's map", lambda d: save_device_fault_map(
            seeded_device_faults(OTHER_CNN, 0.2, 1), d / FAULT_MAP_NAME, OTHER_CNN),
         "layer 0 (conv2d 2×6×6) is 108×20"),
        ("another map of this network", lambda d: save_device_fault_map(other_map, d / FAULT_MAP_NAME, DIGITS_CNN),
         "is not the fault map the network"),
    ]
    for name, tamper, needle in cases:
        directory = tmp_path / name.replace(" ", "_").replace("'", "")
        shutil.copytree(good, directory)
        tamper(directory)
        before = {p.name: p.read_bytes() for p in directory.iterdir()}
        out = tmp_path / "out"
        assert main(["validate", str(directory), "--samples", "2", "--out", str(out), "-q"]) == 2, name
        line = _error_line(capsys)
        assert needle in line, (name, line)
        assert not out.exists(), name
        assert {p.name: p.read_bytes() for p in directory.iterdir()} == before, name
    # a map given with --fault-map must fit as well
    foreign = tmp_path / "foreign.npz"
    save_device_fault_map(seeded_device_faults(OTHER_CNN, 0.1, 0), foreign, OTHER_CNN)
    assert main(["validate", str(good), "--fault-map", str(foreign), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "layer 0 (conv2d 2×6×6) is 108×20" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_train_refuses_per_replica_where_it_means_nothing(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK)
    dense = tmp_path / "dense.toml"
    dense.write_text(DENSE_ONLY)
    out = tmp_path / "out"
    cases = [
        (["--network", str(net), "--fault-rate", "0.1", "--per-replica"], "add --fault-aware"),
        (["--network", str(net), "--per-replica"], "add --fault-aware"),
        (["--network", str(dense), "--fault-rate", "0.1", "--fault-aware", "--per-replica"],
         "every θ of this network is one physical device"),
        (["--topology", "64,10", "--fault-rate", "0.1", "--fault-aware", "--per-replica"],
         "a --topology network is dense"),
        (["--network", str(net), "--fault-rate", "0.1", "--fault-aware", "--per-replica", "--resume"],
         "--resume is not available with --per-replica"),
        (["--network", str(net), "--fault-rate", "0.1", "--fault-aware", "--per-replica", "--levels", "8"],
         "--per-replica programs continuous conductances"),
        (["--network", str(net), "--fault-rate", "0.1", "--fault-aware", "--per-replica", "--mode", "float"],
         "--mode float"),
    ]
    for extra, needle in cases:
        assert main(["train", "--out", str(out), *FAST, *extra]) == 2, extra
        line = _error_line(capsys)
        assert needle in line, (extra, line)
        assert not out.exists(), extra
    for rate in ("1", "1.0", "-0.1", "nan"):  # argparse's own check: the rate is in [0, 1)
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--network", str(net), "--out", str(out), *FAST, "--fault-aware", "--per-replica",
                  "--fault-rate", rate])
        assert exit_info.value.code == 2
        assert "--fault-rate: must be a finite number ≥ 0 and < 1" in _error_line(capsys)
        assert not out.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits CNN trained per replica around a seeded 20 % map, through the CLI."""
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.fit.calibration import save_calibration
    from memspice.tech import builtin

    root = tmp_path_factory.mktemp("replica")
    save_calibration(calibrate(builtin(), InverterSizing()), root / "cal.json")
    (root / "net.toml").write_text(NETWORK)
    out = root / "net"
    assert main(["train", "--network", str(root / "net.toml"), "--calibration", str(root / "cal.json"),
                 "--out", str(out), "--fault-rate", "0.2", "--fault-seed", "4", "--fault-aware", "--per-replica",
                 *FAST]) == 0
    return out


def _spice_outputs(run: Path) -> np.ndarray:
    table = pd.read_parquet(run / "samples.parquet").sort_values("sample")
    return table[[f"spice_l1_outp{j}" for j in range(10)]].to_numpy()


@pytest.mark.ngspice
def test_cli_round_trip_builds_the_training_map(trained: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.train.mapping import conductance_to_theta

    capsys.readouterr()
    meta = json.loads((trained / "network.json").read_text())
    assert meta["version"] == 3 and meta["metadata"]["per_replica"] is True
    training_map = seeded_device_faults(DIGITS_CNN, 0.2, 4)  # drawn here, not read from the folder
    stored = load_device_fault_map(trained / FAULT_MAP_NAME, DIGITS_CNN)
    for got, want in zip(stored.stuck_high + stored.stuck_low, training_map.stuck_high + training_map.stuck_low):
        np.testing.assert_array_equal(got, want)

    base = ["validate", str(trained), "--samples", str(SAMPLES), "--batch-size", str(SAMPLES), "--workers", "1",
            "--json", "-q"]
    assert main([*base, "--out", str(tmp_path / "own")]) == 0
    captured = capsys.readouterr()
    assert "(the network's own)" in captured.err and "drawn with seed 4" in captured.err
    own = json.loads(captured.out)
    assert own["fault_map"]["seed"] == 4 and own["fault_map"]["rate_high"] == own["fault_map"]["rate_low"] == 0.1
    assert "drawn at rate 0.2 (0.1 at g_max, 0.1 at g_min) with seed 4" in (tmp_path / "own" / "report.md").read_text()
    drawn = own["drawn_devices_model"]  # the coupled model on the devices SPICE was given
    assert drawn["agreement"] == 1.0 and max(row["max_v"] for row in drawn["layer_errors"]) < 2e-3

    # the training's model, rebuilt from the seed and the stored per-device θ, predicts SPICE
    network = load_layered_network(trained)
    model = ReplicaFaultAwareNetwork(network.calibration, DIGITS_CNN, training_map, evaluator="coupled")
    thetas = [np.clip(conductance_to_theta(np.where(w.present, g / w.scale, network.window.g_min_siemens),
                                           network.window), -40, 40)
              for w, g in zip(network_wiring(DIGITS_CNN), network.devices)]
    test = benchmark_split(load_dataset("digits"), 0.2, 0)[1].subset(slice(0, SAMPLES))
    x = features_to_voltages(test.features, network.calibration.rails.vdd, network.calibration.rails.vss)
    predicted = model.predict(thetas, x)
    spice_own = _spice_outputs(tmp_path / "own")
    assert np.abs(spice_own - predicted).max() < 2e-3

    # another map of the same network: SPICE builds it instead (and says so), and the training's
    # model no longer predicts SPICE
    other = tmp_path / "other.npz"
    save_device_fault_map(seeded_device_faults(DIGITS_CNN, 0.2, 5), other, DIGITS_CNN)
    assert main([*base, "--fault-map", str(other), "--out", str(tmp_path / "other")]) == 0
    captured = capsys.readouterr()
    assert "(instead of the network's own)" in captured.err
    assert json.loads(captured.out)["fault_map"]["seed"] == 5
    spice_other = _spice_outputs(tmp_path / "other")
    assert np.abs(spice_other - predicted).max() > 10e-3
    assert np.abs(spice_other - spice_own).max() > 10e-3
