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

:func:`load_layered_network` reads both kinds, and version 1 dense files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.network.spec import CrossbarMask, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_model import CrossbarNetwork, CrossbarTrace
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


@dataclass(frozen=True)
class TrainedCrossbarNetwork:
    """A trained network of any layer description.

    Attributes:
        spec: the layers (with masks).
        conductances: per crossbar layer, σ of every θ, ``plan.theta_shape`` (S).
        calibration: the calibration it was trained against.
        evaluator: evaluator used in training.
        faults: stuck devices of a dense network (per θ = per device there), or None.
        metadata: JSON-safe training summary.
    """

    spec: NetworkSpec
    conductances: tuple[np.ndarray, ...]
    calibration: Calibration
    evaluator: str = "static"
    faults: FaultMap | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

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
            raise ConfigError("fault maps of conv or pooled networks are per device and not "
                              "supported yet")

    @property
    def window(self) -> ConductanceWindow:
        """The calibration's device window (S)."""
        d = self.calibration.device
        return ConductanceWindow(d.g_min_siemens, d.g_max_siemens)

    def model(self) -> CrossbarNetwork:
        """The static model of this network."""
        return CrossbarNetwork(self.calibration, self.spec, evaluator="static")

    def effective_conductances(self) -> tuple[np.ndarray, ...]:
        """σ as built: masked θ at 0 S, stuck devices at g_max / g_min (S)."""
        g = list(self.conductances)
        if self.faults is not None:
            w = self.window
            g = [np.where(h, w.g_max_siemens, np.where(lo, w.g_min_siemens, gi))
                 for gi, h, lo in zip(g, self.faults.stuck_high, self.faults.stuck_low)]
        masks = self.spec.masks or (None,) * len(g)
        return tuple(gi if m is None or m.theta is None else gi * m.theta
                     for gi, m in zip(g, masks))

    def trace(self, x: np.ndarray) -> CrossbarTrace:
        """Model voltages of every layer for flat input voltages ``x`` (V)."""
        return self.model().forward(self.effective_conductances(), np.atleast_2d(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        return self.trace(x).output

    def device_conductances(self) -> tuple[np.ndarray, ...]:
        """Per physical device, ``(n_columns, devices_per_column)`` per layer (S; 0 = absent).

        What a netlist builder places, one element per non-zero entry.
        """
        return tuple(w.conductances(g) for w, g in
                     zip(network_wiring(self.spec), self.effective_conductances()))


def _plain_dense(network: TrainedCrossbarNetwork) -> bool:
    return network.spec.is_dense and all(m is None for m in network.spec.masks)


def save_layered_network(network: TrainedCrossbarNetwork, directory: Path) -> dict[str, Path]:
    """Write ``network.npz`` and ``network.json`` atomically (format version 2)."""
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

    meta = {
        "format": NETWORK_FORMAT,
        "version": NETWORK_VERSION,
        "topology": None,
        "layers": network.spec.to_dict(),
        "masks": masks_meta,
        "units": "siemens",
        "row_order": "per theta row: ip taps (c_in, row, col), in taps, bias_p(vdd), "
                     "bias_n(vss); devices per memspice.network.wiring",
        **calibration_record(network.calibration),
        "evaluator": network.evaluator,
        "has_fault_map": False,
        "metadata": network.metadata,
    }
    return write_network_files(directory, arrays, meta)


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
    if meta.get("version") not in READABLE_VERSIONS:
        raise ConfigError(f"network format version {meta.get('version')!r} is not supported "
                          f"(this memspice reads versions {list(READABLE_VERSIONS)})")
    if meta.get("topology") is not None:
        dense = load_network(directory, calibration)
        return TrainedCrossbarNetwork(NetworkSpec.dense(dense.topology), dense.conductances,
                                      dense.calibration, dense.evaluator, dense.faults,
                                      dense.metadata)
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
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            conductances = tuple(np.array(data[f"layer{i}"]) for i in range(len(spec.plans)))
            masks = tuple(
                None if m is None else CrossbarMask(
                    np.array(data[f"mask_theta{i}"]) if m.get("theta") else None,
                    np.array(data[f"mask_device{i}"]) if m.get("device") else None)
                for i, m in enumerate(masks_meta))
    except FileNotFoundError as exc:
        raise ConfigError(f"{npz_path} is missing") from exc
    except KeyError as exc:
        raise ConfigError(f"{npz_path} lacks array {exc}") from None
    if any(m is not None for m in masks):
        spec = spec.with_masks(masks)
    return TrainedCrossbarNetwork(spec, conductances, stored, meta.get("evaluator", "static"),
                                  None, dict(meta.get("metadata", {})))
