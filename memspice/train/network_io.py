"""The trained network as conductances per crossbar: NPZ arrays + JSON metadata.

``network.npz`` holds ``layer{i}`` (``(M, 2N+2)`` target conductances in siemens, in
:mod:`memspice.circuit.wiring` row order). A known fault map travels next to it as
``fault_map.npz`` (:mod:`memspice.train.fault_map`); networks written before that format
held the masks in ``network.npz`` as ``stuck_high{i}`` / ``stuck_low{i}`` and still load.
``network.json`` holds the format name and version, topology, rails, device window, evaluator
name, the full calibration and its digest, and free-form training metadata. The validation
stage calls :func:`load_network` and then :meth:`TrainedNetwork.layer_voltages`.

Version 2 adds ``layers``, the :class:`~memspice.network.NetworkSpec` description
(``{"input_shape": [...], "layers": [{"kind": "dense", "units": …}, …]}``); version 1 files
(dense, no ``layers``) still load. Networks with conv or pooling layers are read by
:func:`memspice.train.conv_io.load_layered_network`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.wiring import layer_shapes
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.spec import NetworkSpec
from memspice.safe_io import dumps_strict, read_document, write_atomic, write_text_atomic
from memspice.train.forward import LayerState, make_evaluator
from memspice.train.fault_map import FAULT_MAP_NAME, check_fault_map, load_fault_map, save_fault_map
from memspice.train.hardware import FaultMap
from memspice.train.mapping import ConductanceWindow, conductance_to_theta

NETWORK_FORMAT = "memspice-network"
NETWORK_VERSION = 2
#: Versions :func:`load_network` reads: 1 (dense topology only) and 2 (adds ``layers``).
READABLE_VERSIONS = (1, 2)
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


def calibration_record(cal: Calibration) -> dict[str, Any]:
    """The network file's rails, device window and embedded calibration (with its digest)."""
    return {
        "rails": {"vdd": cal.rails.vdd, "vss": cal.rails.vss},
        "device": {"g_min_siemens": cal.device.g_min_siemens,
                   "g_max_siemens": cal.device.g_max_siemens, "levels": cal.device.levels},
        "calibration_digest": cal.digest(),
        "calibration": cal.to_dict(),
    }


def write_network_files(directory: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``network.npz`` (``arrays``) and ``network.json`` (``meta``, strict JSON) atomically."""

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    npz_path = write_atomic(Path(directory) / NPZ_NAME, write_npz)
    json_path = write_text_atomic(Path(directory) / JSON_NAME, dumps_strict(meta, indent=2, sort_keys=True) + "\n")
    return {"network_npz": npz_path, "network_json": json_path}


def save_network(network: TrainedNetwork, directory: Path) -> dict[str, Path]:
    """Write ``network.npz`` and ``network.json`` atomically into ``directory``."""
    directory = Path(directory)
    arrays = {f"layer{i}": g for i, g in enumerate(network.conductances)}
    if network.faults is not None:
        check_fault_map(network.faults, network.topology)  # before anything is written

    meta = {
        "format": NETWORK_FORMAT,
        "version": NETWORK_VERSION,
        "topology": list(network.topology),
        "layers": NetworkSpec.dense(network.topology).to_dict(),
        "units": "siemens",
        "row_order": "ip_0..ip_{N-1}, in_0..in_{N-1}, bias_p(vdd), bias_n(vss)",
        **calibration_record(network.calibration),
        "evaluator": network.evaluator,
        "has_fault_map": network.faults is not None,
        "metadata": network.metadata,
    }
    paths = write_network_files(directory, arrays, meta)
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
    if not directory.is_dir():
        raise ConfigError(f"no trained network at {directory} (expected a folder with {JSON_NAME} and {NPZ_NAME})")
    try:
        meta = json.loads(read_document(json_path, "network description"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no trained network in {directory} ({JSON_NAME} missing)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{json_path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {json_path}: {exc.strerror or exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != NETWORK_FORMAT:
        raise ConfigError(f"{json_path} is not a memspice network document")
    if meta.get("version") not in READABLE_VERSIONS:
        raise ConfigError(f"network format version {meta.get('version')!r} is not supported "
                          f"(this memspice reads versions {list(READABLE_VERSIONS)})")
    if meta.get("version") >= 2 and meta.get("topology") is None:
        raise ConfigError(f"{json_path} holds a network with conv or pooling layers; read it "
                          f"with memspice.train.conv_io.load_layered_network")
    try:
        stored = Calibration.from_dict(meta["calibration"])
        recorded_digest = str(meta["calibration_digest"])
        topology = tuple(_layer_size(t) for t in meta["topology"])
        metadata = meta.get("metadata", {})
        evaluator = meta.get("evaluator", "static")
        if not isinstance(metadata, dict) or not isinstance(evaluator, str) or len(topology) < 2:
            raise TypeError("metadata, evaluator or topology of the wrong type")
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{json_path} is incomplete or malformed: {exc}") from exc
    if stored.digest() != recorded_digest:
        raise ConfigError(f"{json_path}: embedded calibration does not match its digest")
    if calibration is not None and calibration.digest() != recorded_digest:
        raise ConfigError(
            f"network in {directory} was trained with calibration "
            f"{recorded_digest[:12]}…, not {calibration.digest()[:12]}…"
        )
    n_layers = len(topology) - 1
    from memspice.budget import network_parameters, require

    require(8.0 * 4 * network_parameters(topology), f"loading the {'-'.join(map(str, topology))} network in {directory}")
    try:
        expected = {f"layer{s}": shape.matrix_shape for s, shape in enumerate(layer_shapes(topology))}
        found = npz_shapes(npz_path)
        for key, shape in expected.items():
            if key in found and found[key] != shape:
                raise ConfigError(f"{npz_path}: array {key} has shape {found[key]}, but topology "
                                  f"{topology} needs {shape}")
        with open(npz_path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            conductances = tuple(_array(data, f"layer{i}", np.float64) for i in range(n_layers))
            faults = None
            if meta.get("has_fault_map") and "stuck_high0" in data.files:
                faults = FaultMap(
                    tuple(_array(data, f"stuck_high{i}", bool) for i in range(n_layers)),
                    tuple(_array(data, f"stuck_low{i}", bool) for i in range(n_layers)),
                )
    except FileNotFoundError as exc:
        raise ConfigError(f"{npz_path} is missing") from exc
    except KeyError as exc:
        raise ConfigError(f"{npz_path} lacks array {exc}") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{npz_path} is not a readable NumPy archive: {exc}") from exc
    if faults is not None:
        shapes = [g.shape for g in conductances]
        if [h.shape for h in faults.stuck_high] != shapes or [m.shape for m in faults.stuck_low] != shapes:
            raise ConfigError(f"{npz_path}: the fault maps do not match the conductance shapes")
    if (directory / FAULT_MAP_NAME).is_file():  # the map next to the network wins over older embedded masks
        faults = load_fault_map(directory / FAULT_MAP_NAME, topology)
    elif meta.get("has_fault_map") and faults is None:
        raise ConfigError(f"{json_path} records a fault map but {directory / FAULT_MAP_NAME} is missing")
    return TrainedNetwork(topology, conductances, stored, evaluator, faults, dict(metadata))


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an ``.npz`` archive, read from their headers (no data is loaded).

    Raises:
        OSError, ValueError, zipfile.BadZipFile: not a readable archive of ``.npy`` files.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".npy"):
                continue
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, _ = np.lib.format.read_array_header_2_0(member)
                else:  # a newer header layout: np.load checks it when the array is read
                    continue
            shapes[name[:-4]] = tuple(int(n) for n in shape)
    return shapes


def _layer_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"layer sizes must be positive integers, got {value!r}")
    return value


def _array(data: Any, key: str, dtype: type) -> np.ndarray:
    """``data[key]`` as ``dtype``; refuses arrays of another kind (strings, objects, complex)."""
    array = np.array(data[key])
    kinds = "b" if dtype is bool else "biuf"
    if array.dtype.kind not in kinds:
        raise ValueError(f"array {key} holds {array.dtype} values, not {np.dtype(dtype)}")
    return array.astype(dtype)


def verify_checkpoint(path: Path) -> None:
    """Check that a training checkpoint, if present, can be read (before training resumes from it).

    Raises:
        ConfigError: the file exists but is not a checkpoint :func:`memspice.train.trainer.train`
            can read (truncated, another format, missing arrays or metadata).
    """
    from memspice.train.trainer import _load_checkpoint

    path = Path(path)
    if not path.exists():
        return
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            data.files  # a truncated or foreign file fails here, with the handle closed
        state = _load_checkpoint(path)
        params = state["params"]
        if not all(isinstance(p, np.ndarray) and p.dtype.kind == "f" for p in params):
            raise ValueError("parameters are not floating-point arrays")
        for key in ("epoch", "best_epoch", "lr", "history"):
            state[key]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it to "
                          "start training over") from exc
