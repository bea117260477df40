"""Hostile and careless inputs across every command.

Each case runs the real CLI entry point (in-process, so the battery stays fast) and asserts
what a user must see: exactly one line on stderr starting ``memspice: error:``, exit status 2,
no traceback, no file left half-written or created, and no input changed. Most cases fail
before any simulation; the few that need ngspice carry the marker.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from memspice.circuit.wiring import layer_shapes
from memspice.cli import main
from memspice.fit.calibration import phax_reference_calibration, save_calibration
from memspice.train.network_io import TrainedNetwork, save_network

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = (64, 3, 10)  # digits-shaped, tiny


# --------------------------------------------------------------------------------------------
# fixtures and helpers


def write_network(directory: Path, *, wn_m: float | None = None) -> Path:
    """A tiny digits-shaped network (random conductances in the PHAX window)."""
    cal = phax_reference_calibration()
    if wn_m is not None:
        import dataclasses

        source = {**cal.source, "wn_m": repr(wn_m), "wp_m": repr(1.0e-6), "ln_m": repr(0.1e-6), "lp_m": repr(0.1e-6)}
        cal = dataclasses.replace(cal, source=source)
    rng = np.random.default_rng(3)
    g = tuple(rng.uniform(cal.device.g_min_siemens, cal.device.g_max_siemens, s.matrix_shape)
              for s in layer_shapes(TOPOLOGY))
    save_network(TrainedNetwork(TOPOLOGY, g, cal), directory)
    return directory


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    dtype = {0x08: ">u1", 0x0D: ">f4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + np.asarray(array, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_mnist(directory: Path, n: int = 20, labels: np.ndarray | None = None,
                images: np.ndarray | None = None, image_type: int = 0x08) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28)) if images is None else images
    labels = rng.integers(0, 10, n) if labels is None else labels
    write_idx(directory / "t10k-images-idx3-ubyte", images, image_type)
    write_idx(directory / "t10k-labels-idx1-ubyte", labels)
    return directory


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory (the working directory) with a tiny network and a calibration."""
    monkeypatch.chdir(tmp_path)
    write_network(tmp_path / "net")
    save_calibration(phax_reference_calibration(), tmp_path / "cal.json")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and directory under ``root``: content digest and mode."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_dir():
            state[key] = ("<dir>", path.stat().st_mode)
        else:
            state[key] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return state


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``memspice ARGV`` in-process: (exit status, stdout, stderr). Any exception fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str = "") -> str:
    lines = err.strip("\n").splitlines()
    assert code == 2, f"exit status {code}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("memspice: error: "), lines[0]
    assert "Traceback" not in err
    assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def check_refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str], needle: str = "") -> str:
    """Run ``argv``: one error line, exit 2, and ``root`` exactly as before (nothing written or changed)."""
    before = snapshot(root)
    code, _, err = run_cli(argv, capsys)
    line = assert_one_line_error(code, err, needle)
    after = snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    return line


# --------------------------------------------------------------------------------------------
# argparse mistakes: one line, no usage dump

ARGPARSE_CASES = [
    (["bogus-command"], "invalid choice"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["train", "--epochs", "ten"], "--epochs"),
    (["train", "--dataset", "cifar"], "--dataset"),
    (["train", "--topology", "64,x,10"], "--topology"),
    (["validate"], "network"),
    (["validate", "net", "--split", "half"], "--split"),
    (["calibrate"], "--out"),
    (["characterize"], "--out"),
    (["memristor"], "--out"),
    (["loop"], "network"),
    (["hybrid", "net", "--mode", "magic"], "--mode"),
    (["corners", "--hidden", "many"], "--hidden"),
    (["run", "a.toml", "b.toml"], "unrecognized arguments"),
    (["run", "--quiet", "--verbose"], "not allowed with"),
    (["validate", "net", "--resume", "--force"], "not allowed with"),
    (["netlist", "transistor"], "invalid choice"),
    (["netlist", "inverter", "--vdd", "high"], "--vdd"),
]


@pytest.mark.parametrize(("argv", "needle"), ARGPARSE_CASES, ids=[" ".join(a) for a, _ in ARGPARSE_CASES])
def test_argparse_mistakes_are_one_line(argv, needle, workspace, capsys) -> None:
    line = check_refused(argv, workspace, capsys, needle)
    assert "usage:" not in line and "--help" in line


def test_help_is_still_the_full_help(capsys) -> None:
    code, out, err = run_cli(["train", "--help"], capsys)
    assert code == 0 and out.startswith("usage: memspice train") and "--lr" in out and not err


# --------------------------------------------------------------------------------------------
# impossible values, refused at the edge (CLI options)

VALUE_CASES = [
    # train
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "-5"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--levels", "-3"], "--levels"),
    (["train", "--levels", "1"], "--levels"),
    (["train", "--fault-rate", "1.5"], "--fault-rate"),
    (["train", "--fault-rate", "nan"], "--fault-rate"),
    (["train", "--variation", "-0.1"], "--variation"),
    (["train", "--variation", "inf"], "--variation"),
    (["train", "--mc-trials", "0"], "--mc-trials"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--warmup-epochs", "-1"], "--warmup-epochs"),
    (["train", "--warmup-epochs", "40", "--epochs", "30"], "--warmup-epochs"),
    (["train", "--logit-temperature", "0"], "--logit-temperature"),
    (["train", "--average-decay", "1"], "--average-decay"),
    (["train", "--grad-clip-norm", "-1"], "--grad-clip-norm"),
    (["train", "--lr-floor-fraction", "1"], "--lr-floor-fraction"),
    (["train", "--topology", "64,0,10"], "--topology"),
    (["train", "--topology", "64,-3,10"], "--topology"),
    (["train", "--topology", "64"], "--topology"),
    (["train", "--topology", "10,32,10"], "topology"),
    # validate
    (["validate", "net", "--samples", "0"], "--samples"),
    (["validate", "net", "--batch-size", "0"], "--batch-size"),
    (["validate", "net", "--workers", "0"], "--workers"),
    (["validate", "net", "--timeout", "0"], "--timeout"),
    (["validate", "net", "--timeout", "nan"], "--timeout"),
    (["validate", "net", "--variation", "-1"], "--variation"),
    (["validate", "net", "--fault-rate", "2"], "--fault-rate"),
    (["validate", "net", "--wire-ohm", "-5"], "--wire-ohm"),
    (["validate", "net", "--draws", "0"], "--draws"),
    (["validate", "net", "--transient", "-1"], "--transient"),
    (["validate", "net", "--period", "0"], "--period"),
    (["validate", "net", "--rise", "-1"], "--rise"),
    (["validate", "net", "--points-per-period", "0"], "--points-per-period"),
    (["validate", "net", "--wn", "0"], "--wn"),
    (["validate", "net", "--lp", "nan"], "--lp"),
    (["validate", "net", "--temp", "nan"], "--temp"),
    (["validate", "net", "--temp", "-300"], "--temp"),
    (["validate", "net", "--corner", "ff"], "tt corner"),
    (["validate", "net", "--evaluator", "magic"], "magic"),
    # calibrate / characterize / memristor
    (["calibrate", "--out", "c.json", "--levels", "-3"], "--levels"),
    (["calibrate", "--out", "c.json", "--levels", "4"], "--levels"),
    (["calibrate", "--out", "c.json", "--degree", "0"], "--degree"),
    (["calibrate", "--out", "c.json", "--load", "0"], "--load"),
    (["calibrate", "--out", "c.json", "--load", "-1e6"], "--load"),
    (["calibrate", "--out", "c.json", "--g-min", "-1e-7", "--g-max", "8e-6"], "--g-min"),
    (["calibrate", "--out", "c.json", "--g-min", "9e-6", "--g-max", "8e-6"], "g_min"),
    (["calibrate", "--out", "c.json", "--g-min", "1e-7"], "--g-max"),
    (["calibrate", "--out", "c.json", "--sigma", "-1e-8"], "--sigma"),
    (["calibrate", "--out", "c.json", "--timeout", "-1"], "--timeout"),
    (["calibrate", "--out", "c.json", "--loads", "1e5,abc"], "load grid"),
    (["calibrate", "--out", "c.json", "--loads", "1e5,-2e5"], "positive"),
    (["calibrate", "--out", "c.json", "--loads", "geom:1e5:2e6:100000000"], "count"),
    (["calibrate", "--out", "c.json", "--sizes", "1,2,3"], "four numbers"),
    (["calibrate", "--out", "c.json", "--tech", "user"], "--lib"),
    (["calibrate", "--out", "c.json", "--corner", "ff"], "tt corner"),
    (["calibrate", "--out", "c.json", "--vdd", "-1"], "vdd"),
    (["characterize", "--out", "o", "--mc", "-1"], "--mc"),
    (["characterize", "--out", "o", "--step", "0"], "--step"),
    (["characterize", "--out", "o", "--step", "1e-12"], "sweep points"),
    (["characterize", "--out", "o", "--step", "0.9"], "fewer than 21 points"),
    (["memristor", "--out", "o", "--width", "1"], "memory"),
    (["characterize", "--out", "o", "--load", "nan"], "--load"),
    (["characterize", "--out", "o", "--avt", "-5"], "--avt"),
    (["characterize", "--out", "o", "--sigma-w", "-0.1"], "--sigma-w"),
    (["characterize", "--out", "o", "--temperatures", "20,abc"], "temperatures"),
    (["characterize", "--out", "o", "--supplies", "inf"], "supplies"),
    (["memristor", "--out", "o", "--pulses", "0"], "--pulses"),
    (["memristor", "--out", "o", "--amplitude", "-1"], "--amplitude"),
    (["memristor", "--out", "o", "--width", "0"], "--width"),
    (["memristor", "--out", "o", "--read", "nan"], "--read"),
    (["memristor", "--out", "o", "--sigma", "0"], "--sigma"),
    # loop / hybrid / corners
    (["loop", "net", "--epochs", "0"], "--epochs"),
    (["loop", "net", "--lr", "inf"], "--lr"),
    (["loop", "net", "--tolerance-mv", "0"], "--tolerance-mv"),
    (["loop", "net", "--agreement", "1.5"], "--agreement"),
    (["loop", "net", "--max-rounds", "-1"], "--max-rounds"),
    (["loop", "net", "--batch-size", "0"], "--batch-size"),
    (["loop", "net", "--samples", "0"], "--samples"),
    (["hybrid", "net", "--iterations", "0"], "--iterations"),
    (["hybrid", "net", "--lr", "-1"], "--lr"),
    (["hybrid", "net", "--workers", "0"], "--workers"),
    (["corners", "--hidden", "0"], "--hidden"),
    (["corners", "--epochs", "0"], "--epochs"),
    (["corners", "--corners", ","], "--corners"),
    (["corners", "--tech", "builtin", "--corners", "tt,ss"], "temperatures"),
    # shared technology options
    (["netlist", "inverter", "--wn", "-1"], "--wn"),
    (["netlist", "inverter", "--temp", "inf"], "--temp"),
    (["netlist", "inverter", "--corner", "ss"], "tt corner"),
]


@pytest.mark.parametrize(("argv", "needle"), VALUE_CASES, ids=[" ".join(a) for a, _ in VALUE_CASES])
def test_impossible_values_are_refused(argv, needle, workspace, capsys) -> None:
    check_refused(argv, workspace, capsys, needle)


# --------------------------------------------------------------------------------------------
# configuration files (memspice run)

CONFIG_CASES = {
    "binary": (b"\x00\xff\xfe garbage \x80", "not text"),
    "not toml": (b"[training\nepochs = ", "not valid TOML"),
    "unknown section": (b"[trainig]\nepochs = 3\n", "unknown section"),
    "unknown key": (b"[training]\nepoch = 3\n", "unknown key"),
    "wrong type": (b"[training]\nepochs = \"many\"\n", "training.epochs"),
    "bool as int": (b"[training]\nepochs = true\n", "training.epochs"),
    "lr inf": (b"[training]\nlearning_rate = inf\n", "training.learning_rate"),
    "lr nan": (b"[training]\nlearning_rate = nan\n", "training.learning_rate"),
    "negative hidden": (b"[training]\nhidden = [-4]\n", "training.hidden"),
    "section not a table": (b"training = 3\n", "training"),
    "builtin corner ff": (b"[technology]\ncorner = \"ff\"\n", "technology.corner"),
    "sky130 corner xx": (b"[technology]\nname = \"sky130\"\ncorner = \"xx\"\n", "technology.corner"),
    "rails inverted": (b"[technology]\nvdd = -0.25\nvss = 0.25\n", "technology.vdd"),
    "device window": (b"[device]\ng_min_us = 9.0\ng_max_us = 8.0\n", "device.g_max_us"),
    "levels": (b"[device]\nlevels = -3\n", "device.levels"),
    "test fraction": (b"[dataset]\ntest_fraction = 1.5\n", "dataset.test_fraction"),
    "mnist without dir": (b"[dataset]\nname = \"mnist\"\n", "memspice data mnist"),
    "mnist dir missing": (b"[dataset]\nname = \"mnist\"\nmnist_dir = \"nowhere\"\n", "does not exist"),
    "timeout": (b"[validation]\ntimeout_s = -1.0\n", "validation.timeout_s"),
    "million-unit layer": (b"[training]\nhidden = [1000000]\n", "memory"),
    "one training sample": (b"[dataset]\nmax_train = 1\n", "validation fraction"),
    "negative cap": (b"[dataset]\nmax_test = -1\n", "dataset.max_test"),
    "blank ngspice": (b"[validation]\nngspice = \"   \"\n", "validation.ngspice"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_configuration_files(case, workspace, capsys) -> None:
    text, needle = CONFIG_CASES[case]
    (workspace / "bad.toml").write_bytes(text)
    check_refused(["run", "bad.toml", "--run-dir", "runs/x"], workspace, capsys, needle)


def test_configuration_that_is_a_directory(workspace, capsys) -> None:
    (workspace / "conf.toml").mkdir()
    check_refused(["run", "conf.toml", "--run-dir", "runs/x"], workspace, capsys, "is a directory")


def test_configuration_that_is_missing(workspace, capsys) -> None:
    check_refused(["run", "missing.toml"], workspace, capsys, "not found")


# --------------------------------------------------------------------------------------------
# network files


def _corrupt_network(directory: Path, case: str) -> None:
    meta_path, npz_path = directory / "network.json", directory / "network.npz"
    meta = json.loads(meta_path.read_text())
    with np.load(npz_path) as data:
        arrays = {k: np.array(data[k]) for k in data.files}

    def save(**changed: np.ndarray) -> None:
        with open(npz_path, "wb") as handle:
            np.savez(handle, **{**arrays, **changed})

    if case == "json garbage":
        meta_path.write_text("{not json")
    elif case == "json binary":
        meta_path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    elif case == "json list":
        meta_path.write_text("[1, 2, 3]")
    elif case == "json empty":
        meta_path.write_text("")
    elif case == "json missing":
        meta_path.unlink()
    elif case == "json directory":
        meta_path.unlink()
        meta_path.mkdir()
    elif case == "wrong version":
        meta_path.write_text(json.dumps({**meta, "version": 99}))
    elif case == "no calibration":
        meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "calibration"}))
    elif case == "calibration a string":
        meta_path.write_text(json.dumps({**meta, "calibration": "phax"}))
    elif case == "topology strings":
        meta_path.write_text(json.dumps({**meta, "topology": ["64", "three", "10"]}))
    elif case == "topology negative":
        meta_path.write_text(json.dumps({**meta, "topology": [64, -3, 10]}))
    elif case == "topology a number":
        meta_path.write_text(json.dumps({**meta, "topology": 64}))
    elif case == "topology other sizes":
        meta_path.write_text(json.dumps({**meta, "topology": [64, 4, 10]}))
    elif case == "digest mismatch":
        meta_path.write_text(json.dumps({**meta, "calibration_digest": "0" * 64}))
    elif case == "metadata a list":
        meta_path.write_text(json.dumps({**meta, "metadata": [1, 2]}))
    elif case == "npz garbage":
        npz_path.write_bytes(b"this is not an archive")
    elif case == "npz truncated":
        npz_path.write_bytes(npz_path.read_bytes()[:200])
    elif case == "npz empty":
        npz_path.write_bytes(b"")
    elif case == "npz missing":
        npz_path.unlink()
    elif case == "npz lacks a layer":
        arrays.pop("layer1")
        save()
    elif case == "npz wrong shape":
        save(layer0=np.ones((2, 2)))
    elif case == "npz strings":
        save(layer0=np.full(arrays["layer0"].shape, "x"))
    elif case == "npz nan":
        save(layer0=np.full(arrays["layer0"].shape, np.nan))
    elif case == "npz negative":
        save(layer0=-arrays["layer0"])
    elif case == "npz pickled objects":
        with open(npz_path, "wb") as handle:
            np.savez(handle, layer0=np.array([{"a": 1}], dtype=object), layer1=arrays["layer1"])
    elif case == "fault map missing":
        meta_path.write_text(json.dumps({**meta, "has_fault_map": True}))
    else:  # pragma: no cover
        raise AssertionError(case)


NETWORK_CASES = ["json garbage", "json binary", "json list", "json empty", "json missing", "json directory",
                 "wrong version", "no calibration", "calibration a string", "topology strings",
                 "topology negative", "topology a number", "topology other sizes", "digest mismatch",
                 "metadata a list", "npz garbage", "npz truncated", "npz empty", "npz missing", "npz lacks a layer",
                 "npz wrong shape", "npz strings", "npz nan", "npz negative", "npz pickled objects",
                 "fault map missing"]


@pytest.mark.parametrize("case", NETWORK_CASES)
@pytest.mark.parametrize("command", ["validate", "loop"])
def test_broken_network_files(case, command, workspace, capsys) -> None:
    _corrupt_network(workspace / "net", case)
    check_refused([command, "net", "--samples", "2"], workspace, capsys)


@pytest.mark.parametrize("where", ["missing", "a file", "empty directory"])
def test_network_folder_itself_wrong(where, workspace, capsys) -> None:
    target = workspace / "other"
    if where == "a file":
        target.write_text("x")
    elif where == "empty directory":
        target.mkdir()
    check_refused(["validate", "other"], workspace, capsys, "network")


# --------------------------------------------------------------------------------------------
# calibration files

CALIBRATION_CASES = {
    "garbage": "{nope",
    "binary": b"\xff\xfe\x00\x81",
    "a list": "[]",
    "no format": "{}",
    "other version": None,
    "missing activation": None,
    "string coefficient": None,
    "NaN coefficient": None,
    "residual a word": None,
    "source a list": None,
    "rails strings": None,
    "levels a float": None,
    "current table ragged": None,
}


def _bad_calibration(path: Path, case: str) -> None:
    value = CALIBRATION_CASES[case]
    if isinstance(value, bytes):
        path.write_bytes(value)
        return
    if isinstance(value, str):
        path.write_text(value)
        return
    doc = phax_reference_calibration().to_dict()
    if case == "other version":
        doc["version"] = 7
    elif case == "missing activation":
        del doc["activation"]
    elif case == "string coefficient":
        doc["activation"]["inverting"]["c4"] = "steep"
    elif case == "NaN coefficient":
        path.write_text(json.dumps(doc).replace('"c4": 31.8', '"c4": NaN'))
        return
    elif case == "residual a word":
        doc["residuals"] = {"rms": "small"}
    elif case == "source a list":
        doc["source"] = ["a", "b"]
    elif case == "rails strings":
        doc["rails"] = {"vdd": "0.25", "vss": "-0.25"}
    elif case == "levels a float":
        doc["device"]["levels"] = 2.5
    elif case == "current table ragged":
        doc["inverter_current"] = {"v_in": [0, 1, 2, 3], "v_out": [0, 1, 2, 3], "current_a": [[1, 2]],
                                   "interp_rms_a": 0, "interp_max_a": 0}
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("case", sorted(CALIBRATION_CASES))
@pytest.mark.parametrize("command", ["train", "validate"])
def test_broken_calibration_files(case, command, workspace, capsys) -> None:
    _bad_calibration(workspace / "bad_cal.json", case)
    argv = (["train", "--calibration", "bad_cal.json", "--epochs", "1", "--out", "t"] if command == "train"
            else ["validate", "net", "--calibration", "bad_cal.json", "--samples", "2"])
    line = check_refused(argv, workspace, capsys)
    assert "bad_cal.json" in line


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_calibration_path_wrong(kind, workspace, capsys) -> None:
    if kind == "directory":
        (workspace / "caldir").mkdir()
    check_refused(["train", "--calibration", "caldir", "--out", "t"], workspace, capsys, "caldir")


# --------------------------------------------------------------------------------------------
# MNIST files


def _mnist_case(directory: Path, case: str) -> None:
    if case == "corrupt gzip":
        write_mnist(directory)
        images = directory / "t10k-images-idx3-ubyte"
        blob = gzip.compress(images.read_bytes())
        images.unlink()
        (directory / "t10k-images-idx3-ubyte.gz").write_bytes(blob[:20] + b"\x00" * 40 + blob[60:])
    elif case == "truncated gzip":
        write_mnist(directory)
        images = directory / "t10k-images-idx3-ubyte"
        blob = gzip.compress(images.read_bytes())
        images.unlink()
        (directory / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    elif case == "truncated idx":
        write_mnist(directory)
        images = directory / "t10k-images-idx3-ubyte"
        images.write_bytes(images.read_bytes()[:1000])
    elif case == "bad magic":
        write_mnist(directory)
        (directory / "t10k-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not idx at all")
    elif case == "label out of range":
        write_mnist(directory, labels=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 200] * 2))
    elif case == "NaN pixels":
        images = np.random.default_rng(1).uniform(0, 255, (20, 28, 28))
        images[3, 5, 5] = np.nan
        write_mnist(directory, images=images, image_type=0x0D)
    elif case == "count mismatch":
        write_mnist(directory)
        write_idx(directory / "t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    elif case == "empty folder":
        directory.mkdir()
    elif case == "huge header":
        directory.mkdir()
        header = bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**31, 2**31)
        (directory / "t10k-images-idx3-ubyte").write_bytes(header + b"\x00" * 16)
        write_idx(directory / "t10k-labels-idx1-ubyte", np.zeros(2, dtype=np.uint8))
    else:  # pragma: no cover
        raise AssertionError(case)


MNIST_CASES = ["corrupt gzip", "truncated gzip", "truncated idx", "bad magic", "label out of range", "NaN pixels",
               "count mismatch", "empty folder", "huge header"]


@pytest.mark.parametrize("case", MNIST_CASES)
@pytest.mark.parametrize("command", ["train", "validate", "run"])
def test_broken_mnist(case, command, workspace, capsys) -> None:
    _mnist_case(workspace / "mnist", case)
    if command == "train":
        argv = ["train", "--dataset", "mnist", "--mnist-dir", "mnist", "--epochs", "1", "--out", "t"]
    elif command == "validate":
        argv = ["validate", "net", "--dataset", "mnist", "--mnist-dir", "mnist", "--samples", "2"]
    else:
        (workspace / "m.toml").write_text('[dataset]\nname = "mnist"\nmnist_dir = "mnist"\n')
        argv = ["run", "m.toml", "--run-dir", "runs/m"]
    check_refused(argv, workspace, capsys)


def test_mnist_dir_is_a_file(workspace, capsys) -> None:
    (workspace / "mnist").write_text("not a folder")
    check_refused(["train", "--dataset", "mnist", "--mnist-dir", "mnist", "--out", "t"], workspace, capsys, "mnist")


# --------------------------------------------------------------------------------------------
# destinations: directories where files go, files where directories go, read-only places


def read_only_destination(tmp_path: Path) -> Path:
    """A directory nobody may write into (root ignores mode bits, so root gets sysfs)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "out"
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs a read-only place to write to")
    return Path("/sys/memspice-hostile-test/out")


def test_calibrate_out_is_a_directory(workspace, capsys) -> None:
    (workspace / "caldir").mkdir()
    check_refused(["calibrate", "--out", "caldir"], workspace, capsys, "is a directory")


def test_calibrate_out_under_a_file(workspace, capsys) -> None:
    (workspace / "afile").write_text("x")
    check_refused(["calibrate", "--out", "afile/c.json"], workspace, capsys, "afile")


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1", "--out", "{dest}"],
    ["validate", "net", "--samples", "2", "--out", "{dest}"],
    ["run", "--run-dir", "{dest}"],
    ["calibrate", "--out", "{dest}/c.json"],
    ["characterize", "--out", "{dest}"],
    ["memristor", "--out", "{dest}"],
], ids=lambda a: a[0])
def test_read_only_destinations(argv, workspace, capsys) -> None:
    dest = read_only_destination(workspace)
    line = check_refused([a.replace("{dest}", str(dest)) for a in argv], workspace, capsys)
    assert "writable" in line or "ermission" in line or "not permitted" in line


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1", "--out", "afile"],
    ["validate", "net", "--samples", "2", "--out", "afile"],
    ["run", "--run-dir", "afile"],
    ["characterize", "--out", "afile"],
    ["memristor", "--out", "afile"],
    ["train", "--epochs", "1", "--out", "afile/sub"],
], ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_output_directory_that_is_a_file(argv, workspace, capsys) -> None:
    (workspace / "afile").write_text("precious")
    check_refused(argv, workspace, capsys, "afile")
    assert (workspace / "afile").read_text() == "precious"


# --------------------------------------------------------------------------------------------
# resuming from damaged state


def _checkpoint_case(path: Path, case: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if case == "garbage":
        path.write_bytes(b"garbage")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no meta":
        with open(path, "wb") as handle:
            np.savez(handle, param0=np.zeros(3))
    elif case == "meta not json":
        with open(path, "wb") as handle:
            np.savez(handle, meta=np.array("{oops"))
    elif case == "meta missing keys":
        with open(path, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps({"n_params": 1})), param0=np.zeros(3), best0=np.zeros(3))
    elif case == "truncated zip":
        with open(path, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps({"n_params": 0})), big=np.zeros(1000))
        path.write_bytes(path.read_bytes()[:300])
    elif case == "strings as params":
        meta = {"n_params": 1, "epoch": 1, "best_epoch": 1, "best_val": None, "lr": 0.1, "history": [],
                "config": {}, "bad_epochs": 0}
        with open(path, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), param0=np.array(["a"]), best0=np.array(["a"]))
    else:  # pragma: no cover
        raise AssertionError(case)


@pytest.mark.parametrize("case", ["garbage", "empty", "no meta", "meta not json", "meta missing keys",
                                  "truncated zip", "strings as params"])
def test_train_resume_with_a_damaged_checkpoint(case, workspace, capsys) -> None:
    _checkpoint_case(workspace / "t" / "checkpoint.npz", case)
    line = check_refused(["train", "--dataset", "iris", "--epochs", "1", "--out", "t", "--resume", "--quiet"],
                         workspace, capsys, "checkpoint")
    assert "delete" in line


STAGES_CASES = {"garbage": b"{oops", "binary": b"\xff\xd8\xff\xe0", "a list": b"[1, 2]",
                "entry not a table": b'{"characterize": 3}', "no fingerprint": b'{"train": {"summary": {}}}'}


@pytest.mark.parametrize("case", sorted(STAGES_CASES))
def test_run_resume_with_damaged_stages_json(case, workspace, capsys) -> None:
    run_dir = workspace / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "stages.json").write_bytes(STAGES_CASES[case])
    line = check_refused(["run", "--run-dir", str(run_dir)], workspace, capsys, "stages.json")
    assert "--force" in line


@pytest.mark.parametrize("content", [b"{oops", b"\xff\xfe", b"[]", b'{"fingerprint": 7}', None])
def test_damaged_started_json_means_start_fresh(content, tmp_path) -> None:
    from memspice.pipeline.stages import STARTED, _started_fingerprint

    if content is None:
        (tmp_path / STARTED).mkdir()
    else:
        (tmp_path / STARTED).write_bytes(content)
    assert _started_fingerprint(tmp_path) is None


def test_second_run_on_a_locked_directory_fails_at_once(workspace, capsys) -> None:
    from memspice.pipeline.run import run_dir_lock

    run_dir = workspace / "runs" / "busy"
    run_dir.mkdir(parents=True)
    with run_dir_lock(run_dir):
        line = check_refused(["run", "--run-dir", str(run_dir)], workspace, capsys, "in use")
    assert str(run_dir) in line and str(os.getpid()) in line
    with run_dir_lock(run_dir):  # released: it can be taken again
        pass


# --------------------------------------------------------------------------------------------
# size limits, refused with the estimate before any work


@pytest.mark.parametrize("argv", [
    ["train", "--topology", "64,1000000,10", "--epochs", "1", "--out", "t"],
    ["train", "--topology", "64,300000,300000,10", "--epochs", "1", "--out", "t"],
    ["memristor", "--pulses", "100000000", "--out", "m"],
], ids=["million-unit layer", "two huge layers", "1e8 pulses"])
def test_jobs_too_large_for_memory(argv, workspace, capsys) -> None:
    line = check_refused(argv, workspace, capsys, "memory")
    assert "GB" in line or "TB" in line


def test_memory_estimates_scale_and_refuse() -> None:
    from memspice.budget import pulse_train_bytes, require, training_bytes
    from memspice.errors import ConfigError

    small = training_bytes((64, 32, 10), 1437, 16)
    assert 1e5 < small < 1e9
    assert training_bytes((64, 1_000_000, 10), 1437, 16) > 1e10
    assert pulse_train_bytes(100) < 1e7 < pulse_train_bytes(10**8)
    require(small, "a small job", available=10**9)
    with pytest.raises(ConfigError, match=r"needs about 2 GB of memory, but only 1 GB"):
        require(2e9, "a big job", available=10**9)


# --------------------------------------------------------------------------------------------
# sizing: validate simulates at the sizing the network was calibrated at


def test_validate_refuses_a_sizing_that_contradicts_the_calibration(workspace, capsys) -> None:
    write_network(workspace / "wide", wn_m=1.2e-6)
    line = check_refused(["validate", "wide", "--wn", "0.6", "--samples", "2"], workspace, capsys, "--wn 0.6")
    assert "Wn = 1.2 µm" in line


def test_validate_uses_the_recorded_sizing(tmp_path) -> None:
    import argparse

    from memspice.train.network_io import load_network
    from memspice.validate.command import sizing_of

    network = load_network(write_network(tmp_path / "wide", wn_m=1.2e-6))
    args = argparse.Namespace(wn=None, wp=None, ln=None, lp=1e-1, tech="builtin", flavor="lvt")
    sizing = sizing_of(args, network)  # --lp repeats the recorded 0.1 µm: accepted
    assert sizing.wn_m == pytest.approx(1.2e-6) and sizing.wp_m == pytest.approx(1.0e-6)
    plain = load_network(write_network(tmp_path / "plain"))  # no recorded sizing: the options / preset
    assert sizing_of(argparse.Namespace(wn=2.0, wp=None, ln=None, lp=None, tech="builtin", flavor="lvt"),
                     plain).wn_m == pytest.approx(2e-6)


def test_validate_network_api_refuses_a_conflicting_sizing(tmp_path) -> None:
    from memspice.circuit.builders import InverterSizing
    from memspice.errors import ConfigError
    from memspice.tech import builtin
    from memspice.train.network_io import load_network
    from memspice.validate.api import validate_network

    network = load_network(write_network(tmp_path / "wide", wn_m=1.2e-6))
    x = np.zeros((2, TOPOLOGY[0]))
    with pytest.raises(ConfigError, match="differs from the one the network's calibration was made at"):
        validate_network(network, builtin(), x, np.array([0, 1]), tmp_path / "out", sizing=InverterSizing())
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# output files: strict JSON, the user's umask


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_train_outputs_are_strict_json_with_the_users_permissions(workspace, capsys) -> None:
    old = os.umask(0o022)
    try:
        code, out, err = run_cli(["train", "--dataset", "iris", "--topology", "4,3,3", "--epochs", "1", "--out", "t",
                                  "--json", "--quiet"], capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    _strict(out)
    for name in ("network.json",):
        _strict((workspace / "t" / name).read_text())
    for name in ("network.json", "network.npz"):
        assert (workspace / "t" / name).stat().st_mode & 0o777 == 0o644


def test_strict_json_helpers() -> None:
    from memspice.safe_io import dumps_strict, json_safe

    value = {"a": float("nan"), "b": [np.float64("inf"), 1.5, np.int64(3)], "c": np.array([1.0, np.nan])}
    assert json_safe(value) == {"a": None, "b": [None, 1.5, 3], "c": [1.0, None]}
    assert _strict(dumps_strict(value)) == {"a": None, "b": [None, 1.5, 3], "c": [1.0, None]}


def test_pipeline_summary_json_has_no_nan(tmp_path) -> None:
    pytest.importorskip("markdown")
    from memspice.pipeline.report import write_report

    summaries = {"train": {"model_test_accuracy": float("nan"), "best_epoch": 3},
                 "validate": {"agreement": float("inf"), "layer_errors": [{"layer": 0, "output": "outp", "rms_v": float("nan")}]}}
    files = write_report(tmp_path, summaries, "")
    data = _strict(files["summary_json"].read_text())
    assert data["stages"]["train"]["model_test_accuracy"] is None


def test_atomic_writes_honour_the_umask(tmp_path) -> None:
    from memspice.safe_io import write_text_atomic

    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "report.md", "hello")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


# --------------------------------------------------------------------------------------------
# closed pipes, and the real process (no traceback from the console entry point)


def _memspice(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "memspice.cli", *args], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_json_into_a_closed_pipe(tmp_path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `memspice ... --json | head -c0` once head has exited
    try:
        process = _memspice("train", "--dataset", "iris", "--topology", "4,3,3", "--epochs", "1", "--quiet",
                            "--json", "--out", str(tmp_path / "t"), stdout=write_end)
    finally:
        os.close(write_end)
    _, err = process.communicate(timeout=120)
    # Training without a calibration warns first (a warning, not a second error line).
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("memspice: warning:"))
    line = assert_one_line_error(process.returncode, err, "pipe")
    assert "BrokenPipe" not in line


def test_console_entry_point_gives_one_line(tmp_path) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\x00\x01\x02\xff")
    process = _memspice("run", str(tmp_path / "bin.toml"), "--run-dir", str(tmp_path / "r"), stdout=subprocess.PIPE)
    _, err = process.communicate(timeout=60)
    assert_one_line_error(process.returncode, err, "bin.toml")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------
# with the simulator: validation resume from damaged state, summary.json


@pytest.fixture(scope="module")
def validated_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished validation of the tiny network on 4 samples in 2 batches (simulated once)."""
    root = tmp_path_factory.mktemp("validated")
    write_network(root / "net")
    code = main(["validate", str(root / "net"), "--samples", "4", "--batch-size", "2", "--workers", "1",
                 "--out", str(root / "v"), "--json"])
    assert code == 0
    return root / "v"


@pytest.fixture
def validated(validated_once: Path, workspace: Path) -> Path:
    """A copy of that validation in the workspace, next to the same network."""
    import shutil

    return Path(shutil.copytree(validated_once, workspace / "v"))


@pytest.mark.ngspice
def test_validation_summary_is_strict_json_and_records_the_sizing(validated) -> None:
    summary = _strict((validated / "summary.json").read_text())
    assert summary["sizing_m"]["wn_m"] == pytest.approx(0.6e-6)


@pytest.mark.ngspice
@pytest.mark.parametrize("case", ["manifest garbage", "manifest binary", "batch garbage", "batch truncated",
                                  "batch of other samples", "batch without samples", "batch lacks outputs"])
def test_validate_resume_with_damaged_state(case, validated, workspace, capsys) -> None:
    batch = sorted((validated / "batches").glob("dc_*.npz"))[0]
    with np.load(batch) as data:
        arrays = {k: np.array(data[k]) for k in data.files}

    def save(values: dict[str, np.ndarray]) -> None:
        with open(batch, "wb") as handle:
            np.savez(handle, **values)

    if case == "manifest garbage":
        (validated / "manifest.json").write_text("{oops")
    elif case == "manifest binary":
        (validated / "manifest.json").write_bytes(b"\xff\xfe\xfd")
    elif case == "batch garbage":
        batch.write_bytes(b"garbage")
    elif case == "batch truncated":
        batch.write_bytes(batch.read_bytes()[:100])
    elif case == "batch of other samples":
        save({**arrays, "sample_index": arrays["sample_index"] + 100})
    elif case == "batch without samples":
        save({k: v for k, v in arrays.items() if k != "sample_index"})
    elif case == "batch lacks outputs":
        save({k: v for k, v in arrays.items() if not k.startswith("outp")})
    check_refused(["validate", "net", "--samples", "4", "--batch-size", "2", "--workers", "1", "--out", "v",
                   "--resume"], workspace, capsys, "--force")



# --------------------------------------------------------------------------------------------
# more hostile files and destinations


def test_run_refuses_to_overwrite_its_own_configuration(workspace, capsys) -> None:
    (workspace / "config.toml").write_text("[training]\nepochs = 2\n")
    check_refused(["run", "config.toml", "--run-dir", "."], workspace, capsys, "overwrite its own configuration")


@pytest.mark.parametrize("argv", [
    ["calibrate", "--out", "/dev/stdout"],
    ["calibrate", "--out", "/dev/null"],
    ["train", "--epochs", "1", "--out", "/dev/null"],
    ["validate", "net", "--samples", "2", "--out", "/dev/null"],
], ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_device_files_are_not_destinations(argv, workspace, capsys) -> None:
    if not Path("/dev/null").exists():
        pytest.skip("no /dev")
    check_refused(argv, workspace, capsys, "/dev/")
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("command", ["loop", "hybrid", "corners"])
@pytest.mark.parametrize("where", ["a file", "read-only"])
def test_loop_commands_check_their_destination(command, where, workspace, capsys) -> None:
    if where == "a file":
        (workspace / "afile").write_text("x")
        dest = "afile"
    else:
        dest = str(read_only_destination(workspace))
    argv = [command, *(["net"] if command != "corners" else ["--tech", "builtin", "--corners", "27"]),
            "--samples", "3", "--out", dest]
    check_refused(argv, workspace, capsys, "--out")


def test_other_json_document_as_calibration(workspace, capsys) -> None:
    check_refused(["train", "--calibration", "net/network.json", "--out", "t"], workspace, capsys,
                  "not a memspice calibration")


def test_calibration_that_does_not_match_the_network(workspace, capsys) -> None:
    from memspice.circuit.wiring import Rails

    save_calibration(phax_reference_calibration(Rails(0.3, -0.3)), workspace / "other_cal.json")
    check_refused(["validate", "net", "--calibration", "other_cal.json", "--samples", "2"], workspace, capsys,
                  "trained with calibration")


def test_gzip_bomb_is_refused(workspace, capsys, monkeypatch) -> None:
    import memspice.datasets

    monkeypatch.setattr(memspice.datasets, "MAX_IDX_BYTES", 100_000)  # the real limit is 1 GiB
    write_mnist(workspace / "mnist")
    bomb = bytes([0, 0, 8, 3]) + struct.pack(">III", 1000, 28, 28) + bytes(1000 * 784)
    (workspace / "mnist" / "t10k-images-idx3-ubyte").unlink()
    (workspace / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bomb))
    check_refused(["train", "--dataset", "mnist", "--mnist-dir", "mnist", "--out", "t"], workspace, capsys,
                  "expands to more than")


@pytest.mark.parametrize("kind", ["calibration", "configuration"])
def test_documents_too_large_to_be_documents(kind, workspace, capsys, monkeypatch) -> None:
    import memspice.safe_io

    monkeypatch.setattr(memspice.safe_io, "MAX_DOCUMENT_BYTES", 1000)  # the real limit is 256 MB
    if kind == "calibration":
        (workspace / "big.json").write_text(" " * 5000 + "{}")
        argv = ["train", "--calibration", "big.json", "--out", "t"]
    else:
        (workspace / "big.toml").write_text("# padding\n" * 2000)
        argv = ["run", "big.toml", "--run-dir", "r"]
    check_refused(argv, workspace, capsys, "larger than")


def test_network_archive_with_a_huge_array_header(workspace, capsys) -> None:
    """An .npy header claiming 10¹² conductances is refused from its header, before any allocation."""
    npz = workspace / "net" / "network.npz"
    header = {"descr": "<f8", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("layer0.npy", member.getvalue() + b"\x00" * 64)
    check_refused(["validate", "net", "--samples", "2"], workspace, capsys, "shape")


def test_network_description_with_a_huge_topology(workspace, capsys) -> None:
    meta_path = workspace / "net" / "network.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "topology": [64, 10**9, 10]}))
    check_refused(["validate", "net", "--samples", "2"], workspace, capsys, "memory")


def test_run_resume_with_a_damaged_training_checkpoint(workspace, capsys) -> None:
    """Characterize and calibrate finished earlier; the train stage resumes from a damaged checkpoint."""
    from memspice.pipeline.config import load_config
    from memspice.pipeline.run import stages
    from memspice.pipeline.stages import MANIFEST, STARTED, fingerprint

    (workspace / "c.toml").write_text("[training]\nepochs = 2\nmode = \"static\"\n[loop]\nenabled = false\n")
    config = load_config(workspace / "c.toml")
    run_dir = workspace / "runs" / "c"
    manifest: dict = {}
    for stage in stages()[:2]:
        manifest[stage.name] = {"fingerprint": fingerprint(stage, config, manifest), "summary": {}}
    (run_dir / "calibrate").mkdir(parents=True)
    save_calibration(phax_reference_calibration(), run_dir / "calibrate" / "calibration.json")
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    train = stages()[2]
    (run_dir / "train").mkdir()
    (run_dir / "train" / STARTED).write_text(json.dumps({"fingerprint": fingerprint(train, config, manifest)}))
    _checkpoint_case(run_dir / "train" / "constrained" / "checkpoint.npz", "truncated zip")
    damaged = (run_dir / "train" / "constrained" / "checkpoint.npz").read_bytes()
    code, _, err = run_cli(["run", "c.toml", "--run-dir", str(run_dir), "--quiet"], capsys)
    assert_one_line_error(code, err, "checkpoint")
    assert (run_dir / "train" / "constrained" / "checkpoint.npz").read_bytes() == damaged


def test_validate_refuses_other_devices_than_the_calibration(workspace, capsys) -> None:
    import dataclasses

    from memspice.train.network_io import load_network

    network = load_network(workspace / "net")
    source = {**network.calibration.source, "technology": "sky130", "nmos": "sky130_fd_pr__nfet_01v8_lvt"}
    cal = dataclasses.replace(network.calibration, source=source)
    save_network(dataclasses.replace(network, calibration=cal), workspace / "sky")
    check_refused(["validate", "sky", "--samples", "2"], workspace, capsys, "pass the same --tech")


@pytest.mark.ngspice
def test_calibrate_writes_strict_json(workspace, capsys) -> None:
    code, out, err = run_cli(["calibrate", "--out", "c.json", "--loads", "geom:1e5:2e6:5", "--json"], capsys)
    assert code == 0, err
    _strict(out)
    _strict((workspace / "c.json").read_text())


@pytest.mark.parametrize(("error", "needle"), [
    (PermissionError(13, "Permission denied", "/srv/out/report.md"), "/srv/out/report.md"),
    (IsADirectoryError(21, "Is a directory", "runs/x/config.toml"), "Is a directory: runs/x/config.toml"),
    (OSError(28, "No space left on device", "big.npz"), "No space left on device: big.npz"),
    (MemoryError(), "out of memory"),
], ids=["permission", "directory", "disk full", "memory"])
def test_environment_failures_are_one_line(error, needle, monkeypatch, capsys) -> None:
    """Failures of the machine rather than the command (a full disk, no memory) are one line too."""
    import memspice.train.command

    def fail(args):
        raise error

    monkeypatch.setattr(memspice.train.command, "run", fail)
    code, _, err = run_cli(["train"], capsys)
    assert_one_line_error(code, err, needle)


def test_unknown_options_name_their_subcommand(capsys) -> None:
    code, _, err = run_cli(["validate", "net", "--wn", "1", "--bogus"], capsys)
    line = assert_one_line_error(code, err, "validate: unrecognized arguments: --bogus")
    assert "memspice validate --help" in line
