"""Validation of layer-described networks (conv, pooled, masked): the circuit and the model.

:class:`LayeredCircuit` is the :class:`~memspice.validate.decks.ValidationCircuit` of a
:class:`~memspice.train.conv_io.TrainedCrossbarNetwork`: flat decks from
:mod:`memspice.train.conv_circuit` (one resistor per present device, top-level transistors, no
driver on an input row without devices), batched, run and stored by the same machinery as
dense networks. :func:`model_states` gives the model's voltages for the same devices, device
by device: the coupled evaluator (:mod:`memspice.train.conv_coupled`) when the calibration has
an inverter current model, else the static one (rows ideal sources, one tanh fit per inverter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memspice.circuit.builders import DeviceSource, InverterSizing
from memspice.circuit.deck import Deck
from memspice.circuit.layered import CrossbarDevices
from memspice.errors import ConfigError, SimFailed
from memspice.network.spec import NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.sim.rawfile import Plot
from memspice.train.conv_circuit import (
    InputDriver,
    drive_voltage_saves,
    driven_rows,
    input_drivers,
    validation_dc_deck,
    validation_transient_deck,
)
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.forward import LayerState
from memspice.validate.decks import TransientSpec, dc_arrays

#: Evaluators a layered network can be compared with.
LAYERED_EVALUATORS = ("static", "coupled")
#: Samples per model evaluation (bounds the per-device gathers and the coupled solver's
#: ``K × K`` matrices per sample).
MODEL_CHUNK = 256


@dataclass(frozen=True, slots=True)
class LayeredCircuit:
    """The fixed part of every validation deck of a layered network (picklable).

    Attributes:
        tech: the technology (models, rails, temperature).
        sizing: inverter sizing (m).
        n_sources: per crossbar layer, the units driving its rows.
        sources: per layer ``(n_columns, D)`` row-source index of every device
            (:mod:`memspice.network.wiring`).
        conductances: per layer ``(n_columns, D)`` device conductances as netlisted (S),
            0 = absent (no element).
    """

    tech: DeviceSource
    sizing: InverterSizing
    n_sources: tuple[int, ...]
    sources: tuple[np.ndarray, ...]
    conductances: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        self.layers()  # shapes, indices and conductances are checked once, here

    def layers(self) -> list[CrossbarDevices]:
        """Per-device arrays of every layer, as :mod:`memspice.circuit.layered` takes them."""
        return [CrossbarDevices(n, s, g) for n, s, g in zip(self.n_sources, self.sources, self.conductances)]

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Neurons per layer."""
        return tuple(int(np.shape(s)[0]) for s in self.sources)

    @property
    def n_inputs(self) -> int:
        """Network inputs."""
        return int(self.n_sources[0])

    def drivers(self) -> list[InputDriver]:
        """The input drivers in the decks (none on rows without devices)."""
        return input_drivers(*driven_rows(self.layers()[0]))

    def digest(self) -> str:
        """Stable SHA-256 of everything that shapes the circuit."""
        h = hashlib.sha256()
        describe = getattr(self.tech, "describe", None)
        tech_text = repr(sorted(describe().items())) if describe else repr(self.tech)
        h.update(f"layered|{tech_text}|{self.sizing!r}|{self.n_sources!r}".encode())
        for s, g in zip(self.sources, self.conductances):
            h.update(np.ascontiguousarray(s, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(g, dtype=np.float64).tobytes())
            h.update(repr(np.shape(g)).encode())
        return h.hexdigest()

    def dc_deck(self, x: np.ndarray) -> Deck:
        """One ``.dc`` sweep point per sample of ``x`` ``(S, n_inputs)`` (V)."""
        return validation_dc_deck(self.layers(), self.tech, self.sizing, x)

    def dc_arrays(self, plot: Plot, x: np.ndarray) -> dict[str, np.ndarray]:
        """``outn{L}``/``outp{L}``, ``i_vdd``, ``i_vss`` and ``p_in`` of every sample."""
        arrays = dc_arrays(plot, self.conductances, len(x))
        arrays["p_in"] = self.drive_power(plot, np.asarray(x, dtype=np.float64))
        return arrays

    def drive_power(self, plot: Plot, x: np.ndarray) -> np.ndarray:
        """Power the input drivers deliver at each point (W): ``−V·I`` summed over the drivers
        in the deck; ``x`` ``(points, n_inputs)`` holds the inputs at those points."""
        power = np.zeros(len(x))
        try:
            for driver in self.drivers():
                power -= driver.sign * x[:, driver.index] * np.asarray(plot[driver.current.vector])
        except KeyError as exc:
            raise SimFailed(f"batch results lack an input driver current: {exc}") from exc
        return power

    def transient_deck(self, x: np.ndarray, spec: TransientSpec) -> Deck:
        """Reset step at mid-rail, then each sample of ``x`` for ``spec.period_s``."""
        return validation_transient_deck(self.layers(), self.tech, self.sizing, x, spec.period_s, spec.rise_s,
                                         spec.points_per_period)

    def transient_drive_power(self, plot: Plot, n_inputs: int) -> np.ndarray:
        """``(T,)`` power of the input drivers at every time point (W), from the saved inputs."""
        used_p, used_n = driven_rows(self.layers()[0])
        x = np.zeros((plot.n_points, n_inputs))
        try:
            for save in drive_voltage_saves(used_p, used_n):
                i, sign = int(save.name[2:]), 1.0 if save.name[1] == "p" else -1.0
                x[:, i] = sign * np.asarray(plot[save.vector])
        except KeyError as exc:
            raise SimFailed(f"results lack an input voltage: {exc}") from exc
        return self.drive_power(plot, x)


def layered_circuit(network: TrainedCrossbarNetwork, tech: DeviceSource, sizing: InverterSizing,
                    device_conductances: Sequence[np.ndarray] | None = None) -> LayeredCircuit:
    """The circuit of ``network``, with the target devices or ``device_conductances``.

    Args:
        device_conductances: per crossbar layer ``(n_columns, D)`` conductances (S) to build
            instead of the targets (e.g. drawn with variation or faults); 0 = absent. A device
            the network's masks remove must stay absent.

    Raises:
        ConfigError: wrong number of layers, a wrong shape, a negative or non-finite value,
            a device where the masks have none, or a column left without any device.
    """
    wirings = network_wiring(network.spec)
    devices = check_devices(network, device_conductances)
    return LayeredCircuit(tech, sizing, tuple(w.plan.n_sources for w in wirings),
                          tuple(np.asarray(w.source) for w in wirings), devices)


def check_devices(network: TrainedCrossbarNetwork, device_conductances: Sequence[np.ndarray] | None
                  ) -> tuple[np.ndarray, ...]:
    """``device_conductances`` checked against the network's wiring, or its target devices (S)."""
    wirings = network_wiring(network.spec)
    if device_conductances is None:
        return tuple(np.asarray(g, dtype=np.float64) for g in network.device_conductances())
    if len(device_conductances) != len(wirings):
        raise ConfigError(f"{len(device_conductances)} device conductance arrays for "
                          f"{len(wirings)} crossbar layers")
    out = []
    for wiring, g in zip(wirings, device_conductances):
        g = np.asarray(g, dtype=np.float64)
        where = f"network layer {wiring.plan.index} ({wiring.plan.kind})"
        if g.shape != wiring.source.shape:
            raise ConfigError(f"{where}: device conductances have shape {g.shape}, the layer's devices "
                              f"{wiring.source.shape} (n_columns, devices per column)")
        if not np.all(np.isfinite(g)) or np.any(g < 0):
            raise ConfigError(f"{where}: device conductances must be finite and non-negative (0 = absent)")
        if np.any((g > 0) & ~wiring.present):
            raise ConfigError(f"{where}: a device the network's masks remove has a conductance")
        if not np.all((g > 0).any(axis=1)):
            raise ConfigError(f"{where}: a column has no device left")
        out.append(g)
    return tuple(out)


def model_evaluator(network: TrainedCrossbarNetwork, evaluator: str | None) -> str:
    """The evaluator to compare SPICE with: ``evaluator``, or (None) ``coupled`` when the
    calibration has an inverter current model, else ``static``.

    Raises:
        ConfigError: an evaluator layered networks do not have, or ``coupled`` without a
            current model.
    """
    if evaluator is None:
        return "coupled" if network.calibration.inverter_current is not None else "static"
    if evaluator not in LAYERED_EVALUATORS:
        raise ConfigError(f"the {evaluator!r} evaluator does not take conv, pooled or masked networks; "
                          f"use one of {', '.join(LAYERED_EVALUATORS)}")
    if evaluator == "coupled" and network.calibration.inverter_current is None:
        raise ConfigError("the coupled evaluator needs a calibration with an inverter current model "
                          "(memspice calibrate produces one); use the static evaluator")
    return evaluator


def model_states(network: TrainedCrossbarNetwork, devices: Sequence[np.ndarray], x: np.ndarray,
                 evaluator: str) -> tuple[LayerState, ...]:
    """Model voltages of every layer for inputs ``x`` ``(S, n_inputs)`` (V), device by device.

    ``rows`` of each state are the layer's row sources ``[p…, n…, VDD, VSS, 0 V]``; the
    columns, ``outn`` and ``outp`` are in physical column order ``(channel, row, col)``.
    """
    x = np.asarray(x, dtype=np.float64)
    wirings = network_wiring(network.spec)
    cal = network.calibration
    parts: list[list[LayerState]] = []
    if evaluator == "coupled":
        from memspice.train.conv_coupled import LayeredCoupledEvaluator

        coupled = LayeredCoupledEvaluator(cal, wirings)
    for start in range(0, len(x), MODEL_CHUNK):
        chunk = x[start : start + MODEL_CHUNK]
        if evaluator == "coupled":
            trace = coupled.forward_devices(devices, chunk)
            parts.append([LayerState(s.rows, s.column, s.outn, s.outp) for s in trace.layers])
            continue
        v_pos, v_neg = chunk, -chunk
        states = []
        for wiring, g in zip(wirings, devices):
            rows = wiring.row_source_voltages(v_pos, v_neg, cal.rails.vdd, cal.rails.vss)
            column = wiring.column_voltages(np.asarray(g), v_pos, v_neg, cal.rails.vdd, cal.rails.vss)
            outn, outp = cal.activation.inverting(column), cal.activation.noninverting(column)
            states.append(LayerState(rows, column, outn, outp))
            v_pos, v_neg = outp, outn
        parts.append(states)
    return tuple(LayerState(*(np.concatenate([getattr(p[k], name) for p in parts])
                              for name in ("rows", "column", "outn", "outp")))
                 for k in range(len(wirings)))


def describe_layers(network: TrainedCrossbarNetwork) -> str:
    """``1×14×14 → conv2d 4 k3 → avgpool2d 2 → … → dense 10`` (one line)."""
    spec = network.spec
    parts = ["×".join(str(d) for d in spec.input_shape)]
    for layer in spec.layers:
        if layer.kind == "conv2d":
            text = f"conv {layer.out_channels} k{layer.kernel}"
            text += f" s{layer.stride}" if layer.stride != 1 else ""
            text += f" p{layer.padding}" if layer.padding else ""
        elif layer.kind == "avgpool2d":
            text = f"pool {layer.size}"
        elif layer.kind == "dense":
            text = f"dense {layer.units}"
        else:
            text = layer.kind
        parts.append(text)
    masked = sum(m is not None for m in spec.masks)
    return " → ".join(parts) + (f" ({masked} masked crossbar layer{'s' * (masked != 1)})" if masked else "")


def validation_bytes(spec: NetworkSpec, n_samples: int, batch_size: int) -> float:
    """Memory of validating ``spec`` on ``n_samples`` samples (bytes): the model's voltages of every
    sample (row sources, column, ``outn``, ``outp``, the SPICE results and the comparison), the
    per-device model evaluation of one chunk, and one batch's deck and results."""
    samples = int(n_samples)
    columns = sum(p.n_columns for p in spec.plans)
    rows = sum(2 * p.n_sources + 3 for p in spec.plans)
    chunk = min(MODEL_CHUNK, samples)
    batch = min(int(batch_size), samples)
    estimate = spec.estimate(chunk)
    per_sample = spec.n_inputs + rows + 8 * columns
    deck = batch * (4 * columns + spec.n_inputs) * 8 + estimate.devices * DECK_BYTES_PER_DEVICE
    return float(samples * per_sample * 8 + estimate.validation_bytes + deck)


#: Python element objects and deck text of one device while a deck is built (bytes).
DECK_BYTES_PER_DEVICE = 400


def check_memory(spec: NetworkSpec, n_samples: int, batch_size: int) -> None:
    """Refuse a validation that cannot fit in memory (see :func:`validation_bytes`).

    Raises:
        ConfigError: the estimate exceeds the memory available.
    """
    from memspice.budget import require

    require(validation_bytes(spec, n_samples, batch_size),
            f"validating a network of {spec.estimate(1).devices:,} devices on {n_samples} samples")


def layer_kinds(network: TrainedCrossbarNetwork) -> list[str]:
    """Per crossbar layer, its kind and output shape: ``conv2d 4×12×12``, ``dense 10``."""
    return [f"{p.kind} {'×'.join(str(d) for d in p.output_shape)}" for p in network.spec.plans]


def feature_maps(network: TrainedCrossbarNetwork, report: Any, x: np.ndarray) -> dict[str, Any]:
    """One image's feature maps of every conv layer, SPICE and model (V), for the report.

    The image is the first compared sample (lowest sample number). Returns ``sample``, its
    ``label``, the ``input`` ``input_shape`` (V) and ``layers``: per conv layer a dict with
    ``layer`` (crossbar index), ``kind`` and ``spice``/``model`` ``outp`` maps ``(C, H, W)``
    (V); empty when the network has no conv layer.
    """
    spec = network.spec
    conv = [p for p in spec.plans if p.kind == "conv2d"]
    if not conv or not len(report.sample_index):
        return {}
    row = 0  # sample_index is sorted: the lowest sample number
    sample = int(report.sample_index[row])
    layers = [{"layer": p.crossbar, "kind": f"{p.kind} {'×'.join(str(d) for d in p.output_shape)}",
               "spice": report.spice[p.crossbar].outp[row].reshape(p.output_shape),
               "model": report.model[p.crossbar].outp[row].reshape(p.output_shape)} for p in conv]
    return {"sample": sample, "label": int(report.labels[row]),
            "input": np.asarray(x[sample]).reshape(spec.input_shape), "layers": layers}
