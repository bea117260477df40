"""Validation decks: one deck evaluates a whole batch of samples, and its results come back as arrays.

DC mode is the batched method of ARCHITECTURE §5: one ``.dc`` sweep of the index source
``Vidx``; every input row is a B-source ``pwl(v(idx), …)`` of the batch's samples, so sample
``s`` is the operating point at ``v(idx) = s``. Consecutive operating points start Newton
from the previous solution, so samples are ordered (:func:`similarity_order`) to keep
consecutive operating points close.

Transient mode reuses the same drive but turns ``Vidx`` into a time staircase: a reset step
(all inputs at mid-rail) and then one sample every ``period_s``, each reached by a linear
ramp of ``rise_s``. Delay and energy per sample are measured from that waveform
(:mod:`memspice.validate.energy`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from memspice.circuit.builders import (
    INDEX_NODE,
    InverterSizing,
    DeviceSource,
    indexed_input_sources,
    inverter_subckt,
    network_elements,
    network_output_saves,
    neuron_subckt,
    supply_sources,
    technology_deck,
)
from memspice.circuit.deck import Dc, Deck, Save, Sweep, Tran
from memspice.circuit.wiring import input_node, output_node
from memspice.circuit.elements import Element, Pwl, VoltageSource
from memspice.errors import ConfigError, SimFailed
from memspice.sim.rawfile import Plot
from memspice.validate.nonideal import wired_network

SUPPLY_SAVES = (Save("i", "dd"), Save("i", "ss"))


@dataclass(frozen=True, slots=True)
class TransientSpec:
    """How samples are driven in time.

    Attributes:
        period_s: time each sample is held (s). Subthreshold networks at ±0.25 V take 100–200 ns
            to settle (built-in card, PHAX sizing); an output that has not reached its DC
            operating point within the period is reported as not settled.
        rise_s: input ramp time from one sample to the next (s).
        points_per_period: period / ngspice's largest time step (dimensionless). ngspice takes
            smaller steps where its truncation-error control asks for them (fast edges), so this
            bounds the step only where the outputs move slowly. Measured against 20,000 points on a
            trained 64-32-10 (built-in card, 1 µs period, 6 samples): delays of 170–450 ns within
            1.0 ns at 200 and at 1,000 points, energy per period equal to 5 digits; 200 points run
            3.7× faster than 1,000 (0.83 vs 3.04 s), 3.1× on the MNIST sky130 196-100-10.
    """

    period_s: float = 1e-6
    rise_s: float = 0.1e-9
    points_per_period: int = 200

    def __post_init__(self) -> None:
        if not (self.period_s > 0 and 0 < self.rise_s < self.period_s):
            raise ConfigError(f"transient period {self.period_s} s must exceed the rise time {self.rise_s} s > 0")
        if int(self.points_per_period) < 10:
            raise ConfigError("transient needs at least 10 points per period")


@dataclass(frozen=True, slots=True)
class NetworkCircuit:
    """The fixed part of every validation deck (picklable, so it can travel to Dask workers).

    Attributes:
        tech: the technology (models, rails, temperature).
        sizing: inverter sizing (m).
        conductances: per-layer ``(M, 2N+2)`` conductances as netlisted (S).
        wire_ohm: wire segment resistance between crossbar cells (Ω); 0 = ideal wires.
        precise: use :data:`~memspice.circuit.builders.PRECISE_OPTIONS` (agreement to 1e-6 V).
    """

    tech: DeviceSource
    sizing: InverterSizing
    conductances: tuple[np.ndarray, ...]
    wire_ohm: float = 0.0
    precise: bool = True

    def digest(self) -> str:
        """Stable SHA-256 of everything that shapes the circuit."""
        h = hashlib.sha256()
        describe = getattr(self.tech, "describe", None)
        tech_text = repr(sorted(describe().items())) if describe else repr(self.tech)
        h.update(f"{tech_text}|{self.sizing!r}|{self.wire_ohm!r}|{self.precise}".encode())
        for g in self.conductances:
            h.update(np.ascontiguousarray(g, dtype=np.float64).tobytes())
            h.update(repr(g.shape).encode())
        return h.hexdigest()

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Neurons per layer."""
        return tuple(layer_sizes(self.conductances))

    def dc_deck(self, x: np.ndarray) -> Deck:
        """The batched DC deck for samples ``x`` (:func:`dc_batch_deck`)."""
        return dc_batch_deck(self, x)

    def dc_arrays(self, plot: Plot, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample arrays of a DC batch (:func:`dc_arrays`)."""
        return dc_arrays(plot, self.conductances, len(x), x)

    def transient_deck(self, x: np.ndarray, spec: TransientSpec) -> Deck:
        """The transient deck for samples ``x`` (:func:`transient_batch_deck`)."""
        return transient_batch_deck(self, x, spec)

    def transient_drive_power(self, plot: Plot, n_inputs: int) -> np.ndarray:
        """Power of the input drivers at every time point of a transient batch (W)."""
        return input_drive_power(plot, input_voltages(plot, n_inputs))


class ValidationCircuit(Protocol):
    """What a validation batch needs of a circuit: decks for samples and arrays from results.

    Implemented by :class:`NetworkCircuit` (dense networks, subcircuit neurons) and
    :class:`~memspice.validate.layered.LayeredCircuit` (conv, pooled and masked networks, flat
    decks). A circuit is a picklable value: batches carry it to local threads and Dask workers.
    The arrays of :meth:`dc_arrays` are ``outn{L}``/``outp{L}`` ``(S, M_L)`` (V), ``i_vdd``,
    ``i_vss`` ``(S,)`` (A, ngspice sign) and ``p_in`` ``(S,)`` (W); transient decks must name
    the last layer's outputs and the rails as :func:`transient_batch_deck` does, so that
    :func:`~memspice.validate.energy.transient_metrics` reads them.
    """

    @property
    def tech(self) -> Any:
        """The technology (rails, models)."""
        ...

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Neurons per layer."""
        ...

    def digest(self) -> str:
        """Stable SHA-256 of everything that shapes the circuit."""
        ...

    def dc_deck(self, x: np.ndarray) -> Deck:
        """One ``.dc`` sweep point per sample of ``x`` ``(S, N)`` (V)."""
        ...

    def dc_arrays(self, plot: Plot, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample arrays from the plot of :meth:`dc_deck` for ``x``."""
        ...

    def transient_deck(self, x: np.ndarray, spec: TransientSpec) -> Deck:
        """Reset step at mid-rail, then each sample of ``x`` for ``spec.period_s``."""
        ...

    def transient_drive_power(self, plot: Plot, n_inputs: int) -> np.ndarray:
        """``(T,)`` power the input drivers deliver at every time point (W)."""
        ...


_ELEMENT_CACHE: dict[str, list[Element]] = {}
_CACHE_LOCK = threading.Lock()


def circuit_elements(circuit: NetworkCircuit) -> list[Element]:
    """Crossbars and neurons of ``circuit``, built once per process and reused by every batch."""
    key = circuit.digest()
    with _CACHE_LOCK:
        cached = _ELEMENT_CACHE.get(key)
    if cached is None:
        if circuit.wire_ohm > 0:
            cached = wired_network(circuit.conductances, circuit.wire_ohm)
        else:
            cached = network_elements(circuit.conductances)
        with _CACHE_LOCK:
            if len(_ELEMENT_CACHE) > 8:
                _ELEMENT_CACHE.clear()
            _ELEMENT_CACHE[key] = cached
    return cached


#: Largest group walked by one greedy pass (its distance matrix is ``block²`` float32).
SIMILARITY_BLOCK = 2048


def similarity_order(features: np.ndarray, block: int = SIMILARITY_BLOCK) -> np.ndarray:
    """A greedy nearest-neighbour path through the rows of ``features`` (starting at row 0).

    Consecutive DC sweep points then differ little, so Newton starts close to each new
    operating point. More than ``block`` rows are first sorted along their first principal
    axis and walked block by block (each block continuing from the nearest row to where the
    previous one ended), which keeps memory at ``O(block²)`` and time near ``O(n·block)``.
    """
    f = np.asarray(features, dtype=np.float64)
    f = f.reshape(len(f), -1)
    n = len(f)
    if n <= 2:
        return np.arange(n)
    if n <= block:
        return _greedy_path(f, 0)
    centred = f - f.mean(axis=0)
    axis = np.linalg.svd(centred[:: max(1, n // block)], full_matrices=False)[2][0]
    pre = np.argsort(centred @ axis, kind="stable")
    pre = np.concatenate([[0], pre[pre != 0]])  # still start at row 0
    parts, last = [], None
    for start in range(0, n, block):
        rows = pre[start : start + block]
        first = 0 if last is None else int(np.argmin(((f[rows] - f[last]) ** 2).sum(axis=1)))
        path = rows[_greedy_path(f[rows], first)]
        parts.append(path)
        last = path[-1]
    return np.concatenate(parts)


#: Newton iterations per sweep point against the extrapolation error ``e`` (V) of ngspice's
#: sweep predictor: ``iterations ≈ NEWTON_AT_MEDIAN + NEWTON_PER_LOG · ln(e / median e)``.
#: Fitted on a trained 64-32-10 (digits, built-in card, 1,797 points, features of
#: :func:`~memspice.validate.api.ordering_features`): ≈ 17.3 + 4.2·ln(e / 1 V), residual
#: SD 1.8 iterations, correlation 0.76. Only relative work matters (it balances batches).
NEWTON_AT_MEDIAN = 7.5
NEWTON_PER_LOG = 4.2


def sweep_work(features: np.ndarray) -> np.ndarray:
    """Predicted Newton iterations of each point of a DC sweep through ``features`` (in sweep order).

    ngspice starts every sweep point from a linear extrapolation of the device voltages at the
    two points before it (``MODEINITPRED``), so the work at point ``k`` grows with the size of
    the second difference ``f[k] - 2 f[k-1] + f[k-2]``, logarithmically (Newton converges
    quadratically once close). The first two points get the median work; the result is
    clipped to [2, 40] iterations, the range seen in practice.
    """
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    n = len(f)
    if n < 3:
        return np.full(n, NEWTON_AT_MEDIAN)
    error = np.linalg.norm(f[2:] - 2.0 * f[1:-1] + f[:-2], axis=1)
    positive = error[error > 0]
    scale = float(np.median(positive)) if len(positive) else 1.0
    floor = 1e-9 * max(scale, 1e-300)
    work = NEWTON_AT_MEDIAN + NEWTON_PER_LOG * np.log(np.maximum(error, floor) / scale)
    return np.clip(np.concatenate([[NEWTON_AT_MEDIAN] * 2, work]), 2.0, 40.0)


def balanced_cuts(work: np.ndarray, count: int) -> list[np.ndarray]:
    """Positions ``0..n-1`` cut into ``count`` consecutive runs of about equal total ``work``."""
    n = len(work)
    count = max(1, min(int(count), n))
    total = np.cumsum(np.asarray(work, dtype=np.float64))
    targets = total[-1] * np.arange(1, count) / count
    after = np.searchsorted(total, targets, side="left")  # first position whose running total reaches the target
    before_total = np.where(after > 0, total[np.maximum(after - 1, 0)], 0.0)
    closer_before = np.abs(before_total - targets) < np.abs(total[after] - targets)
    cuts = np.where(closer_before, after, after + 1).tolist()  # cut where the running total is nearest
    for i in range(len(cuts)):  # strictly increasing and leaving room: no run is empty
        cuts[i] = min(max(cuts[i], cuts[i - 1] + 1 if i else 1), n - (count - 1 - i))
    return np.split(np.arange(n), cuts)


def _greedy_path(f: np.ndarray, first: int) -> np.ndarray:
    n = len(f)
    sq = (f * f).sum(axis=1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)).astype(np.float32)
    order = np.empty(n, dtype=np.int64)
    current = first
    for step in range(n):
        order[step] = current
        dist[:, current] = np.inf
        if step == n - 1:
            break
        current = int(np.argmin(dist[current]))
    return order


def dc_batch_deck(circuit: NetworkCircuit, x: np.ndarray, title: str = "memspice validation") -> Deck:
    """The batched DC deck for samples ``x`` ``(S, N)`` (V): one sweep point per sample."""
    x = np.asarray(x, dtype=np.float64)
    # ngspice evaluates a one-point pwl(v(idx), 0, x) as NaN: a single sample is given a second,
    # equal breakpoint at idx = 1 (the sweep still stops at idx = 0).
    drive = indexed_input_sources(x if x.shape[0] > 1 else np.vstack([x, x]))
    analyses = [Dc(Sweep(INDEX_NODE, 0, max(x.shape[0] - 1, 0), 1))]
    saves = [*network_output_saves(circuit.conductances, "all"), *SUPPLY_SAVES, *input_drive_saves(x.shape[1])]
    elements = [*supply_sources(circuit.tech.rails), *drive, *circuit_elements(circuit)]
    return technology_deck(circuit.tech, title, elements, [inverter_subckt(circuit.tech, circuit.sizing), neuron_subckt()],
                           analyses, saves, precise=circuit.precise)


def _driver_currents(n_inputs: int) -> list[tuple[Save, Save]]:
    """Branch currents of input ``i``'s two drivers, as :func:`indexed_input_sources` names them:
    the ``xp_i`` B-source (row ``ip_i`` at ``x_i``) and the ``xn_i`` VCVS (row ``in_i`` at ``−x_i``)."""
    return [(Save("i", f"xp{i}", "b"), Save("i", f"xn{i}", "e")) for i in range(n_inputs)]


def input_drive_saves(n_inputs: int) -> list[Save]:
    """Branch currents of every input driver (see :func:`input_drive_power`)."""
    return [save for pair in _driver_currents(n_inputs) for save in pair]


def input_voltage_saves(n_inputs: int) -> list[Save]:
    """The ``xp_i`` input nodes (``x_i``; the ``xn_i`` nodes hold ``−x_i``)."""
    return [Save("v", input_node(i, "p")) for i in range(n_inputs)]


def input_voltages(plot: Plot, n_inputs: int) -> np.ndarray:
    """``(points, N)`` input voltages as simulated (V), from the :func:`input_voltage_saves`."""
    try:
        return np.column_stack([plot[save.vector] for save in input_voltage_saves(n_inputs)])
    except KeyError as exc:
        raise SimFailed(f"results lack an input voltage: {exc}") from exc


def input_drive_power(plot: Plot, x: np.ndarray) -> np.ndarray:
    """Power the input drivers deliver at each sweep or time point (W), from their branch currents.

    ``x`` ``(points, N)`` holds the inputs at those points. Row ``ip_i`` is driven at ``x_i`` and
    row ``in_i`` at ``−x_i``; a source delivers ``−V·I`` with ngspice's branch current ``I`` (into
    its + terminal). This is the power of the input crossbar, which the rails do not see: on a
    trained digits 64-32-10 it is ~16× the rails'.
    """
    x = np.asarray(x, dtype=np.float64)
    try:
        i_p, i_n = (np.column_stack([plot[pair[k].vector] for pair in _driver_currents(x.shape[1])]) for k in (0, 1))
    except KeyError as exc:
        raise SimFailed(f"batch results lack an input driver current: {exc}") from exc
    return np.sum(x * (i_n - i_p), axis=1)


def transient_batch_deck(circuit: NetworkCircuit, x: np.ndarray, spec: TransientSpec,
                         title: str = "memspice validation transient") -> Deck:
    """The transient deck: reset step at mid-rail, then each sample for ``spec.period_s``."""
    x = np.asarray(x, dtype=np.float64)
    rails = circuit.tech.rails
    staged = np.vstack([np.full((1, x.shape[1]), rails.mid), x])
    drive = indexed_input_sources(staged)
    times, values = [0.0], [0.0]
    for s in range(1, staged.shape[0]):
        start = s * spec.period_s
        times += [start, start + spec.rise_s]
        values += [float(s - 1), float(s)]
    drive[0] = VoltageSource(INDEX_NODE, INDEX_NODE, "0", 0.0, Pwl(tuple(times), tuple(values)))
    stop = staged.shape[0] * spec.period_s
    step = spec.period_s / spec.points_per_period
    saves = [*network_output_saves(circuit.conductances, "last"), *SUPPLY_SAVES,
             *input_voltage_saves(x.shape[1]), *input_drive_saves(x.shape[1])]
    elements = [*supply_sources(rails), *drive, *circuit_elements(circuit)]
    return technology_deck(circuit.tech, title, elements, [inverter_subckt(circuit.tech, circuit.sizing), neuron_subckt()],
                           [Tran(step, stop, max_step_s=step)], saves, precise=circuit.precise)


def layer_sizes(conductances: Sequence[np.ndarray]) -> list[int]:
    """Neurons per layer."""
    return [int(np.asarray(g).shape[0]) for g in conductances]


def dc_arrays(plot: Plot, conductances: Sequence[np.ndarray], n_samples: int,
              x: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-sample arrays from a DC batch plot.

    Args:
        x: the batch's input voltages ``(S, N)`` in sweep order; given, ``p_in`` is added.

    Returns:
        ``outn{L}``/``outp{L}`` ``(S, M_L)`` neuron outputs (V), ``i_vdd``/``i_vss`` ``(S,)``
        supply branch currents (A, ngspice sign: positive into the source's + terminal) and
        ``p_in`` ``(S,)`` the input drivers' power (W, see :func:`input_drive_power`).

    Raises:
        SimFailed: the plot has the wrong number of points or lacks a vector.
    """
    if plot.n_points != n_samples:
        raise SimFailed(f"batch returned {plot.n_points} sweep points for {n_samples} samples")
    arrays: dict[str, np.ndarray] = {}
    try:
        for layer, m in enumerate(layer_sizes(conductances)):
            for pol in ("n", "p"):
                arrays[f"out{pol}{layer}"] = np.column_stack(
                    [plot[output_node(layer, j, pol)] for j in range(m)]).astype(np.float64)
        arrays["i_vdd"] = np.asarray(plot["i(vdd)"], dtype=np.float64)
        arrays["i_vss"] = np.asarray(plot["i(vss)"], dtype=np.float64)
    except KeyError as exc:
        raise SimFailed(f"batch results lack a vector: {exc}") from exc
    if x is not None:
        arrays["p_in"] = input_drive_power(plot, x)
    return arrays
