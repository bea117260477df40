"""Per-chip bias trim and multi-corner training (memspice.loop.corners, ``memspice trim``).

Model-level tests use the PHAX reference calibration and a "corner" made from it by moving the
neuron thresholds (what a process corner does to the sized sky130 neuron); the CLI test runs the
real calibration in ngspice (built-in card at 85 °C).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from memspice.cli import main
from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.loop.corners import CornerRecipe, MultiCornerNetwork, PerCornerBias, train_at_corners
from memspice.loop.trim import BiasTrim, center_columns, check_trim, constant_input_rows, trim_bias
from memspice.train.evaluate import network_from_params
from memspice.train.hardware import FaultMap
from memspice.train.losses import Loss, accuracy
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import load_network, save_network
from memspice.train.trainer import TrainConfig, train

from gradcheck import assert_full_gradient

TOPOLOGY = (64, 12, 10)


def shifted(calibration, dv: float):
    """``calibration`` with every neuron threshold moved by ``dv`` (V), as a process corner does."""
    act = calibration.activation
    moved = dataclasses.replace(act, inverting=dataclasses.replace(act.inverting, c3=act.inverting.c3 + dv),
                                noninverting=dataclasses.replace(act.noninverting, c3=act.noninverting.c3 + dv))
    return dataclasses.replace(calibration, activation=moved, source={**calibration.source, "corner": "shifted"})


@pytest.fixture(scope="module")
def digits():
    train_set, test_set = benchmark_split(load_dataset("digits"), 0.2, 0)
    cal = phax_reference_calibration()
    x = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    xt = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    return x, train_set.labels, xt, test_set.labels


@pytest.fixture(scope="module")
def trained(digits):
    """A small network trained at the reference calibration (static model)."""
    x, y, _, _ = digits
    model = PhaxNetwork(phax_reference_calibration(), TOPOLOGY, evaluator="static", init_mean=-2.0)
    config = TrainConfig(epochs=8, batch_size=32, lr=0.02, loss="bce", loss_link="logit", val_fraction=0.0,
                         progress=False)
    return network_from_params(model, train(model, x, y, config).params)


def test_multi_corner_logits_are_the_weighted_mean(trained, digits):
    x = digits[0][:5]
    cal = phax_reference_calibration()
    models = [PhaxNetwork(cal, TOPOLOGY), PhaxNetwork(shifted(cal, 0.02), TOPOLOGY)]
    multi = MultiCornerNetwork(models, weights=[3, 1])
    theta = [np.random.default_rng(1).normal(-1, 1, g.shape) for g in trained.conductances]
    want = 0.75 * models[0].predict_logits(theta, x) + 0.25 * models[1].predict_logits(theta, x)
    np.testing.assert_allclose(multi.predict_logits(theta, x), want, rtol=1e-12)


def test_bias_trim_gradient_matches_finite_differences(digits):
    x, y = digits[0][:6], digits[1][:6]
    cal = phax_reference_calibration()
    model = PhaxNetwork(shifted(cal, 0.01), (64, 4, 10))
    rng = np.random.default_rng(2)
    theta = [rng.normal(-1, 1, s.matrix_shape) for s in model.shapes]
    trim = BiasTrim(model, theta, {0: np.array([3, 64 + 3, 128, 129]), 1: np.array([8, 9])})
    params = trim.init_params(rng)
    loss = Loss("bce", link="logit")
    assert_full_gradient(trim, params, x, y, loss, rtol=1e-5, atol=1e-9)


def test_per_corner_bias_gradient_matches_finite_differences(digits):
    x, y = digits[0][:6], digits[1][:6]
    cal = phax_reference_calibration()
    models = [PhaxNetwork(cal, (64, 3, 10)), PhaxNetwork(shifted(cal, 0.03), (64, 3, 10)),
              PhaxNetwork(shifted(cal, -0.02), (64, 3, 10))]
    net = PerCornerBias(models, {0: np.array([2, 66, 128, 129]), 1: np.array([6, 7])})
    params = net.init_params(np.random.default_rng(4))
    params = [p + np.random.default_rng(5).normal(0, 0.5, p.shape) for p in params]
    loss = Loss("bce", link="logit")
    assert_full_gradient(net, params, x, y, loss, rtol=1e-5, atol=1e-9)


def test_trim_aware_training_shares_all_but_the_trimmed_rows(digits):
    x, y = digits[0][:200], digits[1][:200]
    cal = phax_reference_calibration()
    cals = {"a": cal, "b": shifted(cal, 0.03)}
    recipe = CornerRecipe(settings=TrainConfig(epochs=1, batch_size=32, lr=0.02, loss="bce", loss_link="logit",
                                               val_fraction=0.0, progress=False),
                          mode="static", pretrain_epochs=1, pretrain_mode="static")
    rows = {0: np.array([0, 64, 128, 129]), 1: np.array([6, 7])}
    out = train_at_corners(cals, ["a", "b"], (64, 3, 10), x, y, recipe, trim_aware=True, trim_rows=rows)
    a, b = out.corner_networks["a"].conductances, out.corner_networks["b"].conductances
    for layer, (ga, gb) in enumerate(zip(a, b)):
        shared = np.ones(ga.shape[1], dtype=bool)
        shared[rows[layer]] = False
        np.testing.assert_array_equal(ga[:, shared], gb[:, shared])
        assert np.any(ga[:, rows[layer]] != gb[:, rows[layer]])
    assert out.network.conductances[0].tolist() == a[0].tolist()
    with pytest.raises(ConfigError, match="no calibration"):
        train_at_corners(cals, ["a", "c"], (64, 3, 10), x, y, recipe)


def test_constant_input_rows_finds_the_inputs_that_never_change():
    x = np.array([[0.1, -0.25, 0.2], [0.3, -0.25, 0.2], [0.0, -0.25, 0.2]])
    np.testing.assert_array_equal(constant_input_rows(x), [1, 2, 4, 5])


def test_centring_restores_every_columns_place_relative_to_its_threshold(trained, digits):
    x = digits[0][:200]
    ref = PhaxNetwork(trained.calibration, TOPOLOGY, evaluator="static")
    chip = PhaxNetwork(shifted(trained.calibration, 0.03), TOPOLOGY, evaluator="static")
    rows, _ = check_trim(trained, input_rows=constant_input_rows(digits[0]))
    g = center_columns(chip, ref, trained.conductances, rows, x)
    before = ref.evaluator.forward(trained.conductances, x).layers[0].column.mean(axis=0)
    after = chip.evaluator.forward(g, x).layers[0].column.mean(axis=0)
    np.testing.assert_allclose(after - before, 0.03, atol=1e-9)  # the first layer is exact
    for i, (old, new) in enumerate(zip(trained.conductances, g)):
        keep = np.ones(old.shape[1], dtype=bool)
        keep[rows[i]] = False
        np.testing.assert_array_equal(old[:, keep], new[:, keep])


def test_trim_recovers_a_shifted_corner_and_touches_only_its_rows(trained, digits):
    x, y, xt, yt = digits
    corner = shifted(trained.calibration, 0.04)
    at_corner = dataclasses.replace(trained, calibration=corner)
    base = accuracy(trained.predict(xt), yt)
    lost = accuracy(at_corner.predict(xt), yt)
    assert lost < base - 0.2  # the corner breaks the network
    rows = constant_input_rows(x)
    config = TrainConfig(epochs=5, batch_size=16, lr=0.05, loss="bce", loss_link="logit", val_fraction=0.0,
                         progress=False)
    result = trim_bias(trained, corner, x[:300], y[:300], input_rows=rows, config=config, mode="static")
    assert result.devices_reprogrammed == 12 * (len(rows) + 2) + 10 * 2
    assert accuracy(result.network.predict(xt), yt) > base - 0.05
    assert result.accuracy_after > result.accuracy_before
    for i, (old, new) in enumerate(zip(trained.conductances, result.network.conductances)):
        changed = np.flatnonzero(np.any(old != new, axis=0))
        allowed = set([old.shape[1] - 2, old.shape[1] - 1]) | (set(rows.tolist()) if i == 0 else set())
        assert set(changed.tolist()) <= allowed
    assert result.network.calibration.activation == corner.activation


def test_trim_without_training_only_centres(trained, digits):
    x, y = digits[0][:100], digits[1][:100]
    result = trim_bias(trained, shifted(trained.calibration, 0.02), x, y, config=None, mode="static")
    assert result.history.empty


@pytest.mark.parametrize("kwargs, needle", [
    ({"layers": []}, "at least one layer"),
    ({"layers": [0, 2]}, "distinct indices"),
    ({"layers": [1, 1]}, "distinct indices"),
    ({"layers": [1], "input_rows": [3]}, "layer 0"),
    ({"input_rows": [128]}, "input rows"),
])
def test_bad_trim_requests_are_config_errors(trained, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        check_trim(trained, **kwargs)


def test_trim_refuses_other_rails_and_misshapen_inputs(trained, digits):
    from memspice.circuit.wiring import Rails

    x, y = digits[0][:10], digits[1][:10]
    other = dataclasses.replace(trained.calibration, rails=Rails(0.3, -0.3))
    with pytest.raises(ConfigError, match="rails"):
        trim_bias(trained, other, x, y)
    with pytest.raises(ConfigError, match="trim inputs"):
        trim_bias(trained, trained.calibration, x[:, :10], y)


def stuck_bias_network(directory: Path | None = None, cal=None):
    cal = cal or phax_reference_calibration()
    model = PhaxNetwork(cal, TOPOLOGY)
    high = tuple(np.zeros(s.matrix_shape, dtype=bool) for s in model.shapes)
    low = tuple(np.zeros(s.matrix_shape, dtype=bool) for s in model.shapes)
    for mask in low:
        mask[:, -2:] = True
    model = PhaxNetwork(cal, TOPOLOGY, faults=FaultMap(high, low))
    net = network_from_params(model, model.init_params(np.random.default_rng(0)))
    if directory is not None:
        save_network(net, directory)
    return net


def test_a_trim_with_only_stuck_bias_devices_is_refused():
    with pytest.raises(ConfigError, match="no programmable bias device"):
        check_trim(stuck_bias_network())


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("extra, needle", [
    (["--tech", "sky130", "--corner", "xx"], "unknown corner"),
    (["--layers", ""], "at least one layer"),
    (["--layers", "0,7"], "distinct indices"),
    (["--layers", "a"], "--layers"),
    (["--tech", "builtin", "--corner", "ff"], "tt corner"),
])
def test_cli_mistakes_are_one_line(trained, tmp_path, capsys, extra, needle):
    save_network(trained, tmp_path / "net")
    before = _digest(tmp_path)
    code, _, err = _run(["trim", str(tmp_path / "net"), "--out", str(tmp_path / "out"), *extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("memspice: error: "), err
    assert needle in lines[0]
    assert not (tmp_path / "out").exists() and _digest(tmp_path) == before


def test_cli_refuses_stuck_bias_and_overwriting_the_input(tmp_path, capsys):
    stuck_bias_network(tmp_path / "stuck")
    code, _, err = _run(["trim", str(tmp_path / "stuck"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith("memspice: error: ") and "no programmable bias device" in err
    code, _, err = _run(["trim", str(tmp_path / "stuck"), "--layers", "0", "--out", str(tmp_path / "stuck")], capsys)
    assert code == 2 and "no programmable" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.ngspice
@pytest.mark.slow
def test_cli_trims_at_a_hotter_chip(trained, tmp_path, capsys):
    save_network(trained, tmp_path / "net")
    code, out, err = _run(["trim", str(tmp_path / "net"), "--temp", "85", "--trim-samples", "60", "--epochs", "1",
                           "--constant-inputs", "--out", str(tmp_path / "trimmed"), "--json"], capsys)
    assert code == 0, err
    import json

    summary = json.loads(out)
    trimmed = load_network(tmp_path / "trimmed")
    assert summary["devices_reprogrammed"] == 12 * (summary["constant_input_rows"] + 2) + 10 * 2
    assert trimmed.calibration.source["temperature_c"] == "85.0"
    hidden_old, hidden_new = trained.conductances[1], trimmed.conductances[1]
    np.testing.assert_array_equal(hidden_old[:, :-2], hidden_new[:, :-2])


def test_bench_reports_the_worst_corner_and_its_gap_in_points():
    from script_loader import load_script

    bench = load_script("bench_corners")
    per_corner = {"tt": {"spice_accuracy": 0.95}, "ss": {"spice_accuracy": 0.90}, "fs": {"spice_accuracy": 0.555}}
    got = bench.worst(per_corner, "tt")
    assert got["worst_corner"] == "fs" and got["worst_gap_to_tt"] == pytest.approx(39.5)
    args = bench.parse_args(["--quick"])
    assert args.corners == "tt,sf,fs" and args.trim_aware_epochs == 0 and args.samples <= 20
    assert bench.cache_key("a", 1) != bench.cache_key("a", 2)


def test_corners_with_an_unknown_corner_stop_before_any_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["corners", "--tech", "sky130", "--corners", "tt,xx", "--out", "run"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("memspice: error: ") and "unknown corner" in lines[0]
    assert not any((tmp_path / "run").glob("calibration_*.json"))
