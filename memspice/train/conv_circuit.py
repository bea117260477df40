"""A trained layer-described network as a flat SPICE deck (through :mod:`memspice.circuit`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.builders import (
    INDEX_NODE,
    DeviceSource,
    InverterSizing,
    dc_input_sources,
    indexed_input_sources,
)
from memspice.circuit.deck import Analysis, Dc, Deck, Op, Save, Sweep, Tran
from memspice.circuit.elements import Element, Pwl, PwlOfVoltage, VoltageSource
from memspice.circuit.layered import CrossbarDevices, layered_network_deck, layered_saves
from memspice.circuit.wiring import input_node, output_node
from memspice.network.wiring import network_wiring
from memspice.train.conv_io import TrainedCrossbarNetwork


def crossbar_devices(network: TrainedCrossbarNetwork,
                     device_conductances: Sequence[np.ndarray] | None = None
                     ) -> list[CrossbarDevices]:
    """Per-device arrays of every layer: the wiring's sources and the devices' conductances.

    Args:
        network: the trained network.
        device_conductances: per-device conductances (S) to place instead of the targets (with
            the network's own per-device fault map stuck, if it has one), e.g. after per-device
            variation; ``(n_columns, D)`` per layer, 0 = absent.
    """
    wirings = network_wiring(network.spec)
    g = network.built_devices() if device_conductances is None else device_conductances
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


# ---- validation decks: many samples per deck, drivers only on rows that have devices ----------

#: Branch currents of the two rails.
SUPPLY_SAVES = (Save("i", "dd"), Save("i", "ss"))


def driven_rows(first: CrossbarDevices) -> tuple[np.ndarray, np.ndarray]:
    """Which input rows carry a device: ``(p, n)`` boolean ``(n_inputs,)`` arrays.

    A row whose every device is masked (a pruned input) has no driver in the deck, so it
    draws no power; a row the masks keep is driven as in the dense decks (``xp_i`` at
    ``+x_i``, ``xn_i`` at ``−x_i``).
    """
    n = first.n_sources
    used = np.zeros(2 * n + 3, dtype=bool)
    used[np.asarray(first.source)[np.asarray(first.conductances) > 0]] = True
    return used[:n], used[n : 2 * n]


@dataclass(frozen=True, slots=True)
class InputDriver:
    """One source driving an input row: input ``index``, ``polarity`` ``p`` (+x) or ``n`` (−x),
    and the element letter ngspice names its branch current with (``b`` or ``e``)."""

    index: int
    polarity: str
    letter: str

    @property
    def current(self) -> Save:
        """The save of its branch current (A, into its + terminal)."""
        return Save("i", input_node(self.index, self.polarity), self.letter)

    @property
    def sign(self) -> float:
        """The row's voltage over ``x_i``: +1 for ``p``, −1 for ``n``."""
        return 1.0 if self.polarity == "p" else -1.0


def input_drivers(used_p: np.ndarray, used_n: np.ndarray) -> list[InputDriver]:
    """The drivers :func:`masked_input_sources` places, in deck order.

    ``xn_i`` is the VCVS of gain −1 from ``xp_i`` when both rows are driven (as in the dense
    decks), its own ``pwl`` B-source when only the ``n`` row has devices.
    """
    drivers = []
    for i, (p, n) in enumerate(zip(np.asarray(used_p, bool), np.asarray(used_n, bool))):
        if p:
            drivers.append(InputDriver(i, "p", "b"))
        if n:
            drivers.append(InputDriver(i, "n", "e" if p else "b"))
    return drivers


def masked_input_sources(samples: np.ndarray, used_p: np.ndarray, used_n: np.ndarray
                         ) -> list[Element]:
    """:func:`~memspice.circuit.builders.indexed_input_sources` without the drivers of rows
    that carry no device (``used_p``/``used_n`` False); an ``n`` row driven alone gets its own
    B-source ``pwl(v(idx), …, −x)``. With every row used the elements are the dense ones."""
    full = indexed_input_sources(samples)
    elements: list[Element] = [full[0]]
    for i, (p, n) in enumerate(zip(np.asarray(used_p, bool), np.asarray(used_n, bool))):
        b_source, vcvs = full[1 + 2 * i], full[2 + 2 * i]
        if p:
            elements.append(b_source)
            if n:
                elements.append(vcvs)
        elif n:
            assert isinstance(b_source, PwlOfVoltage)
            elements.append(PwlOfVoltage(f"xn{i}", input_node(i, "n"), "0", b_source.control,
                                         b_source.xs, tuple(-y for y in b_source.ys)))
    return elements


def _sweepable(x: np.ndarray) -> np.ndarray:
    # ngspice evaluates a one-point pwl(v(idx), 0, x) as NaN: a single sample is given a
    # second, equal breakpoint at idx = 1 (the sweep still stops at idx = 0).
    return x if x.shape[0] > 1 else np.vstack([x, x])


def validation_dc_deck(layers: Sequence[CrossbarDevices], tech: DeviceSource,
                       sizing: InverterSizing, samples: np.ndarray,
                       title: str = "memspice layered validation") -> Deck:
    """One ``.dc`` sweep of the index source over ``samples`` ``(S, n_inputs)`` (V), saving
    every neuron output, the rails' currents and the input drivers' currents."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    used_p, used_n = driven_rows(layers[0])
    drive = masked_input_sources(_sweepable(x), used_p, used_n)
    saves = [*layered_saves(layers, columns=False), *SUPPLY_SAVES,
             *(d.current for d in input_drivers(used_p, used_n))]
    return layered_network_deck(tech, sizing, layers, drive, [Dc(Sweep(INDEX_NODE, 0, len(x) - 1, 1))],
                                saves, title=title)


def drive_voltage_saves(used_p: np.ndarray, used_n: np.ndarray) -> list[Save]:
    """One node per driven input from which ``x_i`` is read: ``xp_i``, or ``xn_i`` (``−x_i``)
    when only the ``n`` row is driven."""
    return [Save("v", input_node(i, "p" if p else "n"))
            for i, (p, n) in enumerate(zip(np.asarray(used_p, bool), np.asarray(used_n, bool)))
            if p or n]


def validation_transient_deck(layers: Sequence[CrossbarDevices], tech: DeviceSource,
                              sizing: InverterSizing, samples: np.ndarray, period_s: float,
                              rise_s: float, points_per_period: int,
                              title: str = "memspice layered validation transient") -> Deck:
    """Reset step with every input at mid-rail, then each sample for ``period_s`` (s), reached
    by a ramp of ``rise_s`` (s); the time step is at most ``period_s / points_per_period``.

    Saves the last layer's outputs, the rails' currents, the drivers' currents and one input
    node per driven input, as the dense transient decks do.
    """
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    staged = np.vstack([np.full((1, x.shape[1]), tech.rails.mid), x])
    used_p, used_n = driven_rows(layers[0])
    drive = masked_input_sources(staged, used_p, used_n)
    times, values = [0.0], [0.0]
    for s in range(1, staged.shape[0]):
        start = s * period_s
        times += [start, start + rise_s]
        values += [float(s - 1), float(s)]
    drive[0] = VoltageSource(INDEX_NODE, INDEX_NODE, "0", 0.0, Pwl(tuple(times), tuple(values)))
    step = period_s / points_per_period
    last = len(layers) - 1
    saves = [Save("v", output_node(last, j, pol)) for j in range(layers[-1].n_columns) for pol in ("n", "p")]
    saves += [*SUPPLY_SAVES, *drive_voltage_saves(used_p, used_n),
              *(d.current for d in input_drivers(used_p, used_n))]
    return layered_network_deck(tech, sizing, layers, drive,
                                [Tran(step, staged.shape[0] * period_s, max_step_s=step)], saves, title=title)
