"""Validation of layered networks (conv, pooled, masked) in SPICE, through the dense machinery:
agreement and per-layer errors against the coupled model, masked devices and drivers absent
from the deck, resume, and clear errors for hostile inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, DataError
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.tech import builtin
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.mapping import ConductanceWindow, theta_to_conductance
from memspice.train.network_io import TrainedNetwork
from memspice.validate.api import RunSettings, as_validated, validate_network
from memspice.validate.decks import TransientSpec

#: conv 2 k3 → pool 2 → dense 3 on a 1×6×6 input: replicated kernels, a folded pool.
CNN = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
#: What the coupled model (10 mV current table) must match ngspice to, per layer and output (V):
#: the bicubic's interpolation error in the neurons' steep region is tens of µV.
RMS_BOUND_V = 50e-6
MAX_BOUND_V = 0.2e-3


@pytest.fixture(scope="module")
def calibration():
    from memspice.characterize.calibrate import calibrate

    return calibrate(builtin(), InverterSizing(), current_step_v=0.005)


def _network(spec: NetworkSpec, calibration, seed: int = 11) -> TrainedCrossbarNetwork:
    rng = np.random.default_rng(seed)
    window = ConductanceWindow(calibration.device.g_min_siemens, calibration.device.g_max_siemens)
    sigma = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), window) for p in spec.plans)
    return TrainedCrossbarNetwork(spec, sigma, calibration)


def _samples(spec: NetworkSpec, calibration, n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(calibration.rails.vss, calibration.rails.vdd, (n, spec.n_inputs))
    return x, rng.integers(0, spec.n_outputs, n)


@pytest.mark.ngspice
def test_cnn_agrees_with_the_coupled_model_layer_by_layer(tmp_path: Path, calibration) -> None:
    network = _network(CNN, calibration)
    x, labels = _samples(CNN, calibration, 10)
    report = validate_network(network, builtin(), x, labels, tmp_path / "v",
                              settings=RunSettings(batch_size=5, workers=2))
    s = report.summary
    assert report.complete and s["model_evaluator"] == "coupled"
    assert s["agreement"] == 1.0 and s["n_samples"] == 10
    for row in s["layer_errors"]:
        assert row["rms_v"] < RMS_BOUND_V and row["max_v"] < MAX_BOUND_V, row
    assert [len(v.outp[0]) for v in report.spice] == [2 * 4 * 4, 3]
    assert report.comparison is not None and report.comparison.confusion_spice.sum() == 10
    spice_class = report.spice[-1].outp.argmax(axis=1)
    assert s["spice_accuracy"] == pytest.approx(np.mean(spice_class == labels[report.sample_index]))
    assert s["static_power_w"]["min"] > 0 and s["input_drive_power_w"]["min"] > 0
    assert s["devices"] == sum(int((g > 0).sum()) for g in network.device_conductances())
    assert "conv 2 k3" in s["network"] and (tmp_path / "v" / "report.md").is_file()
    # the static model misses the conv neurons' load by far more than the coupled one
    static = validate_network(network, builtin(), x, labels, tmp_path / "v", evaluator="static",
                              settings=RunSettings(batch_size=5, workers=2, resume=True), write_files=False)
    assert static.summary["model_evaluator"] == "static" and static.summary["batches_reused"] == 2
    assert static.summary["layer_errors"][1]["rms_v"] > 10 * s["layer_errors"][1]["rms_v"]


def _masked_dense(calibration) -> TrainedCrossbarNetwork:
    """6-4-3 with input 2 pruned (both rows), input 4's p row pruned, hidden neuron 3 driving
    nothing, and two single devices removed."""
    spec = NetworkSpec.dense((6, 4, 3))
    theta0 = np.ones(spec.plans[0].theta_shape, dtype=bool)
    theta0[:, [2, 6 + 2, 4]] = False
    theta1 = np.ones(spec.plans[1].theta_shape, dtype=bool)
    theta1[:, [3, 4 + 3]] = False
    device0 = np.ones(spec.plans[0].theta_shape, dtype=bool)
    device0[1, 0] = device0[3, 13] = False
    spec = spec.with_masks((CrossbarMask(theta0, device0), CrossbarMask(theta1)))
    return _network(spec, calibration, seed=5)


def test_masked_dense_deck_has_no_masked_device_and_no_driver_for_a_pruned_row(calibration) -> None:
    from memspice.netlist.emit import emit
    from memspice.validate.layered import layered_circuit

    network = _masked_dense(calibration)
    circuit = layered_circuit(network, builtin(), InverterSizing())
    x, _ = _samples(network.spec, calibration, 3)
    text = emit(circuit.dc_deck(x)).lower()
    names = {line.split()[0] for line in text.splitlines() if line and line[0] in "rbe"}
    present = [w.present for w in network_wiring(network.spec)]
    for layer, mask in enumerate(present):
        for (m, d), kept in np.ndenumerate(mask):
            assert (f"rl{layer}m{m}_{d}" in names) == kept, (layer, m, d)
    drivers = {n for n in names if n[0] in "be" and n[1:3] in ("xp", "xn")}
    expected = {f"bxp{i}" for i in (0, 1, 3, 5)} | {f"exn{i}" for i in (0, 1, 3, 5)} | {"bxn4"}
    assert drivers == expected


@pytest.mark.ngspice
def test_masked_dense_network_in_spice_and_its_driver_power(tmp_path: Path, calibration) -> None:
    network = _masked_dense(calibration)
    assert isinstance(as_validated(network), TrainedCrossbarNetwork)
    x, labels = _samples(network.spec, calibration, 6)
    report = validate_network(network, builtin(), x, labels, tmp_path / "v",
                              settings=RunSettings(batch_size=3, workers=2), write_files=False)
    assert report.complete and report.summary["agreement"] == 1.0
    for row in report.summary["layer_errors"]:
        assert row["rms_v"] < RMS_BOUND_V and row["max_v"] < MAX_BOUND_V, row
    # The drivers' power is what the first layer's present devices draw from their rows,
    # with the (matching) model's column voltages: pruned rows contribute nothing.
    from memspice.validate.layered import model_states

    wiring = network_wiring(network.spec)[0]
    g = network.device_conductances()[0]
    xs = x[report.sample_index]
    column = model_states(network, network.device_conductances(), xs, "coupled")[0].column
    rows = wiring.row_source_voltages(xs, -xs, calibration.rails.vdd, calibration.rails.vss)
    row_v = rows[:, wiring.source]  # (S, M, D)
    device_power = row_v * g * (row_v - column[:, :, None])
    is_input = wiring.source < 2 * wiring.plan.n_sources
    expected = (device_power * is_input).sum(axis=(1, 2))
    assert np.allclose(report.input_power_w, expected, rtol=1e-4, atol=1e-12)
    assert not np.any(g[:, [2, 8, 4]]), "the pruned rows have no device"


def test_a_plain_dense_layered_network_is_validated_as_the_dense_network(calibration) -> None:
    network = _network(NetworkSpec.dense((5, 3, 2)), calibration)
    dense = as_validated(network)
    assert isinstance(dense, TrainedNetwork) and dense.topology == (5, 3, 2)
    assert all(np.array_equal(a, b) for a, b in zip(dense.conductances, network.conductances))


@pytest.mark.ngspice
def test_resume_reuses_the_layered_batches(tmp_path: Path, calibration) -> None:
    network = _network(CNN, calibration)
    x, labels = _samples(CNN, calibration, 6)
    settings = RunSettings(batch_size=3, workers=1)
    first = validate_network(network, builtin(), x, labels, tmp_path / "v", settings=settings, write_files=False)
    again = validate_network(network, builtin(), x, labels, tmp_path / "v", write_files=False,
                             settings=dataclasses.replace(settings, resume=True))
    assert again.summary["batches_reused"] == 2 and again.summary["batches_simulated"] == 0
    assert np.array_equal(again.spice[0].outp, first.spice[0].outp)
    other = _network(CNN, calibration, seed=12)
    with pytest.raises(ConfigError, match="another network"):
        validate_network(other, builtin(), x, labels, tmp_path / "v", write_files=False,
                         settings=dataclasses.replace(settings, resume=True))


def test_hostile_layered_inputs_fail_before_simulating(tmp_path: Path, calibration) -> None:
    network = _network(CNN, calibration)
    x, labels = _samples(CNN, calibration, 4)
    with pytest.raises(DataError, match="takes 36 inputs"):
        validate_network(network, builtin(), x[:, :30], labels, tmp_path / "a")
    with pytest.raises(DataError, match="takes 36 inputs"):
        validate_network(network, builtin(), x.reshape(4, 1, 4, 9), labels, tmp_path / "b")
    with pytest.raises(DataError, match="3 outputs"):
        validate_network(network, builtin(), x, labels + 3, tmp_path / "c")
    with pytest.raises(ConfigError, match="evaluator"):
        validate_network(network, builtin(), x, labels, tmp_path / "d", evaluator="load-aware")
    bad = list(network.device_conductances())
    bad[0] = bad[0][:, :-1]
    with pytest.raises(ConfigError, match="shape"):
        validate_network(network, builtin(), x, labels, tmp_path / "e", device_conductances=bad)
    from memspice.validate.nonideal import NonIdeality

    with pytest.raises(ConfigError, match="device_conductances"):
        validate_network(network, builtin(), x, labels, tmp_path / "f", nonideal=NonIdeality(variation_sigma=0.1))
    assert not any((tmp_path / name).exists() for name in "abcdef"), "nothing written"
    # images (S, C, H, W) are taken as they are
    static_cal = dataclasses.replace(calibration, inverter_current=None)
    from memspice.validate.layered import model_evaluator

    assert model_evaluator(dataclasses.replace(network, calibration=static_cal), None) == "static"
    with pytest.raises(ConfigError, match="current model"):
        model_evaluator(dataclasses.replace(network, calibration=static_cal), "coupled")


@pytest.mark.ngspice
def test_drawn_devices_are_built_and_the_model_is_run_on_them(tmp_path: Path, calibration) -> None:
    network = _network(CNN, calibration)
    x, labels = _samples(CNN, calibration, 4)
    rng = np.random.default_rng(0)
    drawn = [g * np.exp(0.2 * rng.standard_normal(g.shape)) for g in network.device_conductances()]
    drawn[0][0, 0] = 0.0  # one device missing
    report = validate_network(network, builtin(), x.reshape(4, 1, 6, 6), labels, tmp_path / "v",
                              device_conductances=drawn, settings=RunSettings(batch_size=4, workers=1),
                              write_files=False)
    drawn_model = report.summary["drawn_devices_model"]
    assert drawn_model["agreement"] == 1.0
    for row in drawn_model["layer_errors"]:
        assert row["rms_v"] < RMS_BOUND_V and row["max_v"] < MAX_BOUND_V, row
    # the ideal model is further from SPICE than the model on the drawn devices
    assert report.summary["layer_errors"][0]["rms_v"] > 10 * drawn_model["layer_errors"][0]["rms_v"]
    assert report.summary["devices"] == sum(int((g > 0).sum()) for g in drawn)


def _switching_cnn() -> TrainedCrossbarNetwork:
    """1×4×4 → conv 1 k3 → dense 2, every column dominated by one row (8 µS against 0.125 µS),
    the conv's ``in`` taps and its kernel's top-left ``ip`` tap pruned: input 0 has no driver
    at all and no input has an ``n`` driver. Every output swings when the image changes sign."""
    from memspice.fit.calibration import phax_reference_calibration

    cal = phax_reference_calibration()
    g_min, g_max = cal.device.g_min_siemens, cal.device.g_max_siemens
    spec = NetworkSpec((1, 4, 4), (Conv2d(1, 3), Flatten(), Dense(2)))
    conv = np.full(spec.plans[0].theta_shape, g_min)
    conv[0, 4] = g_max  # the kernel's centre, ip
    dense = np.full(spec.plans[1].theta_shape, g_min)
    dense[:, 0] = g_max  # conv neuron 0's outp
    keep = np.ones(conv.shape, dtype=bool)
    keep[0, 9:18] = False
    keep[0, 0] = False
    return TrainedCrossbarNetwork(spec.with_masks((CrossbarMask(keep), None)), (conv, dense), cal)


@pytest.mark.ngspice
def test_layered_transient_settles_to_the_dc_points_with_the_drivers_dc_power() -> None:
    from memspice.validate.decks import TransientSpec
    from memspice.validate.execute import BatchJob, run_job
    from memspice.validate.layered import layered_circuit

    network = _switching_cnn()
    circuit = layered_circuit(network, builtin(), InverterSizing())
    assert [(d.index, d.polarity) for d in circuit.drivers()] == [(i, "p") for i in range(1, 16)]
    x = np.outer([0.2, -0.2, 0.2], np.ones(16))
    x[:, 15] = 0.05  # a corner pixel: no kernel centre reads it
    period = 50e-9
    dc = run_job(BatchJob(0, np.arange(3), x, circuit, "dc"))
    reference = np.column_stack([dc["outp1"], dc["outn1"]])
    tran = run_job(BatchJob(0, np.arange(3), x, circuit, "transient", TransientSpec(period, 0.1e-9),
                            reference=reference))
    np.testing.assert_allclose(tran["tran_outp_last"], dc["outp1"], atol=2e-3)
    assert np.all(np.isfinite(tran["delay_s"])) and np.all(tran["delay_s"][1:] > 1e-9)
    assert np.all(tran["delay_s"] < period)
    t, power = tran["wave_time_s"], tran["wave_input_power_w"]
    for s in range(3):
        end = np.flatnonzero(t <= (s + 2) * period * (1 + 1e-12))[-1]
        assert power[end] == pytest.approx(dc["p_in"][s], rel=1e-3)
    assert np.all(tran["energy_to_settle_j"][1:] > 0) and np.all(tran["input_energy_j"] > 0)


@pytest.mark.ngspice
def test_validate_network_reports_layered_delay_and_energy(tmp_path: Path) -> None:
    network = _switching_cnn()
    x = np.outer([0.2, -0.2, 0.2, -0.1], np.ones(16))
    report = validate_network(network, builtin(), x, np.array([0, 1, 0, 1]), tmp_path / "v",
                              settings=RunSettings(batch_size=2, workers=2, transient_samples=3,
                                                   transient=TransientSpec(50e-9, 0.1e-9)))
    tran = report.summary["transient"]
    assert report.summary["model_evaluator"] == "static"
    assert tran["samples"] == 3 and tran["settled"] == 3 and 1e-9 < tran["delay_s_max"] < 50e-9
    assert tran["total_energy_to_settle_j_mean"] > tran["energy_to_settle_j_mean"] > 0
    assert "Transient (3 samples" in (tmp_path / "v" / "report.md").read_text()
    assert (tmp_path / "v" / "transient.png").is_file()
