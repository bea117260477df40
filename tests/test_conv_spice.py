"""A tiny CNN as a flat deck in ngspice: first-layer columns equal the model's, and the folded
pool in the second layer obeys the column equation on SPICE's own neuron outputs."""

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.circuit.deck import Op
from memspice.circuit.layered import CrossbarDevices, crossbar_device_elements
from memspice.circuit.wiring import column_node, output_node
from memspice.errors import NetlistError
from memspice.fit.calibration import phax_reference_calibration
from memspice.netlist.emit import emit
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.tech import builtin
from memspice.train.conv_circuit import crossbar_devices, single_image_deck
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.mapping import ConductanceWindow, theta_to_conductance

TINY = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))


def _network(spec, seed=0):
    cal = phax_reference_calibration()
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    rng = np.random.default_rng(seed)
    g = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), window)
              for p in spec.plans)
    return TrainedCrossbarNetwork(spec, g, cal)


def test_flat_deck_has_one_element_per_device_and_no_subcircuit():
    net = _network(TINY)
    deck = single_image_deck(net, builtin(), InverterSizing(), np.zeros(36))
    text = emit(deck)
    assert ".subckt" not in text.lower()
    resistors = [line for line in text.splitlines() if line.startswith("Rl")]
    assert len(resistors) == sum(p.n_devices for p in TINY.plans) == 32 * 20 + 3 * (2 * 8 * 4 + 2)
    transistors = [line for line in text.splitlines() if line.startswith("Ml")]
    assert len(transistors) == 4 * (32 + 3)
    # the dense layer reads the pooled map: each tap is 4 devices from 4 distinct neurons
    dense_taps = [line.split()[1] for line in resistors if line.startswith("Rl1m0_")][:4]
    assert dense_taps == [output_node(0, j, "p") for j in (0, 1, 4, 5)]


def test_masked_devices_get_no_element():
    mask = np.ones(TINY.plans[0].theta_shape, dtype=bool)
    mask[1, 4] = False
    net = _network(TINY.with_masks((CrossbarMask(theta=mask), None)))
    layers = crossbar_devices(net)
    elements = crossbar_device_elements(0, layers[0])
    assert len(elements) == 32 * 20 - 16
    assert not any(e.name.startswith("l0m16_4") for e in elements)
    with pytest.raises(NetlistError, match="at least one device"):
        CrossbarDevices(3, np.zeros((1, 2), dtype=int), np.zeros((1, 2)))


@pytest.mark.ngspice
def test_spice_columns_match_the_model_on_one_image():
    net = _network(TINY, seed=3)
    x = np.random.default_rng(4).uniform(-0.25, 0.25, 36)
    from memspice.sim import simulate

    plot = simulate(single_image_deck(net, builtin(), InverterSizing(), x)).plot(0)
    first = np.array([plot[column_node(0, m)][0] for m in range(32)])
    model = net.trace(x[None, :]).layers[0].column[0]
    assert np.abs(first - model).max() <= 1e-6
    # second layer: KCL at each column on SPICE's own (loaded) first-layer outputs
    outp = np.array([plot[output_node(0, m, "p")][0] for m in range(32)])
    outn = np.array([plot[output_node(0, m, "n")][0] for m in range(32)])
    wiring = net.model().wiring()[1]
    expected = wiring.column_voltages(net.device_conductances()[1], outp[None], outn[None],
                                      0.25, -0.25)[0]
    second = np.array([plot[column_node(1, m)][0] for m in range(3)])
    assert np.abs(second - expected).max() <= 1e-6


@pytest.mark.ngspice
def test_flat_dense_deck_equals_todays_subcircuit_deck():
    from memspice.circuit.builders import dc_input_sources, network_deck, network_output_saves
    from memspice.sim import simulate

    net = _network(NetworkSpec.dense((4, 3, 2)), seed=5)
    x = np.array([0.2, -0.1, 0.05, -0.25])
    tech, sizing = builtin(), InverterSizing()
    flat = simulate(single_image_deck(net, tech, sizing, x)).plot(0)
    g = net.conductances
    nested = simulate(network_deck(tech, sizing, g, dc_input_sources(x), [Op()],
                                   network_output_saves(g))).plot(0)
    for layer, m in ((0, 3), (1, 2)):
        for j in range(m):
            for pol in ("n", "p"):
                node = output_node(layer, j, pol)
                assert abs(flat[node][0] - nested[node][0]) <= 1e-9


@pytest.mark.ngspice
def test_batch_deck_sweeps_several_images():
    from memspice.sim import simulate
    from memspice.train.conv_circuit import batch_deck

    net = _network(TINY, seed=6)
    x = np.random.default_rng(7).uniform(-0.25, 0.25, (3, 36))
    plot = simulate(batch_deck(net, builtin(), InverterSizing(), x)).plot(0)
    first = np.stack([plot[column_node(0, m)] for m in range(32)], axis=1)
    assert first.shape == (3, 32)
    assert np.abs(first - net.trace(x).layers[0].column).max() <= 1e-6
