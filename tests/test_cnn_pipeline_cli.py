"""`memspice train --network` and `memspice netlist trained` on a tiny digits CNN."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memspice.cli import main
from memspice.datasets import features_to_voltages, load_digits
from memspice.train.conv_io import load_layered_network
from memspice.train.conv_model import CrossbarNetwork

NETWORK = """\
[network]
layers = [
  {kind = "conv2d", out_channels = 3, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "flatten"},
  {kind = "dense", units = 10},
]
"""
FAST = ["--epochs", "2", "--lr", "0.05", "--loss-link", "logit", "--batch-size", "32", "-q", "--json"]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibration with an inverter current table (the coupled model needs one)."""
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.fit.calibration import save_calibration
    from memspice.tech import builtin

    path = tmp_path_factory.mktemp("cal") / "cal.json"
    save_calibration(calibrate(builtin(), InverterSizing(), loads_ohm=np.geomspace(5e4, 2e6, 5),
                               current_step_v=0.0125), path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, calibration: Path) -> Path:
    base = tmp_path_factory.mktemp("cnn")
    (base / "net.toml").write_text(NETWORK)
    out = base / "coupled"
    assert main(["train", "--network", str(base / "net.toml"), "--calibration", str(calibration),
                 "--mode", "coupled", "--out", str(out), *FAST]) == 0
    return out


@pytest.mark.ngspice
def test_train_coupled_writes_a_layered_network_kernels_and_report(trained: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("network.json", "network.npz", "history.png", "history.csv", "checkpoint.npz",
                 "kernels.png", "report.md"):
        assert (trained / name).is_file(), name
    meta = json.loads((trained / "network.json").read_text())
    assert meta["version"] == 2 and meta["topology"] is None and meta["evaluator"] == "coupled"
    assert [layer["kind"] for layer in meta["layers"]["layers"]] == ["conv2d", "avgpool2d", "flatten", "dense"]
    network = load_layered_network(trained)
    assert network.spec.input_shape == (1, 8, 8)
    report = (trained / "report.md").read_text()
    assert "![" in report and "kernels.png" in report and "history.png" in report
    summary = meta["metadata"]
    assert summary["mode"] == "coupled" and summary["test_accuracy"] > 0.3  # 10 classes: chance is 0.1


@pytest.mark.ngspice
@pytest.mark.parametrize("mode", ["float", "static"])
def test_train_float_and_static_modes(mode: str, trained: Path, calibration: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK)
    out = tmp_path / mode
    assert main(["train", "--network", str(net), "--calibration", str(calibration), "--mode", mode,
                 "--out", str(out), *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == mode and summary["test_accuracy"] > 0.3
    if mode == "float":
        assert (out / "float_network.npz").is_file() and not (out / "network.json").exists()
        assert main(["netlist", "trained", "--network", str(out)]) == 2
        assert "float baseline" in capsys.readouterr().err
    else:
        assert load_layered_network(out).evaluator == "static" and (out / "kernels.png").is_file()


@pytest.mark.ngspice
def test_netlist_of_the_trained_cnn_simulates_as_its_coupled_model(trained: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    deck = tmp_path / "cnn.cir"
    assert main(["netlist", "trained", "--network", str(trained), "--sample", "3", "-o", str(deck)]) == 0
    assert main(["sim", str(deck), "-o", str(tmp_path / "cnn.csv")]) == 0
    spice = pd.read_csv(tmp_path / "cnn.csv")
    network = load_layered_network(trained)
    x = features_to_voltages(load_digits().features[3:4], network.calibration.rails.vdd,
                             network.calibration.rails.vss)
    model = CrossbarNetwork(network.calibration, network.spec, evaluator="coupled")
    out = model.forward(network.effective_conductances(), x).output[0]
    last = len(network.spec.plans) - 1
    simulated = np.array([spice[f"l{last}op{j}"].iloc[0] for j in range(10)])
    assert np.abs(simulated - out).max() < 2e-3, np.abs(simulated - out).max()
    # a batch of images is one .dc sweep
    batch = tmp_path / "batch.cir"
    assert main(["netlist", "trained", "--network", str(trained), "--sample", "3", "--count", "3",
                 "-o", str(batch)]) == 0
    assert ".dc vidx 0 2 1" in batch.read_text()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--topology", "64,10,10"], "give --topology (a dense network) or --network"),
        (["--variation", "0.1"], "--variation is not available with --network"),
        (["--mode", "load-aware"], "--mode load-aware takes dense networks only"),
        (["--dataset", "iris"], "network layer 0 (conv2d): needs a (C, H, W) feature map"),
    ],
)
def test_train_refuses_what_layered_networks_do_not_take(extra: list[str], needle: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK)
    out = tmp_path / "out"
    assert main(["train", "--network", str(net), "--out", str(out), *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("memspice: error:") and needle in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[network]\nlayers = [{kind = \"conv2d\", out_channels = 2, kernel = 3, stride = 0}, {kind = \"flatten\"}, "
         "{kind = \"dense\", units = 10}]\n", "network.layers[0] (conv2d): stride must be a positive integer"),
        ("[network]\nlayers = [{kind = \"conv2d\", out_channels = 2, kernel = 3}, {kind = \"dense\", units = 10}]\n",
         "network layer 1 (dense): needs a vector input"),
        ("[training]\nepochs = 3\n", "has no [network] table"),
        (NETWORK + "[training]\nepochs = 3\n", "holds [training]; it should hold only a [network] table"),
        ("[network\n", "is not valid TOML"),
    ],
)
def test_train_refuses_a_bad_network_file(text: str, needle: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.toml"
    net.write_text(text)
    out = tmp_path / "out"
    assert main(["train", "--network", str(net), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.ngspice
def test_netlist_trained_refuses_bad_requests(trained: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    deck = tmp_path / "x.cir"
    for argv, needle in (
        (["netlist", "trained"], "needs --network DIR"),
        (["netlist", "network", "--network", str(trained)], "--network is for `memspice netlist trained`"),
        (["netlist", "trained", "--network", str(trained), "--sample", "1797"], "but digits has 1797 (0-1796)"),
        (["netlist", "trained", "--network", str(trained), "--dataset", "iris"], "iris has 4 features"),
        (["netlist", "trained", "--network", str(trained), "--vdd", "0.4"], "differ from the network's calibration"),
        (["netlist", "trained", "--network", str(tmp_path)], "no trained network in"),
    ):
        assert main([*argv, "-o", str(deck)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)
        assert not deck.exists()


def test_chunked_predictions_equal_the_model() -> None:
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.network import NetworkSpec
    from memspice.pipeline.config import config_from_dict
    from memspice.pipeline.layered_train import ChunkedPredictions

    spec: NetworkSpec = config_from_dict({"loop": {"enabled": False}, "network": tomllib.loads(NETWORK)["network"]}
                                         ).layered_spec()
    cal = phax_reference_calibration()
    model = CrossbarNetwork(cal, spec)
    params = model.init_params(np.random.default_rng(0))
    x = features_to_voltages(load_digits().features[:10], cal.rails.vdd, cal.rails.vss)
    chunked = ChunkedPredictions(model, chunk=3)
    np.testing.assert_array_equal(chunked.predict(params, x), model.predict(params, x))
    np.testing.assert_array_equal(chunked.predict_logits(params, x), model.predict_logits(params, x))
