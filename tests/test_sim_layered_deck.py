"""Flat layered decks: the per-layer device elements, written from whole arrays at once, are the
elements of the device-by-device definition (names, nodes, resistances bit for bit)."""

import numpy as np

from memspice.circuit.elements import Resistor
from memspice.circuit.layered import CrossbarDevices, crossbar_device_elements, layered_row_nodes
from memspice.circuit.wiring import column_node


def _one_by_one(layer: int, devices: CrossbarDevices) -> list[Resistor]:
    rows = layered_row_nodes(layer, devices.n_sources)
    g = np.asarray(devices.conductances, dtype=np.float64)
    return [Resistor(f"l{layer}m{m}_{d}", rows[int(devices.source[m, d])], column_node(layer, m), 1.0 / float(g[m, d]))
            for m in range(g.shape[0]) for d in range(g.shape[1]) if g[m, d] > 0]


def test_device_elements_equal_the_device_by_device_definition():
    rng = np.random.default_rng(11)
    n_sources, columns, taps = 5, 7, 9
    source = rng.integers(0, 2 * n_sources + 3, (columns, taps))  # every row kind: p, n, vdd, vss, 0 V
    g = rng.uniform(0.1e-6, 9e-6, (columns, taps))
    g[rng.random((columns, taps)) < 0.3] = 0.0  # absent (masked) devices
    g[:, 0] = 3.3e-6  # every column keeps a device
    devices = CrossbarDevices(n_sources, source, g)
    for layer in (0, 2):
        got = crossbar_device_elements(layer, devices)
        want = _one_by_one(layer, devices)
        assert got == want
        assert [e.resistance_ohm for e in got] == [e.resistance_ohm for e in want]  # exact floats
        assert len(got) == int((g > 0).sum())
