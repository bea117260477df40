"""scripts/bench_faults.py's CNN section: per-device networks saved and read back, the devices
built checked against the map, and --quick end to end in ngspice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memspice.fit.calibration import phax_reference_calibration
from memspice.train.conv_faults import ReplicaFaultAwareNetwork
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.layered_devices import seeded_device_faults

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


def test_devices_that_lose_a_stuck_value_are_refused_before_simulating(tmp_path):
    bench = _module()
    cal = phax_reference_calibration()
    spec = bench.cnn_spec(True)
    faults = seeded_device_faults(spec, 0.2, 0)
    model = ReplicaFaultAwareNetwork(cal, spec, faults)
    params = model.init_params(np.random.default_rng(0))
    devices = model.devices(params)
    network = TrainedCrossbarNetwork(spec, tuple(np.full(p.theta_shape, 1e-6) for p in spec.plans), cal, "static")
    high = faults.stuck_high[0]
    devices[0] = np.where(high, devices[0] / 2, devices[0])
    with pytest.raises(SystemExit, match="layer 0: the devices to build do not hold the fault map's stuck values"):
        bench.cnn_spice(network, None, np.zeros((1, 64)), np.zeros(1, int), tmp_path / "v", 1, 1, faults,
                        devices=devices)
    assert not (tmp_path / "v").exists()


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
    for key in ("fault_free", "oblivious", "aware"):
        assert 0.0 <= row[key] <= 1.0
    assert row["aware_agreement"] >= 0.99
    assert len(row["aware_training"]["replica_val_accuracy"]) == network["recipe"]["replica_epochs"]
    aware = tmp_path / "digits-cnn" / "rate_20" / "aware"
    assert (aware / "devices.npz").is_file() and (aware / "fault_map.npz").is_file()
