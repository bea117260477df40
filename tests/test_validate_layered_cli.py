"""``memspice validate`` on layered network files: a CNN folder validated in SPICE (local pool
and Dask), and one clear error for each hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.tech import builtin
from memspice.train.conv_io import TrainedCrossbarNetwork, save_layered_network
from memspice.train.mapping import ConductanceWindow, theta_to_conductance

#: digits are 8×8 images: conv 2 k3 → pool 2 → dense 10.
DIGITS_CNN = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from memspice.characterize.calibrate import calibrate

    cal = calibrate(builtin(), InverterSizing())
    rng = np.random.default_rng(7)
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    sigma = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), window) for p in DIGITS_CNN.plans)
    directory = tmp_path_factory.mktemp("cnn") / "net"
    save_layered_network(TrainedCrossbarNetwork(DIGITS_CNN, sigma, cal), directory)
    return directory


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memspice: error: "), lines
    return lines[0]


@pytest.mark.ngspice
def test_cli_validates_a_cnn_folder_locally_and_on_dask(tmp_path: Path, network_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main

    base = ["validate", "--network", str(network_dir), "--samples", "6", "--batch-size", "3", "--json", "-q"]
    assert main([*base, "--workers", "2", "--out", str(tmp_path / "local")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "complete" and summary["n_samples"] == 6
    assert summary["model_evaluator"] == "coupled" and summary["topology"] is None
    assert summary["network"].startswith("1×8×8 → conv 2 k3 → pool 2")
    assert summary["agreement"] == 1.0 and summary["batches_simulated"] == 2
    report = (tmp_path / "local" / "report.md").read_text()
    assert "feature maps" in report.lower()
    assert (tmp_path / "local" / "feature_maps.png").is_file()

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        assert main([*base, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask")]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["layer_errors"] == summary["layer_errors"]
    assert remote["static_power_w"] == summary["static_power_w"]


def test_cli_refuses_hostile_layered_inputs(tmp_path: Path, network_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main

    out = tmp_path / "out"
    # a network folder of an unknown format version
    bad = tmp_path / "future"
    bad.mkdir()
    meta = json.loads((network_dir / "network.json").read_text())
    (bad / "network.json").write_text(json.dumps({**meta, "version": 99}))
    (bad / "network.npz").write_bytes((network_dir / "network.npz").read_bytes())
    assert main(["validate", "--network", str(bad), "--samples", "2", "--out", str(out)]) == 2
    assert "version 99" in _error_line(capsys)
    # data that does not fit the input shape: iris has 4 features, the network takes 1×8×8
    assert main(["validate", "--network", str(network_dir), "--dataset", "iris", "--out", str(out)]) == 2
    assert "takes 64 inputs" in _error_line(capsys)
    # options the layered path does not have yet
    assert main(["validate", "--network", str(network_dir), "--variation", "0.1", "--out", str(out)]) == 2
    assert "--variation" in _error_line(capsys)
    assert main(["validate", "--network", str(network_dir), "--evaluator", "load-aware", "--samples", "2",
                 "--out", str(out)]) == 2
    assert "load-aware" in _error_line(capsys)
    # the folder twice, or not at all
    assert main(["validate", str(network_dir), "--network", str(network_dir), "--out", str(out)]) == 2
    assert "once" in _error_line(capsys)
    assert main(["validate", "--out", str(out)]) == 2
    assert "no network folder" in _error_line(capsys)
    assert not out.exists(), "nothing written"
