"""A known fault map as a file: format, checks, network files, CLI, and the SPICE deck it builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from memspice.cli import main
from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.train.fault_map import (
    FAULT_MAP_NAME,
    check_fault_map,
    describe_fault_map,
    load_fault_map,
    save_fault_map,
    seeded_fault_map,
)
from memspice.train.hardware import FaultMap, draw_fault_map
from memspice.train.network_io import NPZ_NAME, TrainedNetwork, load_network, save_network
from memspice.validate.nonideal import NonIdeality, apply_device_nonidealities

TOPOLOGY = (8, 4, 3)
SHAPES = [(4, 18), (3, 10)]


def tiny_network(faults: FaultMap | None = None, seed: int = 1) -> TrainedNetwork:
    rng = np.random.default_rng(seed)
    g = tuple(rng.uniform(0.2e-6, 7e-6, shape) for shape in SHAPES)
    return TrainedNetwork(TOPOLOGY, g, phax_reference_calibration(), faults=faults)


def test_seeded_map_round_trips_with_rate_seed_and_shapes(tmp_path: Path) -> None:
    faults = seeded_fault_map(TOPOLOGY, 0.2, 7)
    path = save_fault_map(faults, tmp_path / FAULT_MAP_NAME, TOPOLOGY)
    back = load_fault_map(path, TOPOLOGY)
    for a, b in zip(faults.stuck_high + faults.stuck_low, back.stuck_high + back.stuck_low):
        assert a.dtype == b.dtype == np.bool_ and np.array_equal(a, b)
    assert (back.rate_high, back.rate_low, back.seed) == (0.1, 0.1, 7)
    with np.load(path) as data:
        header = json.loads(str(data["header"][()]))
    assert header["format"] == "memspice-fault-map" and header["version"] == 1
    assert header["topology"] == list(TOPOLOGY) and header["shapes"] == [list(s) for s in SHAPES]
    assert header["stuck_high"] + header["stuck_low"] == sum(int(m.sum()) for m in faults.stuck_high + faults.stuck_low)
    assert "seed 7" in describe_fault_map(back)


def test_seeded_map_is_the_stream_train_always_drew() -> None:
    again = seeded_fault_map(TOPOLOGY, 0.3, 5)
    old = draw_fault_map(SHAPES, 0.15, 0.15, np.random.default_rng([5, 99]))
    assert all(np.array_equal(a, b) for a, b in zip(again.stuck_high + again.stuck_low, old.stuck_high + old.stuck_low))
    other = seeded_fault_map(TOPOLOGY, 0.3, 6)
    assert not np.array_equal(again.stuck_high[0], other.stuck_high[0])
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        seeded_fault_map(TOPOLOGY, 1.5, 0)


def test_shape_mismatch_names_the_layer_and_both_shapes(tmp_path: Path) -> None:
    path = save_fault_map(seeded_fault_map(TOPOLOGY, 0.1, 0), tmp_path / "f.npz", TOPOLOGY)
    with pytest.raises(ConfigError, match=r"layer 1 is 3×10, the network's layer 1 is 2×10"):
        load_fault_map(path, (8, 4, 2))
    with pytest.raises(ConfigError, match=r"2 layers, the network \(8, 3\) has 1"):
        load_fault_map(path, (8, 3))


def _write(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _header(**changes: object) -> np.ndarray:
    header = {"format": "memspice-fault-map", "version": 1, "topology": [2, 1], "shapes": [[1, 6]],
              "rate_high": None, "rate_low": None, "seed": None}
    header.update(changes)
    return np.array(json.dumps(header))


@pytest.mark.parametrize(("arrays", "message"), [
    (None, "not a readable fault map"),
    ({"stuck_high0": np.zeros((1, 6), bool)}, "no header"),
    ({"header": np.array("{not json")}, "not valid JSON"),
    ({"header": _header(format="memspice-network")}, "not a memspice fault map"),
    ({"header": _header(version=2)}, "version 2 is not supported"),
    ({"header": _header(), "stuck_high0": np.zeros((1, 6), bool)}, "lacks array 'stuck_low0'"),
    ({"header": _header(), "stuck_high0": np.zeros((1, 6)), "stuck_low0": np.zeros((1, 6), bool)}, "must be boolean"),
    ({"header": _header(), "stuck_high0": np.zeros((1, 5), bool), "stuck_low0": np.zeros((1, 6), bool)},
     "its header says 1×6"),
    ({"header": _header(), "stuck_high0": np.ones((1, 6), bool), "stuck_low0": np.ones((1, 6), bool)},
     "stuck both high and low"),
    ({"header": _header(topology=[3, 1]), "stuck_high0": np.zeros((1, 6), bool), "stuck_low0": np.zeros((1, 6), bool)},
     "recorded topology"),
])
def test_malformed_files_are_one_clear_error(tmp_path: Path, arrays: dict | None, message: str) -> None:
    path = tmp_path / "bad.npz"
    if arrays is None:
        path.write_text("this is not an npz file\n")
    else:
        _write(path, **arrays)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_fault_map(path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_fault_map(tmp_path / "none.npz")


def test_network_carries_its_map_next_to_it(tmp_path: Path) -> None:
    faults = seeded_fault_map(TOPOLOGY, 0.2, 3)
    paths = save_network(tiny_network(faults), tmp_path)
    assert paths["fault_map"] == tmp_path / FAULT_MAP_NAME
    with np.load(tmp_path / NPZ_NAME) as data:
        assert sorted(data.files) == ["layer0", "layer1"]  # one copy of the masks, in fault_map.npz
    back = load_network(tmp_path)
    assert back.faults is not None and back.faults.seed == 3
    assert np.array_equal(back.faults.stuck_low[1], faults.stuck_low[1])
    save_network(tiny_network(None), tmp_path)  # retrained without faults into the same folder
    assert not (tmp_path / FAULT_MAP_NAME).exists() and load_network(tmp_path).faults is None


def test_older_networks_with_embedded_masks_still_load(tmp_path: Path) -> None:
    faults = seeded_fault_map(TOPOLOGY, 0.2, 3)
    save_network(tiny_network(faults), tmp_path)
    (tmp_path / FAULT_MAP_NAME).unlink()
    with np.load(tmp_path / NPZ_NAME) as data:
        arrays = {k: data[k] for k in data.files}
    with pytest.raises(ConfigError, match="records a fault map but .*fault_map.npz is missing"):
        load_network(tmp_path)
    for i in range(2):
        arrays[f"stuck_high{i}"], arrays[f"stuck_low{i}"] = faults.stuck_high[i], faults.stuck_low[i]
    _write(tmp_path / NPZ_NAME, **arrays)
    back = load_network(tmp_path)
    assert back.faults is not None and np.array_equal(back.faults.stuck_high[0], faults.stuck_high[0])


def test_a_map_that_does_not_fit_is_refused_before_writing(tmp_path: Path) -> None:
    wrong = seeded_fault_map((8, 5, 3), 0.2, 0)
    with pytest.raises(ConfigError, match="layer 0 is 5×18"):
        save_network(tiny_network(wrong), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_known_map_wins_over_variation_and_drawn_faults() -> None:
    faults = seeded_fault_map(TOPOLOGY, 0.3, 2)
    net = tiny_network(faults)
    spec = NonIdeality(variation_sigma=0.3, fault_rate=0.2, seed=1)
    draw = apply_device_nonidealities(net.conductances, spec, faults)
    for g, high, low, known_high, known_low in zip(draw.conductances, draw.stuck_high, draw.stuck_low,
                                                    faults.stuck_high, faults.stuck_low):
        assert np.all(g[known_high] == spec.g_max_siemens) and np.all(g[known_low] == spec.g_min_siemens)
        assert np.all(high[known_high]) and np.all(low[known_low]) and not np.any(high & low)
        assert np.all(g[high] == spec.g_max_siemens) and np.all(g[low] == spec.g_min_siemens)
    window = net.window
    plain = apply_device_nonidealities(net.conductances, NonIdeality(g_min_siemens=window.g_min_siemens,
                                                                     g_max_siemens=window.g_max_siemens), faults)
    assert all(np.array_equal(a, b) for a, b in zip(plain.conductances, net.effective_conductances()))
    assert plain.n_stuck == sum(int(h.sum() + lo.sum()) for h, lo in zip(faults.stuck_high, faults.stuck_low))
    with pytest.raises(ConfigError, match="fault map layer 0"):
        apply_device_nonidealities(net.conductances, NonIdeality(), seeded_fault_map((8, 5, 3), 0.1, 0))


def test_check_fault_map_accepts_a_fitting_map() -> None:
    check_fault_map(seeded_fault_map(TOPOLOGY, 0.5, 1), TOPOLOGY)


def test_validate_cli_refuses_a_map_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_network(tiny_network(), tmp_path / "net")
    wrong = save_fault_map(seeded_fault_map((8, 5, 3), 0.1, 0), tmp_path / "wrong.npz", (8, 5, 3))
    out = tmp_path / "run"
    code = main(["validate", str(tmp_path / "net"), "--dataset", "iris", "--fault-map", str(wrong),
                 "--out", str(out), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("memspice: error:") and "layer 0 is 5×18, the network's layer 0 is 4×18" in err[0]
    assert not out.exists()


def test_train_cli_writes_the_seeded_map_and_trains_against_a_given_one(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    common = ["train", "--dataset", "iris", "--topology", "4,5,3", "--epochs", "1", "--mode", "static", "-q",
              "--json"]
    assert main([*common, "--fault-rate", "0.2", "--fault-seed", "11", "--fault-aware",
                 "--out", str(tmp_path / "a")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fault_seed"] == 11
    drawn = load_fault_map(tmp_path / "a" / FAULT_MAP_NAME, (4, 5, 3))
    assert drawn.seed == 11 and np.array_equal(drawn.stuck_high[0], seeded_fault_map((4, 5, 3), 0.2, 11).stuck_high[0])
    assert main([*common, "--fault-map", str(tmp_path / "a" / FAULT_MAP_NAME), "--fault-aware",
                 "--out", str(tmp_path / "b")]) == 0
    again = load_network(tmp_path / "b").faults
    assert again is not None and np.array_equal(again.stuck_low[1], drawn.stuck_low[1])
    capsys.readouterr()
    assert main([*common, "--fault-map", str(tmp_path / "a" / FAULT_MAP_NAME), "--fault-rate", "0.1",
                 "--out", str(tmp_path / "c")]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert main([*common, "--fault-aware", "--out", str(tmp_path / "d")]) == 2
    assert "--fault-aware needs a fault map" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# --- in SPICE: the deck holds exactly the map's stuck devices, and the model predicts them ---

TRAINED_TOPOLOGY = (64, 8, 10)


@pytest.fixture(scope="module")
def trained_with_map(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FaultMap]:
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import features_to_voltages, load_digits, train_test_split
    from memspice.tech import builtin
    from memspice.train.evaluate import network_from_params
    from memspice.train.model import PhaxNetwork
    from memspice.train.trainer import TrainConfig, train

    cal = calibrate(builtin(), InverterSizing())
    train_set, _ = train_test_split(load_digits(), 0.2, 0)
    x = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)[:200]
    faults = seeded_fault_map(TRAINED_TOPOLOGY, 0.2, 4)
    model = PhaxNetwork(cal, TRAINED_TOPOLOGY, faults=faults, evaluator="coupled", init_mean=-1.5)
    params = train(model, x, train_set.labels[:200], TrainConfig(epochs=2, batch_size=16, lr=0.01, val_fraction=0.0,
                                                                  progress=False)).params
    directory = tmp_path_factory.mktemp("aware")
    save_network(network_from_params(model, params), directory)
    return directory, faults


def _deck_resistances(text: str, layer: int, shape: tuple[int, int]) -> np.ndarray:
    """``(M, 2N+2)`` crossbar resistances (Ω) of ``layer`` as written in the deck."""
    values = np.full(shape, np.nan)
    for match in re.finditer(rf"^Rl{layer}m(\d+)_(\d+)\s+\S+\s+\S+\s+(\S+)\s*$", text, re.MULTILINE):
        values[int(match[1]), int(match[2])] = float(match[3])
    return values


@pytest.mark.ngspice
@pytest.mark.slow
def test_validation_builds_the_trained_map_and_reproduces_the_model(
        trained_with_map: tuple[Path, FaultMap], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.circuit.builders import InverterSizing
    from memspice.netlist.emit import emit
    from memspice.tech import builtin
    from memspice.validate.decks import NetworkCircuit, dc_batch_deck

    directory, faults = trained_with_map
    out = tmp_path / "run"
    assert main(["validate", str(directory), "--samples", "30", "--batch-size", "15", "--workers", "2",
                 "--out", str(out), "-q", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"{FAULT_MAP_NAME} (the network's own): " in captured.err and "seed 4" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    n_stuck = sum(int(h.sum() + lo.sum()) for h, lo in zip(faults.stuck_high, faults.stuck_low))
    assert summary["stuck_devices"] == n_stuck and summary["fault_map"]["seed"] == 4
    assert summary["agreement"] == 1.0
    assert max(row["rms_v"] for row in summary["layer_errors"]) < 1e-3  # model on the map's devices = SPICE

    network = load_network(directory)
    g_min, g_max = network.window.g_min_siemens, network.window.g_max_siemens
    draw = apply_device_nonidealities(network.conductances, NonIdeality(g_min_siemens=g_min, g_max_siemens=g_max),
                                      network.faults)
    text = emit(dc_batch_deck(NetworkCircuit(builtin(), InverterSizing(), draw.conductances), np.zeros((2, 64))))
    for layer, (g, high, low) in enumerate(zip(network.conductances, faults.stuck_high, faults.stuck_low)):
        ohms = _deck_resistances(text, layer, g.shape)
        assert np.all(np.isfinite(ohms))
        np.testing.assert_allclose(ohms[high], 1 / g_max, rtol=1e-6)
        np.testing.assert_allclose(ohms[low], 1 / g_min, rtol=1e-6)
        healthy = ~(high | low)
        np.testing.assert_allclose(ohms[healthy], 1 / g[healthy], rtol=1e-6)
        # a trained device is never on the window edge, so the stuck ones are exactly the map's
        assert np.array_equal(np.isclose(ohms, 1 / g_max, rtol=1e-9), high)


@pytest.mark.ngspice
@pytest.mark.slow
def test_another_map_changes_what_spice_computes(trained_with_map: tuple[Path, FaultMap], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    directory, _ = trained_with_map
    other = save_fault_map(seeded_fault_map(TRAINED_TOPOLOGY, 0.2, 5), tmp_path / "other.npz", TRAINED_TOPOLOGY)
    runs = {}
    for name, extra in (("own", []), ("other", ["--fault-map", str(other)])):
        assert main(["validate", str(directory), "--samples", "20", "--batch-size", "20", "--workers", "1",
                     "--out", str(tmp_path / name), "-q", "--json", *extra]) == 0
        captured = capsys.readouterr()
        runs[name] = json.loads(captured.out.strip().splitlines()[-1])
        if name == "other":
            assert "instead of the network's own" in captured.err and "seed 5" in captured.err
    assert runs["other"]["fault_map"]["seed"] == 5 and runs["other"]["agreement"] == 1.0
    import pandas as pd

    own = pd.read_parquet(tmp_path / "own" / "samples.parquet")
    moved = pd.read_parquet(tmp_path / "other" / "samples.parquet")
    spice_columns = [c for c in own.columns if c.startswith("spice")]
    assert spice_columns
    assert np.max(np.abs(own[spice_columns].to_numpy() - moved[spice_columns].to_numpy())) > 0.01


def test_remapping_moves_the_most_harmed_neurons_to_healthy_spares() -> None:
    from memspice.train.fault_map import column_harm, remap_to_spares

    net = tiny_network()
    faults = seeded_fault_map(TOPOLOGY, 0.3, 1)
    g_min, g_max = net.window.g_min_siemens, net.window.g_max_siemens
    harm = [column_harm(g, h, lo, g_min, g_max) for g, h, lo in zip(net.conductances, faults.stuck_high, faults.stuck_low)]
    assert np.all(column_harm(net.conductances[0], np.zeros(SHAPES[0], bool), np.zeros(SHAPES[0], bool),
                              g_min, g_max) == 0)
    remapped, moved = remap_to_spares(net.conductances, faults, (2, 0), g_min, g_max)
    assert sorted(moved[0].tolist()) == sorted(np.argsort(-harm[0])[:2].tolist()) and moved[1].size == 0
    for j in range(SHAPES[0][0]):
        same = np.array_equal(remapped.stuck_high[0][j], faults.stuck_high[0][j])
        assert (not remapped.stuck_high[0][j].any() and not remapped.stuck_low[0][j].any()) if j in moved[0] else same
    assert np.array_equal(remapped.stuck_low[1], faults.stuck_low[1]) and remapped.seed == faults.seed
    with pytest.raises(ConfigError, match="spare-column count"):
        remap_to_spares(net.conductances, faults, (1,), g_min, g_max)
