"""Network files for any :class:`~memspice.network.NetworkSpec` (dense, conv, pooled, masked).

The format is :mod:`memspice.train.network_io`'s (``network.json`` + ``network.npz``, format
version 2) with the ``layers`` description always present. A plain dense network without
masks is written by :func:`~memspice.train.network_io.save_network` itself, so every dense
tool reads it; other networks have ``"topology": null`` and store, per crossbar layer ``i``:

- ``layer{i}``: the target conductance σ of every trainable θ, ``plan.theta_shape`` (S), rows
  in the order ``[ip taps, in taps, bias_p, bias_n]`` (conv taps ``(c_in, row, col)``); the
  physical devices follow from :mod:`memspice.network.wiring` (replicated per position,
  ``σ/F`` for the ``F`` devices of a folded pool);
- ``mask_theta{i}`` / ``mask_device{i}``: the layer's masks, when it has them.

**Version 3** is a network programmed device by device (per-replica fault-aware training,
:class:`~memspice.train.conv_faults.ReplicaFaultAwareNetwork`): ``"per_device": true`` and,
per crossbar layer, ``device{i}``: the conductance programmed into every physical device,
``(n_columns, devices per column)`` float64 (S; 0 exactly where a mask removes the device,
every present device inside its own window ``scale·[g_min, g_max]``). ``layer{i}`` then holds
each θ's mean over its healthy replicas (a summary: the devices are what is built). Only
these networks are written as version 3; older memspice refuses them instead of building
the wrong devices.

A layered network that carries its fault map (``"has_fault_map": true``: always the case
for version 3) stores it per physical device next to the network as ``fault_map.npz``
(:func:`~memspice.train.fault_map.save_device_fault_map`), and ``network.json`` records its
``fault_map`` rates, seed and digest: :func:`load_layered_network` refuses a map that is
missing or is not that map.

:func:`load_layered_network` reads every kind, and version 1 dense files.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.spec import CrossbarMask, NetworkSpec
from memspice.network.wiring import CrossbarWiring, network_wiring
from memspice.train.conv_model import CrossbarNetwork, CrossbarTrace
from memspice.train.fault_map import FAULT_MAP_NAME, check_layer_faults, fault_map_summary, load_device_fault_map, \
    save_device_fault_map
from memspice.train.hardware import FaultMap
from memspice.train.mapping import ConductanceWindow
from memspice.train.network_io import (
    JSON_NAME,
    NETWORK_FORMAT,
    NETWORK_VERSION,
    NPZ_NAME,
    READABLE_VERSIONS,
    TrainedNetwork,
    calibration_record,
    load_network,
    save_network,
    write_network_files,
)

#: Format version of a network programmed device by device (``device{i}`` arrays).
DEVICE_VERSION = 3
#: Versions :func:`load_layered_network` reads.
LAYERED_READABLE_VERSIONS = (*READABLE_VERSIONS, DEVICE_VERSION)
#: Relative slack on a device's window when a file's devices are checked (float rounding).
WINDOW_SLACK = 1e-9


@dataclass(frozen=True)
class TrainedCrossbarNetwork:
    """A trained network of any layer description.

    Attributes:
        spec: the layers (with masks).
        conductances: per crossbar layer, σ of every θ, ``plan.theta_shape`` (S).
        calibration: the calibration it was trained against.
        evaluator: evaluator used in training.
        faults: the known stuck devices: of a plain dense network per θ (= per device there);
            of any other network per physical device, one ``(n_columns, D)`` mask pair per
            crossbar layer (:mod:`memspice.network.wiring` order); or None.
        metadata: JSON-safe training summary.
        devices: per crossbar layer, the conductance programmed into every physical device,
            ``(n_columns, D)`` (S; 0 = absent), when the network was trained device by device
            (:class:`~memspice.train.conv_faults.ReplicaFaultAwareNetwork`); None when every
            device carries its θ's σ.
    """

    spec: NetworkSpec
    conductances: tuple[np.ndarray, ...]
    calibration: Calibration
    evaluator: str = "static"
    faults: FaultMap | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    devices: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        want = [p.theta_shape for p in self.spec.plans]
        got = [np.shape(g) for g in self.conductances]
        if got != want:
            raise ConfigError(f"conductance shapes {got} do not match the layers' {want}")
        for plan, g in zip(self.spec.plans, self.conductances):
            if not np.all(np.isfinite(g)) or np.any(np.asarray(g) <= 0):
                raise ConfigError(f"network layer {plan.index} ({plan.kind}) has non-positive "
                                  f"or non-finite conductances")
        if self.faults is not None and not self.spec.is_dense:
            check_layer_faults(self.faults, self.spec, "the network's fault map")
        if self.devices is not None:
            if self.spec.is_dense:
                raise ConfigError("per-device conductances are for networks with conv or pooling layers; a "
                                  "dense network's conductances are already one per device")
            check_device_conductances(network_wiring(self.spec), self.devices, self.window)

    @property
    def window(self) -> ConductanceWindow:
        """The calibration's device window (S)."""
        d = self.calibration.device
        return ConductanceWindow(d.g_min_siemens, d.g_max_siemens)

    def model(self) -> CrossbarNetwork:
        """The static model of this network."""
        return CrossbarNetwork(self.calibration, self.spec, evaluator="static")

    def effective_conductances(self) -> tuple[np.ndarray, ...]:
        """σ per θ as built: masked θ at 0 S; a dense network's stuck devices at g_max / g_min
        (S). A per-device map is not applied here (:meth:`built_devices` applies it)."""
        g = list(self.conductances)
        if self.faults is not None and self.spec.is_dense:
            w = self.window
            g = [np.where(h, w.g_max_siemens, np.where(lo, w.g_min_siemens, gi))
                 for gi, h, lo in zip(g, self.faults.stuck_high, self.faults.stuck_low)]
        masks = self.spec.masks or (None,) * len(g)
        return tuple(gi if m is None or m.theta is None else gi * m.theta
                     for gi, m in zip(g, masks))

    def trace(self, x: np.ndarray) -> Any:
        """Model voltages of every layer for flat input voltages ``x`` (V), static model; a
        network with per-device conductances or a per-device fault map is run device by device
        on :meth:`built_devices`."""
        if self.devices is None and (self.faults is None or self.spec.is_dense):
            trace: CrossbarTrace = self.model().forward(self.effective_conductances(), np.atleast_2d(x))
            return trace
        from memspice.train.conv_faults import StaticDeviceEvaluator

        evaluator = StaticDeviceEvaluator(self.calibration, network_wiring(self.spec))
        return evaluator.forward_devices(self.built_devices(), np.atleast_2d(np.asarray(x, dtype=np.float64)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        return self.trace(x).output

    def device_conductances(self) -> tuple[np.ndarray, ...]:
        """Per physical device, ``(n_columns, devices_per_column)`` per layer (S; 0 = absent).

        What a netlist builder places, one element per non-zero entry: the programmed devices
        (:attr:`devices` when the network has them). A per-device fault map is not applied
        (:meth:`built_devices` applies it).
        """
        if self.devices is not None:
            return self.devices
        return tuple(w.conductances(g) for w, g in
                     zip(network_wiring(self.spec), self.effective_conductances()))

    def built_devices(self) -> tuple[np.ndarray, ...]:
        """:meth:`device_conductances` with the network's own fault map applied: every stuck
        device at the top or bottom of its window (S; 0 = absent). What validation builds."""
        targets = self.device_conductances()
        if self.faults is None or self.spec.is_dense:
            return targets
        return stuck_devices(network_wiring(self.spec), targets, self.faults, self.window)


def stuck_devices(wirings: Sequence[CrossbarWiring], devices: Sequence[np.ndarray], faults: FaultMap,
                  window: ConductanceWindow) -> tuple[np.ndarray, ...]:
    """``devices`` (per layer ``(n_columns, D)``, S) with ``faults``' present devices stuck at
    ``scale·g_max`` / ``scale·g_min``; absent devices stay 0 S."""
    out = []
    for wiring, g, high, low in zip(wirings, devices, faults.stuck_high, faults.stuck_low):
        high = np.asarray(high, dtype=bool) & wiring.present
        low = np.asarray(low, dtype=bool) & wiring.present
        g = np.where(high, wiring.scale * window.g_max_siemens,
                     np.where(low, wiring.scale * window.g_min_siemens, g))
        out.append(np.where(wiring.present, g, 0.0))
    return tuple(out)


def check_device_conductances(wirings: Sequence[CrossbarWiring], devices: Sequence[np.ndarray],
                              window: ConductanceWindow, source: str = "per-device conductances") -> None:
    """Raise unless ``devices`` holds one float ``(n_columns, D)`` array per crossbar layer, 0 S
    exactly where a device is absent and every present device inside its window
    ``scale·[g_min, g_max]`` (S).

    Raises:
        ConfigError: naming the layer and what is wrong (count, dtype, shape, NaN or infinite,
            negative, a present device at 0 S, a value outside its window).
    """
    if len(devices) != len(wirings):
        raise ConfigError(f"{source}: {len(devices)} arrays for {len(wirings)} crossbar layers")
    for index, (wiring, g) in enumerate(zip(wirings, devices)):
        shape = "×".join(map(str, wiring.plan.output_shape))
        where = f"{source}: layer {index} ({wiring.plan.kind} {shape})"
        g = np.asarray(g)
        if g.dtype.kind != "f":
            raise ConfigError(f"{where} holds {g.dtype} values, not floating-point conductances")
        if g.shape != wiring.present.shape:
            raise ConfigError(f"{where} is {'×'.join(map(str, g.shape))}, the layer has "
                              f"{'×'.join(map(str, wiring.present.shape))} devices (columns × devices per column)")
        if not np.all(np.isfinite(g)):
            raise ConfigError(f"{where} has NaN or infinite conductances")
        if np.any(g < 0):
            raise ConfigError(f"{where} has negative conductances")
        if np.any(g[~wiring.present] != 0):
            raise ConfigError(f"{where}: a device the network's masks remove has a conductance")
        low = wiring.scale * window.g_min_siemens * (1 - WINDOW_SLACK)
        high = wiring.scale * window.g_max_siemens * (1 + WINDOW_SLACK)
        outside = wiring.present & ((g < low) | (g > high))
        if np.any(outside):
            raise ConfigError(f"{where}: {int(outside.sum())} devices lie outside their conductance window "
                              f"(scale × [{window.g_min_siemens:g}, {window.g_max_siemens:g}] S)")


def fault_map_digest(faults: FaultMap) -> str:
    """SHA-256 of a map's masks (shapes and bits): what a network file records of its map."""
    digest = hashlib.sha256()
    for high, low in zip(faults.stuck_high, faults.stuck_low):
        for mask in (high, low):
            mask = np.asarray(mask, dtype=bool)
            digest.update(repr(mask.shape).encode())
            digest.update(np.packbits(mask, axis=None).tobytes())
    return digest.hexdigest()


def has_replicas(spec: NetworkSpec) -> bool:
    """True when some θ of ``spec`` is carried by more than one physical device (conv kernels
    replicated per position, folded pools): only then can devices be programmed apart."""
    for wiring in network_wiring(spec):
        counts = np.bincount(wiring.theta_index[wiring.present], minlength=1)
        if counts.max() > 1:
            return True
    return False


def _plain_dense(network: TrainedCrossbarNetwork) -> bool:
    return network.spec.is_dense and all(m is None for m in network.spec.masks)


def save_layered_network(network: TrainedCrossbarNetwork, directory: Path) -> dict[str, Path]:
    """Write ``network.npz`` and ``network.json`` atomically (format version 2, or 3 for a network
    with per-device conductances), and a per-device fault map as ``fault_map.npz``."""
    directory = Path(directory)
    if _plain_dense(network):
        dense = TrainedNetwork(network.spec.topology, tuple(network.conductances),  # type: ignore[arg-type]
                               network.calibration, network.evaluator, network.faults,
                               network.metadata)
        return save_network(dense, directory)
    arrays: dict[str, np.ndarray] = {f"layer{i}": np.asarray(g, dtype=np.float64)
                                     for i, g in enumerate(network.conductances)}
    masks_meta: list[dict[str, bool] | None] = []
    for i, mask in enumerate(network.spec.masks or (None,) * len(network.conductances)):
        if mask is None:
            masks_meta.append(None)
            continue
        masks_meta.append({"theta": mask.theta is not None, "device": mask.device is not None})
        if mask.theta is not None:
            arrays[f"mask_theta{i}"] = mask.theta
        if mask.device is not None:
            arrays[f"mask_device{i}"] = mask.device

    if network.devices is not None:
        arrays.update({f"device{i}": np.asarray(g, dtype=np.float64) for i, g in enumerate(network.devices)})
    meta = {
        "format": NETWORK_FORMAT,
        "version": DEVICE_VERSION if network.devices is not None else NETWORK_VERSION,
        "topology": None,
        "layers": network.spec.to_dict(),
        "masks": masks_meta,
        "units": "siemens",
        "row_order": "per theta row: ip taps (c_in, row, col), in taps, bias_p(vdd), "
                     "bias_n(vss); devices per memspice.network.wiring",
        **calibration_record(network.calibration),
        "evaluator": network.evaluator,
        "has_fault_map": network.faults is not None,
        "metadata": network.metadata,
    }
    paths = {}
    if network.devices is not None:
        meta["per_device"] = True
        meta["row_order"] += "; device{i}: per physical device (columns × devices per column)"
    if network.faults is not None:
        summary = fault_map_summary(network.faults)
        meta["fault_map"] = {"file": FAULT_MAP_NAME, "digest": fault_map_digest(network.faults),
                             **{k: summary[k] for k in ("rate_high", "rate_low", "seed", "stuck_high", "stuck_low")}}
        directory.mkdir(parents=True, exist_ok=True)
        paths["fault_map"] = save_device_fault_map(network.faults, directory / FAULT_MAP_NAME, network.spec)
    return {**write_network_files(directory, arrays, meta), **paths}


def load_layered_network(directory: Path, calibration: Calibration | None = None
                         ) -> TrainedCrossbarNetwork:
    """Read any network file: version 1 or 2, dense or with conv / pooling / masks.

    Raises:
        ConfigError: missing or unreadable files, an unknown format version, a calibration
            digest mismatch, or arrays that do not match the layer description.
    """
    directory = Path(directory)
    json_path, npz_path = directory / JSON_NAME, directory / NPZ_NAME
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no trained network in {directory} ({JSON_NAME} missing)") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{json_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != NETWORK_FORMAT:
        raise ConfigError(f"{json_path} is not a memspice network document")
    version = meta.get("version")
    if isinstance(version, bool) or version not in LAYERED_READABLE_VERSIONS:
        raise ConfigError(f"network format version {version!r} is not supported "
                          f"(this memspice reads versions {list(LAYERED_READABLE_VERSIONS)})")
    if meta.get("topology") is not None:  # the dense reader refuses a dense file of version 3
        dense = load_network(directory, calibration)
        return TrainedCrossbarNetwork(NetworkSpec.dense(dense.topology), dense.conductances,
                                      dense.calibration, dense.evaluator, dense.faults,
                                      dense.metadata)
    per_device = meta.get("per_device", False)
    if per_device is not (version == DEVICE_VERSION):
        raise ConfigError(f"{json_path}: format version {version} with per_device {per_device!r} (version "
                          f"{DEVICE_VERSION} networks, and only they, hold per-device conductances)")
    try:
        stored = Calibration.from_dict(meta["calibration"])
        digest = meta["calibration_digest"]
        spec = NetworkSpec.from_dict(meta["layers"])
        masks_meta = meta.get("masks") or [None] * len(spec.plans)
    except KeyError as exc:
        raise ConfigError(f"{json_path} lacks {exc}") from None
    if stored.digest() != digest:
        raise ConfigError(f"{json_path}: embedded calibration does not match its digest")
    if calibration is not None and calibration.digest() != digest:
        raise ConfigError(f"network in {directory} was trained with calibration "
                          f"{digest[:12]}…, not {calibration.digest()[:12]}…")
    if len(masks_meta) != len(spec.plans):
        raise ConfigError(f"{json_path}: {len(masks_meta)} mask entries for "
                          f"{len(spec.plans)} crossbar layers")
    n_layers = len(spec.plans)
    devices = None
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            conductances = tuple(np.array(data[f"layer{i}"]) for i in range(n_layers))
            masks = tuple(
                None if m is None else CrossbarMask(
                    np.array(data[f"mask_theta{i}"]) if m.get("theta") else None,
                    np.array(data[f"mask_device{i}"]) if m.get("device") else None)
                for i, m in enumerate(masks_meta))
            stored_devices = sorted(int(name[6:]) for name in data.files if re.fullmatch(r"device\d+", name))
            if per_device:
                if stored_devices != list(range(n_layers)):
                    raise ConfigError(f"{npz_path} holds per-device arrays {['device%d' % i for i in stored_devices]}, "
                                      f"the network has {n_layers} crossbar layers (device0 … device{n_layers - 1})")
                devices = tuple(np.array(data[f"device{i}"]) for i in range(n_layers))
            elif stored_devices:
                raise ConfigError(f"{npz_path} holds per-device arrays but {json_path} is format version "
                                  f"{version}, which has none")
    except FileNotFoundError as exc:
        raise ConfigError(f"{npz_path} is missing") from exc
    except KeyError as exc:
        raise ConfigError(f"{npz_path} lacks array {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{npz_path} is not a readable NumPy archive: {exc}") from None
    if any(m is not None for m in masks):
        spec = spec.with_masks(masks)
    faults = _own_fault_map(meta, spec, directory) if meta.get("has_fault_map") else None
    if per_device and faults is None:
        raise ConfigError(f"{json_path}: a per-device network records the fault map it was trained with, "
                          "this one has none")
    try:
        return TrainedCrossbarNetwork(spec, conductances, stored, meta.get("evaluator", "static"),
                                      faults, dict(meta.get("metadata", {})), devices)
    except ConfigError as exc:
        raise ConfigError(f"{directory}: {exc}") from None


def _own_fault_map(meta: dict[str, Any], spec: NetworkSpec, directory: Path) -> FaultMap:
    """The per-device map a layered network file records, checked against its digest."""
    path = directory / FAULT_MAP_NAME
    record = meta.get("fault_map")
    if not isinstance(record, dict) or not isinstance(record.get("digest"), str):
        raise ConfigError(f"{directory / JSON_NAME} records a fault map without its digest")
    if not path.is_file():
        raise ConfigError(f"the network in {directory} was trained with a fault map, but {path} is missing")
    faults = load_device_fault_map(path, spec)
    if fault_map_digest(faults) != record["digest"]:
        raise ConfigError(f"{path} is not the fault map the network in {directory} was saved with (digest "
                          f"{fault_map_digest(faults)[:12]}…, recorded {record['digest'][:12]}…); give another "
                          "map to `memspice validate` with --fault-map instead of replacing it")
    return faults
