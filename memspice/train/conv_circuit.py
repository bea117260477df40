"""A trained layer-described network as a flat SPICE deck (through :mod:`memspice.circuit`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memspice.circuit.builders import (
    INDEX_NODE,
    DeviceSource,
    InverterSizing,
    dc_input_sources,
    indexed_input_sources,
)
from memspice.circuit.deck import Analysis, Dc, Deck, Op, Sweep
from memspice.circuit.layered import CrossbarDevices, layered_network_deck, layered_saves
from memspice.network.wiring import network_wiring
from memspice.train.conv_io import TrainedCrossbarNetwork


def crossbar_devices(network: TrainedCrossbarNetwork,
                     device_conductances: Sequence[np.ndarray] | None = None
                     ) -> list[CrossbarDevices]:
    """Per-device arrays of every layer: the wiring's sources and the devices' conductances.

    Args:
        network: the trained network.
        device_conductances: per-device conductances (S) to place instead of the targets,
            e.g. after per-device variation; ``(n_columns, D)`` per layer, 0 = absent.
    """
    wirings = network_wiring(network.spec)
    g = network.device_conductances() if device_conductances is None else device_conductances
    return [CrossbarDevices(w.plan.n_sources, w.source, np.asarray(gi))
            for w, gi in zip(wirings, g)]


def single_image_deck(network: TrainedCrossbarNetwork, tech: DeviceSource,
                      sizing: InverterSizing, x: np.ndarray,
                      analyses: Sequence[Analysis] = (Op(),)) -> Deck:
    """A flat deck evaluating one input ``x`` ``(n_inputs,)`` (V) at DC, saving every column
    node and neuron output."""
    x = np.asarray(x, dtype=np.float64).ravel()
    layers = crossbar_devices(network)
    return layered_network_deck(tech, sizing, layers, dc_input_sources(x), analyses,
                                layered_saves(layers), title="memspice layered network")


def batch_deck(network: TrainedCrossbarNetwork, tech: DeviceSource, sizing: InverterSizing,
               samples: np.ndarray, columns: bool = True) -> Deck:
    """A flat deck evaluating ``S`` inputs ``(S, n_inputs)`` (V) in one ``.dc`` sweep of the
    index source (sample ``s`` at ``v(idx) = s``), saving every neuron output and, with
    ``columns``, every column node."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    layers = crossbar_devices(network)
    sweep = Dc(Sweep(INDEX_NODE, 0, len(x) - 1, 1)) if len(x) > 1 else Op()
    drive = indexed_input_sources(x) if len(x) > 1 else dc_input_sources(x[0])
    return layered_network_deck(tech, sizing, layers, drive, [sweep],
                                layered_saves(layers, columns), title="memspice layered network")
