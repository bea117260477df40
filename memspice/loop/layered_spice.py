"""A layered network with given per-device conductances, simulated in ngspice in batches.

SPICE stands in for the chip: the devices are what :func:`memspice.train.layered_devices.draw_devices`
programmed (variation, levels, faults), one resistor each in a flat deck
(:func:`memspice.circuit.layered.layered_network_deck`), and every batch of samples is one
``.dc`` sweep of the index source, batches run in parallel ngspice processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.builders import (
    INDEX_NODE,
    PRECISE_OPTIONS,
    DeviceSource,
    InverterSizing,
    dc_input_sources,
    indexed_input_sources,
)
from memspice.circuit.deck import Dc, Deck, Op, Sweep
from memspice.circuit.layered import layered_network_deck, layered_saves
from memspice.circuit.wiring import column_node, output_node
from memspice.errors import ConfigError, SimError
from memspice.sim import SimOptions, simulate_many
from memspice.train.conv_circuit import crossbar_devices
from memspice.train.conv_io import TrainedCrossbarNetwork


@dataclass(frozen=True, slots=True)
class SpiceLayer:
    """One crossbar layer's simulated voltages, ``(S, n_columns)`` each (V).

    Attributes:
        column: column voltages (NaN when columns were not saved).
        outn: inverted outputs.
        outp: non-inverted outputs.
    """

    column: np.ndarray
    outn: np.ndarray
    outp: np.ndarray


def device_deck(network: TrainedCrossbarNetwork, devices: Sequence[np.ndarray],
                tech: DeviceSource, sizing: InverterSizing, samples: np.ndarray,
                columns: bool = False, precise: bool = False) -> Deck:
    """A flat deck of ``network`` with per-device conductances ``devices`` (S, 0 = absent)
    evaluating ``samples`` ``(S, n_inputs)`` (V) in one sweep of the index source.

    Args:
        columns: also save every column node.
        precise: ``reltol=1e-6 vntol=1e-9`` (to compare with a model to microvolts).
    """
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    layers = crossbar_devices(network, device_conductances=devices)
    sweep = Dc(Sweep(INDEX_NODE, 0, len(x) - 1, 1)) if len(x) > 1 else Op()
    drive = indexed_input_sources(x) if len(x) > 1 else dc_input_sources(x[0])
    deck = layered_network_deck(tech, sizing, layers, drive, [sweep], layered_saves(layers, columns),
                                title="memspice layered network, programmed devices")
    return dataclasses.replace(deck, options=PRECISE_OPTIONS) if precise else deck


def simulate_devices(network: TrainedCrossbarNetwork, devices: Sequence[np.ndarray],
                     tech: DeviceSource, sizing: InverterSizing, samples: np.ndarray, *,
                     batch_size: int = 100, workers: int | None = None,
                     options: SimOptions = SimOptions(), columns: bool = False,
                     precise: bool = False) -> list[SpiceLayer]:
    """Simulate ``samples`` ``(S, n_inputs)`` (V) through the circuit of ``devices``.

    Args:
        network: the network (wiring, layer sizes).
        devices: per layer ``(n_columns, D)`` conductances (S; 0 = absent).
        tech: technology of the circuit.
        sizing: inverter sizes (m).
        samples: input voltages (V).
        batch_size: samples per deck (one ``.dc`` sweep each).
        workers: parallel ngspice processes (default: CPU count).
        options: simulator options (executable, timeout per deck).
        columns: save and return the column voltages too.
        precise: tight tolerances (see :func:`device_deck`).

    Returns:
        One :class:`SpiceLayer` per crossbar layer, rows in sample order.

    Raises:
        ConfigError: a batch size below 1 or samples of the wrong width.
        SimError: a deck failed (the first failure is raised).
    """
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if x.shape[1] != network.spec.n_inputs:
        raise ConfigError(f"network takes {network.spec.n_inputs} inputs per sample, got {x.shape[1]}")
    chunks = [x[start:start + batch_size] for start in range(0, len(x), batch_size)]
    decks = [device_deck(network, devices, tech, sizing, chunk, columns, precise) for chunk in chunks]
    results = simulate_many(decks, options, workers)
    plans = network.spec.plans
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in plans]
    for chunk, result in zip(chunks, results):
        if isinstance(result, SimError):
            raise result
        plot = result.plot(0)
        for index, plan in enumerate(plans):
            def read(node: str) -> np.ndarray:
                return np.atleast_1d(np.asarray(plot[node], dtype=np.float64))[: len(chunk)]

            m = range(plan.n_columns)
            outn = np.stack([read(output_node(index, j, "n")) for j in m], axis=1)
            outp = np.stack([read(output_node(index, j, "p")) for j in m], axis=1)
            column = (np.stack([read(column_node(index, j)) for j in m], axis=1) if columns
                      else np.full_like(outp, np.nan))
            parts[index].append((column, outn, outp))
    return [SpiceLayer(*(np.concatenate([p[k] for p in layer]) for k in range(3)))
            for layer in parts]
