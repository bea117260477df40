"""memspice prune: refusals (one error line, nothing written), an end-to-end run on digits with
its report and files, and the pruned network in SPICE (no element for a masked device)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.cli import main
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import NetworkSpec
from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network
from memspice.train.hardware import FaultMap
from memspice.train.mapping import ConductanceWindow, theta_to_conductance
from memspice.train.sparsity import SparsityError, cut_fault_map


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory) -> Path:
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin

    path = tmp_path_factory.mktemp("cal") / "cal.json"
    path.write_text(json.dumps(calibrate(builtin(), InverterSizing()).to_dict()))
    return path


def _dense_network(tmp_path: Path, topology=(64, 8, 10)) -> Path:
    cal = phax_reference_calibration()
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    spec = NetworkSpec.dense(topology)
    rng = np.random.default_rng(0)
    g = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), window) for p in spec.plans)
    save_layered_network(TrainedCrossbarNetwork(spec, g, cal), tmp_path / "net")
    return tmp_path / "net"


@pytest.mark.parametrize("extra, message", [
    (["--method", "csrram", "--density", "0"], r"density must be in \(0, 1\]"),
    (["--method", "csrram", "--density", "1.5"], r"density must be in \(0, 1\]"),
    (["--method", "csrram", "--density", "0.01"], "more than its"),
    (["--method", "admm", "--targets", "row:0.5"], "1 pruning targets for a network of 2"),
    (["--method", "admm", "--targets", "kernel:0.5,none"], "needs a conv2d layer"),
    (["--method", "admm", "--targets", "tile:0.5:200x4,none"], "larger than its"),
    (["--method", "admm", "--targets", "row:0.5,column:0.5"], "output layer"),
    (["--method", "admm", "--targets", "row:0.5x,none"], "ratio must be ≥ 1"),
    (["--method", "admm", "--density", "0.5", "--tile", "4x40"], "larger than its"),
    (["--method", "admm"], "needs --targets, --density or --compression"),
])
def test_bad_targets_are_one_error_and_nothing_is_written(tmp_path, capsys, extra, message):
    net = _dense_network(tmp_path)
    out = tmp_path / "out"
    code = main(["prune", "--network", str(net), *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("memspice: error:"), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_a_fault_map_of_another_shape_is_refused(tmp_path, capsys):
    from memspice.train.fault_map import save_fault_map, seeded_fault_map

    net = _dense_network(tmp_path)
    save_fault_map(seeded_fault_map((64, 9, 10), 0.1, 0), tmp_path / "faults.npz", (64, 9, 10))
    out = tmp_path / "out"
    code = main(["prune", "--network", str(net), "--method", "admm", "--targets", "row:0.5,none",
                 "--fault-map", str(tmp_path / "faults.npz"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("memspice: error:") and "layer 0" in err[0]
    assert not out.exists()


def test_cut_fault_map_follows_the_kept_neurons():
    dense = NetworkSpec.dense((4, 3, 2))
    high = (np.zeros((3, 10), dtype=bool), np.zeros((2, 8), dtype=bool))
    high[0][2, 1] = True   # kept neuron 2, input 1
    high[1][0, 2] = True   # output 0 reads hidden neuron 2 (ip)
    high[1][1, 1] = True   # output 1 reads hidden neuron 1, which is removed
    low = tuple(np.zeros_like(h) for h in high)
    small = NetworkSpec.dense((4, 2, 2))
    cut = cut_fault_map(FaultMap(high, low), small, dense, [np.array([0, 2]), np.arange(2)])
    assert cut.stuck_high[0].shape == (2, 10) and cut.stuck_high[0][1, 1]
    assert cut.stuck_high[1].shape == (2, 6) and cut.stuck_high[1][0, 1] and cut.stuck_high[1].sum() == 1
    with pytest.raises(SparsityError, match="layer 0 is 3x10, the network's is 2x10"):
        cut_fault_map(FaultMap(high, low), small, small, None)


@pytest.mark.ngspice
@pytest.mark.slow
def test_prune_trains_prunes_reports_and_simulates(tmp_path, capsys, calibration_file):
    out = tmp_path / "pruned"
    code = main(["prune", "--calibration", str(calibration_file), "--topology", "64,12,10",
                 "--method", "admm", "--targets", "row:0.5,row:0.5", "--levels", "32",
                 "--epochs", "3", "--rounds", "2", "--round-epochs", "1", "--retrain-epochs", "2",
                 "--tile", "4x4", "--spice", "--spice-samples", "40", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dense, pruned = summary["dense"], summary["pruned"]
    assert dense["devices"] == 12 * 130 + 10 * 26
    # half the pixels of 64 and half the hidden neurons: 6 × (2·32 + 2) + 10 × (2·6 + 2)
    assert pruned["devices"] == 6 * 66 + 10 * 14
    assert pruned["compression"] == pytest.approx(dense["devices"] / pruned["devices"])
    # a dense layer builds each θ once: weights and devices count alike
    assert pruned["weights"] == pruned["devices"] and dense["weight_compression"] == 1.0
    assert 0 < pruned["tiles_built"] < pruned["tiles_total"]
    assert pruned["static_power_w"] < dense["static_power_w"]
    assert pruned["agreement"] >= 0.9 and dense["agreement"] >= 0.9
    network = load_layered_network(out)
    assert network.spec.topology == (64, 6, 10)
    assert network.spec.masks[0].theta[:, :64].any(axis=0).sum() == 32
    step = network.window.span_siemens / 31
    for g in network.conductances:
        level = (g - network.window.g_min_siemens) / step
        assert np.abs(level - np.round(level)).max() < 1e-6
    text = (out / "prune_report.md").read_text()
    assert "| admm | admm |" in text and "SPICE acc." in text
    rows = (out / "prune_report.csv").read_text().splitlines()
    assert rows[0].startswith("network,method,devices") and len(rows) == 3
    assert (out / "pareto.png").stat().st_size > 1000
    assert (out / "dense" / "network.json").is_file()


CNN_TOML = """[network]
layers = [
  {kind = "conv2d", out_channels = 2, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "flatten"},
  {kind = "dense", units = 10},
]
"""


def _cnn_network(tmp_path: Path, masked: bool = False) -> Path:
    from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten

    cal = phax_reference_calibration()
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
    rng = np.random.default_rng(0)
    g = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), window) for p in spec.plans)
    if masked:
        mask = np.ones(spec.plans[0].theta_shape, dtype=bool)
        mask[0, 0] = False
        spec = spec.with_masks((CrossbarMask(theta=mask), None))
    save_layered_network(TrainedCrossbarNetwork(spec, g, cal), tmp_path / "cnn")
    return tmp_path / "cnn"


@pytest.mark.parametrize("extra, message", [
    (["--targets", "kernel:0.5,kernel:0.5"], "network layer 3 .dense.: a kernel mask needs a conv2d layer"),
    (["--targets", "tile:0.5:21x1,none"], "a 21x1 tile is larger than its 20x2 crossbar"),
    (["--targets", "tile:0:2x1,none"], r"density must be in \(0, 1\]"),
    (["--targets", "kernel_row:1.5,none"], r"density must be in \(0, 1\]"),
    (["--targets", "column:0.5,column:0.5"], "output layer"),
    (["--method", "csrram", "--density", "0.5"], "csrram clusters need a dense network"),
    (["--masked"], "pruning starts from a network without masks"),
])
def test_bad_cnn_inputs_are_one_error_and_nothing_is_written(tmp_path, capsys, extra, message):
    net = _cnn_network(tmp_path, masked="--masked" in extra)
    extra = [e for e in extra if e != "--masked"]
    method = [] if "--method" in extra else ["--method", "admm"]
    if not extra:
        extra = ["--targets", "kernel:0.5,none"]
    out = tmp_path / "out"
    code = main(["prune", "--network", str(net), *method, *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("memspice: error:"), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_a_network_file_needs_a_calibration(tmp_path, capsys):
    toml = tmp_path / "cnn.toml"
    toml.write_text(CNN_TOML)
    out = tmp_path / "out"
    code = main(["prune", "--network", str(toml), "--method", "admm", "--targets",
                 "kernel:0.5,none", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "give --calibration to train it" in err[0]
    assert not out.exists()


@pytest.mark.ngspice
@pytest.mark.slow
def test_prune_trains_a_cnn_prunes_its_tiles_and_simulates_it(tmp_path, capsys, calibration_file):
    toml = tmp_path / "cnn.toml"
    toml.write_text(CNN_TOML)
    out = tmp_path / "pruned"
    code = main(["prune", "--network", str(toml), "--calibration", str(calibration_file),
                 "--method", "admm", "--targets", "tile:0.5:2x1,tile:0.5:2x1", "--levels", "32",
                 "--pretrain-epochs", "1", "--epochs", "1", "--rounds", "1", "--round-epochs", "1",
                 "--retrain-epochs", "1", "--lr", "0.02", "--tile", "2x1", "--spice",
                 "--spice-samples", "6", "--transient-samples", "1", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dense, pruned = summary["dense"], summary["pruned"]
    # conv: 36 positions × 2 channels × (2·9 + 2); dense: 10 × (2·18·4 + 2)
    assert dense["devices"] == 36 * 2 * 20 + 10 * 146
    assert pruned["devices"] < 0.6 * dense["devices"]
    assert pruned["tiles_built"] <= 0.5 * pruned["tiles_total"] + 10  # + one per output column
    assert pruned["energy_per_inference_j"] > 0 and pruned["transient_samples"] == 1
    network = load_layered_network(out)
    assert network.evaluator == "coupled" and network.spec.masks
    assert (out / "dense" / "network.json").is_file()
    assert "transient energy" in (out / "prune_report.md").read_text()
