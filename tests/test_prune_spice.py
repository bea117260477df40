"""A pruned network in ngspice through the one validation path: the figures are
``validate_network``'s, pruning lowers the input drivers' power and the transient energy per
inference, and a pruned CNN (kernel taps and a whole channel removed) matches its model."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import NetworkSpec
from memspice.prune.measure import spice_measure
from memspice.tech import builtin
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.mapping import ConductanceWindow, theta_to_conductance
from memspice.train.sparsity import block_diagonal_mask, masked_spec


def _networks():
    cal = phax_reference_calibration()
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    dense = NetworkSpec.dense((12, 6, 3))
    rng = np.random.default_rng(5)
    g = tuple(theta_to_conductance(rng.normal(-0.5, 1.0, p.theta_shape), window) for p in dense.plans)
    pruned = masked_spec(dense, [block_diagonal_mask(dense.plans[0], 1 / 3), None])
    return TrainedCrossbarNetwork(dense, g, cal), TrainedCrossbarNetwork(pruned, g, cal)


@pytest.mark.ngspice
def test_pruned_network_figures_are_the_validation_and_save_power_and_energy(tmp_path):
    from memspice.validate.api import RunSettings, validate_network

    dense, pruned = _networks()
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.25, 0.25, (12, 12))
    labels = rng.integers(0, 3, 12)
    tech, sizing = builtin(), InverterSizing()
    mine = spice_measure(pruned, tech, sizing, x, labels, batch_size=6, workers=2,
                         transient_samples=2)
    report = validate_network(pruned, tech, x, labels, tmp_path / "val", write_files=False,
                              settings=RunSettings(batch_size=6, workers=2, transient_samples=2))
    order = np.argsort(report.sample_index)
    np.testing.assert_allclose(mine.outputs, report.spice[-1].outp[order], atol=1e-9)
    assert mine.accuracy == pytest.approx(report.summary["spice_accuracy"])
    assert mine.rail_power_w == pytest.approx(float(np.mean(report.power_w)), rel=1e-9)
    assert mine.input_power_w == pytest.approx(float(np.mean(report.input_power_w)), rel=1e-9)
    assert mine.energy_per_inference_j == pytest.approx(
        report.summary["transient"]["total_energy_j_mean"], rel=1e-9)
    assert mine.transient_samples == 2 and mine.period_s == pytest.approx(1e-6)
    full = spice_measure(dense, tech, sizing, x, labels, batch_size=6, workers=2,
                         transient_samples=2)
    # a third of the first layer's input devices: the input drivers deliver much less, and an
    # inference costs less energy
    assert mine.input_power_w < 0.6 * full.input_power_w
    assert mine.energy_per_inference_j < 0.8 * full.energy_per_inference_j
    # the network settles within the period, so the transient energy is near static power × period
    assert 0.5 < mine.energy_per_inference_j / (mine.static_power_w * 1e-6) < 1.5


@pytest.mark.ngspice
def test_pruned_cnn_without_a_channel_matches_its_coupled_model_in_spice():
    from memspice.characterize.calibrate import calibrate
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten
    from memspice.prune.measure import hardware_counts
    from memspice.train.sparsity import compact

    cal = calibrate(builtin(), InverterSizing())
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    dense = NetworkSpec((1, 6, 6), (Conv2d(3, 3), AvgPool2d(2), Flatten(), Dense(3)))
    rng = np.random.default_rng(7)
    theta = [rng.normal(-2.0, 1.0, p.theta_shape) for p in dense.plans]
    masks = [np.ones(p.theta_shape, dtype=bool) for p in dense.plans]
    masks[0][1] = False  # channel 1 of the conv layer: every device, so the channel goes
    masks[0][0, [2, 11, 5]] = False  # taps of kernel 0, at every position
    spec, theta, _, kept = compact(dense, theta, masks)
    assert spec.plans[0].channels == 2 and kept[0].tolist() == [0, 2]
    g = tuple(theta_to_conductance(t, window) for t in theta)
    pruned = TrainedCrossbarNetwork(spec, g, cal, "coupled")
    counts = hardware_counts(pruned, dense, kept, (2, 1))
    # conv: 16 positions × (2 channels × 20 devices − 3 masked); dense: 3 × (2·8·4 + 2)
    assert counts.devices == 16 * (40 - 3) + 3 * 66
    assert counts.tiles_built == (2 * 10 - 1) + 3 * 9 and counts.tiles_total == 3 * 10 + 3 * 13
    x = rng.uniform(-0.25, 0.25, (8, 36))
    labels = rng.integers(0, 3, 8)
    figures = spice_measure(pruned, builtin(), None, x, labels, batch_size=4, workers=2,
                            transient_samples=0)
    assert figures.agreement == 1.0 and figures.energy_per_inference_j is None
    from memspice.prune.measure import predicted_outputs

    np.testing.assert_allclose(figures.outputs, predicted_outputs(pruned, x), atol=2e-3)
