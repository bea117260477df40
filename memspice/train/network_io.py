"""The trained network as conductances per crossbar: NPZ arrays + JSON metadata.

``network.npz`` holds ``layer{i}`` (``(M, 2N+2)`` target conductances in siemens, in
:mod:`memspice.circuit.wiring` row order). A known fault map travels next to it as
``fault_map.npz`` (:mod:`memspice.train.fault_map`); networks written before that format
held the masks in ``network.npz`` as ``stuck_high{i}`` / ``stuck_low{i}`` and still load.
``network.json`` holds the format name and version, topology, rails, device window, evaluator
name, the full calibration and its digest, and free-form training metadata. The validation
stage calls :func:`load_network` and then :meth:`TrainedNetwork.layer_voltages`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.wiring import layer_shapes
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.io import write_atomic, write_text_atomic
from memspice.train.forward import LayerState, make_evaluator
from memspice.train.fault_map import FAULT_MAP_NAME, check_fault_map, load_fault_map, save_fault_map
from memspice.train.hardware import FaultMap
from memspice.train.mapping import ConductanceWindow, conductance_to_theta

NETWORK_FORMAT = "memspice-network"
NETWORK_VERSION = 1
NPZ_NAME = "network.npz"
JSON_NAME = "network.json"


@dataclass(frozen=True)
class TrainedNetwork:
    """A trained crossbar network.

    Attributes:
        topology: layer sizes, e.g. ``(196, 100, 10)``.
        conductances: per layer ``(M, 2N+2)`` target conductances (S), wiring order.
        calibration: the calibration it was trained against.
        evaluator: name of the network evaluator used in training (``"static"``).
        faults: stuck devices the network was trained around, or None.
        metadata: JSON-safe training summary (dataset, accuracy, options).
    """

    topology: tuple[int, ...]
    conductances: tuple[np.ndarray, ...]
    calibration: Calibration
    evaluator: str = "static"
    faults: FaultMap | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shapes = [s.matrix_shape for s in layer_shapes(self.topology)]
        got = [g.shape for g in self.conductances]
        if got != shapes:
            raise ConfigError(f"conductance shapes {got} do not match topology {self.topology}")
        for index, g in enumerate(self.conductances):
            if not np.all(np.isfinite(g)) or np.any(g <= 0):
                raise ConfigError(f"layer {index} has non-positive or non-finite conductances")

    @property
    def window(self) -> ConductanceWindow:
        """The calibration's device window (S)."""
        d = self.calibration.device
        return ConductanceWindow(d.g_min_siemens, d.g_max_siemens)

    def effective_conductances(self) -> tuple[np.ndarray, ...]:
        """Conductances as built: stuck devices at g_max / g_min (S)."""
        if self.faults is None:
            return self.conductances
        w = self.window
        return tuple(
            np.where(high, w.g_max_siemens, np.where(low, w.g_min_siemens, g))
            for g, high, low in zip(self.conductances, self.faults.stuck_high,
                                    self.faults.stuck_low)
        )

    def layer_voltages(self, x: np.ndarray, evaluator: str | None = None
                       ) -> tuple[LayerState, ...]:
        """Model voltages of every layer for input voltages ``x`` ``(B, n_inputs)`` (V).

        Each :class:`~memspice.train.forward.LayerState` holds row, column, ``outn`` and
        ``outp`` voltages, the quantities SPICE validation compares neuron by neuron.
        """
        model = make_evaluator(evaluator or self.evaluator, self.calibration)
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self.topology[0]:
            raise ConfigError(f"network takes {self.topology[0]} inputs, got {x.shape[1]}")
        return model.forward(self.effective_conductances(), x).layers

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V): the last layer's ``outp``."""
        return self.layer_voltages(x)[-1].outp

    def thetas(self) -> list[np.ndarray]:
        """θ per layer (inverse mapping; ±inf for devices exactly on a window edge)."""
        return [conductance_to_theta(g, self.window) for g in self.conductances]


def save_network(network: TrainedNetwork, directory: Path) -> dict[str, Path]:
    """Write ``network.npz`` and ``network.json`` atomically into ``directory``."""
    directory = Path(directory)
    arrays = {f"layer{i}": g for i, g in enumerate(network.conductances)}
    if network.faults is not None:
        check_fault_map(network.faults, network.topology)  # before anything is written

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    cal = network.calibration
    meta = {
        "format": NETWORK_FORMAT,
        "version": NETWORK_VERSION,
        "topology": list(network.topology),
        "units": "siemens",
        "row_order": "ip_0..ip_{N-1}, in_0..in_{N-1}, bias_p(vdd), bias_n(vss)",
        "rails": {"vdd": cal.rails.vdd, "vss": cal.rails.vss},
        "device": {"g_min_siemens": cal.device.g_min_siemens,
                   "g_max_siemens": cal.device.g_max_siemens, "levels": cal.device.levels},
        "evaluator": network.evaluator,
        "has_fault_map": network.faults is not None,
        "calibration_digest": cal.digest(),
        "calibration": cal.to_dict(),
        "metadata": network.metadata,
    }
    npz_path = write_atomic(directory / NPZ_NAME, write_npz)
    json_path = write_text_atomic(directory / JSON_NAME,
                                  json.dumps(meta, indent=2, sort_keys=True) + "\n")
    paths = {"network_npz": npz_path, "network_json": json_path}
    if network.faults is not None:
        paths["fault_map"] = save_fault_map(network.faults, directory / FAULT_MAP_NAME, network.topology)
    else:
        (directory / FAULT_MAP_NAME).unlink(missing_ok=True)  # a stale map would be read back
    return paths


def load_network(directory: Path, calibration: Calibration | None = None) -> TrainedNetwork:
    """Read a network written by :func:`save_network`.

    Args:
        directory: folder holding ``network.json`` and ``network.npz``.
        calibration: when given, its digest must match the one the network was trained with.

    Raises:
        ConfigError: missing files, another format version, a digest mismatch, or arrays that
            do not match the recorded topology.
    """
    directory = Path(directory)
    json_path, npz_path = directory / JSON_NAME, directory / NPZ_NAME
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no trained network in {directory} ({JSON_NAME} missing)") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{json_path} is not valid JSON: {exc}") from exc
    if meta.get("format") != NETWORK_FORMAT:
        raise ConfigError(f"{json_path} is not a memspice network document")
    if meta.get("version") != NETWORK_VERSION:
        raise ConfigError(f"network format version {meta.get('version')!r} is not supported "
                          f"(this memspice reads version {NETWORK_VERSION})")
    stored = Calibration.from_dict(meta["calibration"])
    if stored.digest() != meta["calibration_digest"]:
        raise ConfigError(f"{json_path}: embedded calibration does not match its digest")
    if calibration is not None and calibration.digest() != meta["calibration_digest"]:
        raise ConfigError(
            f"network in {directory} was trained with calibration "
            f"{meta['calibration_digest'][:12]}…, not {calibration.digest()[:12]}…"
        )
    topology = tuple(int(t) for t in meta["topology"])
    n_layers = len(topology) - 1
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            conductances = tuple(np.array(data[f"layer{i}"]) for i in range(n_layers))
            faults = None
            if meta.get("has_fault_map") and "stuck_high0" in data.files:
                faults = FaultMap(
                    tuple(np.array(data[f"stuck_high{i}"]) for i in range(n_layers)),
                    tuple(np.array(data[f"stuck_low{i}"]) for i in range(n_layers)),
                )
    except FileNotFoundError as exc:
        raise ConfigError(f"{npz_path} is missing") from exc
    except KeyError as exc:
        raise ConfigError(f"{npz_path} lacks array {exc}") from exc
    if (directory / FAULT_MAP_NAME).is_file():  # the map next to the network wins over older embedded masks
        faults = load_fault_map(directory / FAULT_MAP_NAME, topology)
    elif meta.get("has_fault_map") and faults is None:
        raise ConfigError(f"{json_path} records a fault map but {directory / FAULT_MAP_NAME} is missing")
    return TrainedNetwork(topology, conductances, stored, meta.get("evaluator", "static"),
                          faults, dict(meta.get("metadata", {})))
