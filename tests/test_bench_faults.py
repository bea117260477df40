"""scripts/bench_faults.py's CNN section: fault-aware networks saved and read back as `memspice
train` writes them (per-replica: format version 3), the devices built checked against the map,
and --quick end to end in ngspice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memspice.network.wiring import network_wiring
from memspice.train.layered_devices import seeded_device_faults

from analytic_inverter import VDD, VSS, synthetic_calibration
from script_loader import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_faults.py"


def _module():
    return load_script("bench_faults")


def test_devices_round_trip(tmp_path):
    bench = _module()
    devices = (np.arange(6.0).reshape(2, 3) * 1e-6, np.zeros((4, 5)))
    path = bench.save_devices(devices, tmp_path / bench.DEVICES_NAME)
    for mine, back in zip(devices, bench.load_devices(path)):
        np.testing.assert_array_equal(mine, back)
    assert sorted(p.name for p in tmp_path.iterdir()) == [bench.DEVICES_NAME]


def test_aware_networks_are_saved_and_read_back_as_memspice_train_writes_them(tmp_path):
    bench = _module()
    cal = synthetic_calibration()
    spec = bench.cnn_spec(True)
    faults = seeded_device_faults(spec, 0.2, 0)
    recipe = bench.CnnRecipe(replica_epochs=1, replica_batch=16, shared_epochs=1, tune_batch=16)
    rng = np.random.default_rng(0)
    x, labels = rng.uniform(VSS, VDD, (24, spec.n_inputs)), rng.integers(0, 10, 24)
    initial = [np.full(p.theta_shape, -2.0) for p in spec.plans]
    replica, info = bench.cnn_trained(tmp_path / "replica", cal, spec, faults, recipe, x, labels, 0, initial)
    shared, _ = bench.cnn_trained(tmp_path / "shared", cal, spec, faults, recipe, x, labels, 0, initial,
                                  per_replica=False)
    assert len(info["replica_val_accuracy"]) == 1
    assert json.loads((tmp_path / "replica" / "network.json").read_text())["version"] == 3
    assert json.loads((tmp_path / "shared" / "network.json").read_text())["version"] == 2
    assert replica.devices is not None and shared.devices is None
    for name, network in (("replica", replica), ("shared", shared)):  # each carries the map, builds it stuck
        assert (tmp_path / name / "fault_map.npz").is_file()
        for wiring, built, high, low, mine in zip(network_wiring(spec), network.built_devices(), faults.stuck_high,
                                                  faults.stuck_low, network.faults.stuck_high):
            np.testing.assert_array_equal(mine, high)
            np.testing.assert_array_equal(built[high], (wiring.scale * cal.device.g_max_siemens)[high])
            np.testing.assert_array_equal(built[low], (wiring.scale * cal.device.g_min_siemens)[low])
    again, _ = bench.cnn_trained(tmp_path / "replica", cal, spec, faults, recipe, x, labels, 0, initial)
    for a, b in zip(again.devices, replica.devices):  # a re-run reads the network back
        np.testing.assert_array_equal(a, b)


def test_bad_sections_are_a_usage_error():
    run = subprocess.run([sys.executable, str(SCRIPT), "--sections", "cnn,rnn"], capture_output=True, text=True)
    assert run.returncode == 2
    assert "--sections takes mlp, cnn or both" in run.stderr


@pytest.mark.slow
@pytest.mark.ngspice
def test_quick_cnn_section_end_to_end(tmp_path):
    env_path = str(SCRIPT.parent.parent)
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--sections", "cnn", "--rates", "0.2",
                          "--out", str(tmp_path)], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": env_path})
    result = json.loads(run.stdout.strip().splitlines()[-1])
    (network,) = result["networks"]
    (row,) = network["faults"]
    assert row["rate"] == 0.2 and row["fault_seed"] == 0
    for key in ("fault_free", "oblivious", "aware", "shared_aware"):
        assert 0.0 <= row[key] <= 1.0
    assert row["aware_agreement"] >= 0.99 and row["shared_aware_agreement"] >= 0.99
    assert len(row["aware_training"]["replica_val_accuracy"]) == network["recipe"]["replica_epochs"]
    assert len(row["shared_aware_training"]["shared_val_accuracy"]) == network["recipe"]["shared_epochs"]
    aware = tmp_path / "digits-cnn" / "rate_20" / "aware"
    assert json.loads((aware / "network.json").read_text())["version"] == 3
    assert (aware / "fault_map.npz").is_file() and not (aware / "devices.npz").exists()
