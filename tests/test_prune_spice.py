"""A pruned network in ngspice: the flat measurement deck and the validation agree, the model
predicts the circuit, and pruning lowers the input drivers' power."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import NetworkSpec
from memspice.netlist.emit import emit
from memspice.prune.measure import measurement_deck, spice_measure
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


def test_measurement_deck_builds_only_present_devices():
    _, pruned = _networks()
    x = np.random.default_rng(1).uniform(-0.25, 0.25, (3, 12))
    text = emit(measurement_deck(pruned, builtin(), InverterSizing(), x))
    resistors = [line for line in text.splitlines() if line.startswith("Rl")]
    assert len(resistors) == 6 * (2 * 4 + 2) + 3 * 14
    assert ".save" in text.lower() and "i(vdd)" in text.lower()


@pytest.mark.ngspice
def test_pruned_network_in_spice_matches_validation_and_saves_input_power(tmp_path):
    from memspice.validate.api import RunSettings, validate_network

    dense, pruned = _networks()
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.25, 0.25, (12, 12))
    labels = rng.integers(0, 3, 12)
    tech, sizing = builtin(), InverterSizing()
    mine = spice_measure(pruned, tech, sizing, x, labels, batch_size=6, workers=2)
    report = validate_network(pruned, tech, x, labels, tmp_path / "val", write_files=False,
                              settings=RunSettings(batch_size=6, workers=2))
    spice = report.spice[-1].outp
    order = np.argsort(report.sample_index)
    np.testing.assert_allclose(mine.outputs, spice[order], atol=1e-6)
    assert mine.accuracy == pytest.approx(report.summary["spice_accuracy"])
    assert mine.rail_power_w == pytest.approx(float(np.mean(report.power_w)), rel=1e-6)
    assert mine.input_power_w == pytest.approx(float(np.mean(report.input_power_w)), rel=1e-6)
    full = spice_measure(dense, tech, sizing, x, labels, batch_size=6, workers=2)
    # a third of the first layer's input devices: the input drivers deliver much less
    assert mine.input_power_w < 0.6 * full.input_power_w
