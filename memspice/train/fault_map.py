"""A known stuck-at fault map as a file that travels with the network.

``fault_map.npz`` holds, per crossbar layer ``i``, two boolean masks ``stuck_high{i}`` (device
stuck at g_max) and ``stuck_low{i}`` (stuck at g_min), each shaped like that layer's conductance
matrix ``(M, 2N+2)`` in :mod:`memspice.circuit.wiring` row order, and ``header``: a JSON string
with the format name and version, the network topology, the layer shapes, the rates the map was
drawn with and its seed (both ``null`` for a measured map), and the stuck-device counts.

``memspice train`` writes it next to ``network.npz`` when the network was trained against (or
tested on) a map; ``memspice validate`` builds exactly these devices stuck in the SPICE deck,
from the network's directory or from ``--fault-map FILE``.

A network with conv or pooling layers shares a kernel's θ between many physical devices, and a
device is stuck on its own, so its map is per device (:func:`save_device_fault_map`): per
crossbar layer ``(n_columns, D)`` masks in :mod:`memspice.network.wiring` order, and the
header records the layer description (``layers``) instead of a topology.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.wiring import layer_shapes
from memspice.errors import ConfigError
from memspice.io import write_atomic
from memspice.network.spec import NetworkSpec
from memspice.train.hardware import FaultMap, draw_fault_map

FAULT_MAP_FORMAT = "memspice-fault-map"
FAULT_MAP_VERSION = 1
FAULT_MAP_NAME = "fault_map.npz"
#: Second element of the generator seed ``[seed, 99]``: the stream ``memspice train`` has
#: always drawn its fault map from, so ``--fault-seed S`` reproduces older maps of ``--seed S``.
FAULT_STREAM = 99


def seeded_fault_map(topology: Sequence[int], rate: float, seed: int) -> FaultMap:
    """Stuck-at faults at ``rate`` (half at g_max, half at g_min), reproducible from ``seed``.

    Args:
        topology: layer sizes including input and output, e.g. ``(196, 100, 10)``.
        rate: fraction of devices stuck, in [0, 1].
        seed: seed of the draw.

    Raises:
        ConfigError: a rate outside [0, 1].
    """
    if not (np.isfinite(rate) and 0 <= rate <= 1):
        raise ConfigError(f"fault rate must be in [0, 1], got {rate!r}")
    shapes = [s.matrix_shape for s in layer_shapes(tuple(topology))]
    faults = draw_fault_map(shapes, rate / 2, rate / 2, np.random.default_rng([int(seed), FAULT_STREAM]))
    return dataclasses.replace(faults, seed=int(seed))


def _shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(int(n)) for n in shape)


def check_fault_map(faults: FaultMap, topology: Sequence[int], source: str = "fault map") -> None:
    """Raise unless ``faults`` has one mask per layer of ``topology``, each of the layer's shape.

    Raises:
        ConfigError: naming the first layer that differs and both shapes.
    """
    want = [s.matrix_shape for s in layer_shapes(tuple(topology))]
    got = [tuple(m.shape) for m in faults.stuck_high]
    if len(got) != len(want):
        raise ConfigError(f"{source} has {len(got)} layers, the network {tuple(topology)} has {len(want)}")
    for index, (g, w) in enumerate(zip(got, want)):
        if g != tuple(w):
            raise ConfigError(f"{source}: layer {index} is {_shape_text(g)}, the network's layer {index} is "
                              f"{_shape_text(w)} (topology {'-'.join(map(str, topology))})")


def fault_map_summary(faults: FaultMap) -> dict[str, Any]:
    """JSON-safe description: rates, seed, stuck devices per kind and per layer."""
    high = [int(m.sum()) for m in faults.stuck_high]
    low = [int(m.sum()) for m in faults.stuck_low]
    return {
        "rate_high": faults.rate_high, "rate_low": faults.rate_low, "seed": faults.seed,
        "devices": int(sum(m.size for m in faults.stuck_high)),
        "stuck_high": int(sum(high)), "stuck_low": int(sum(low)), "stuck_fraction": faults.fraction,
        "layers": [{"shape": list(h.shape), "stuck_high": nh, "stuck_low": nl}
                   for h, nh, nl in zip(faults.stuck_high, high, low)],
    }


def describe_fault_map(faults: FaultMap) -> str:
    """One line: how many devices are stuck, how the map was drawn."""
    s = fault_map_summary(faults)
    drawn = "" if faults.seed is None else f", drawn with seed {faults.seed}"
    return (f"{s['stuck_high'] + s['stuck_low']} of {s['devices']} devices stuck "
            f"({100 * s['stuck_fraction']:.2f} %: {s['stuck_high']} at g_max, {s['stuck_low']} at g_min{drawn})")


def save_fault_map(faults: FaultMap, path: Path, topology: Sequence[int]) -> Path:
    """Write ``faults`` for a network of ``topology`` to ``path`` (an ``.npz`` file) atomically.

    Raises:
        ConfigError: the map does not fit ``topology``.
    """
    check_fault_map(faults, topology)
    summary = fault_map_summary(faults)
    header = {"format": FAULT_MAP_FORMAT, "version": FAULT_MAP_VERSION,
              "topology": [int(n) for n in topology],
              "shapes": [list(m.shape) for m in faults.stuck_high],
              "row_order": "ip_0..ip_{N-1}, in_0..in_{N-1}, bias_p(vdd), bias_n(vss)",
              **{k: summary[k] for k in ("rate_high", "rate_low", "seed", "devices", "stuck_high", "stuck_low")}}
    return _write(header, faults, Path(path))


def _write(header: dict[str, Any], faults: FaultMap, path: Path) -> Path:
    arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header, sort_keys=True))}
    for i, (high, low) in enumerate(zip(faults.stuck_high, faults.stuck_low)):
        arrays[f"stuck_high{i}"] = np.asarray(high, dtype=bool)
        arrays[f"stuck_low{i}"] = np.asarray(low, dtype=bool)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return write_atomic(path, write)


def _header(data: Any, path: Path) -> dict[str, Any]:
    if "header" not in data.files:
        raise ConfigError(f"{path} is not a memspice fault map (no header)")
    try:
        header = json.loads(str(data["header"][()]))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: the fault-map header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FAULT_MAP_FORMAT:
        raise ConfigError(f"{path} is not a memspice fault map")
    if header.get("version") != FAULT_MAP_VERSION:
        raise ConfigError(f"{path}: fault-map format version {header.get('version')!r} is not supported "
                          f"(this memspice reads version {FAULT_MAP_VERSION})")
    return header


def _read_fault_map(path: Path) -> tuple[dict[str, Any], FaultMap]:
    """The header and the masks of a fault-map file, checked against its own header."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _header(data, path)
            shapes = header.get("shapes")
            if not isinstance(shapes, list):
                raise ConfigError(f"{path}: the fault-map header has no layer shapes")
            highs, lows = [], []
            for i, shape in enumerate(shapes):
                for kind, out in (("stuck_high", highs), ("stuck_low", lows)):
                    name = f"{kind}{i}"
                    if name not in data.files:
                        raise ConfigError(f"{path}: fault map lacks array {name!r}")
                    mask = np.array(data[name])
                    if mask.dtype != np.bool_:
                        raise ConfigError(f"{path}: {name} must be boolean, got {mask.dtype}")
                    if list(mask.shape) != list(shape):
                        raise ConfigError(f"{path}: {name} is {_shape_text(mask.shape)}, its header says "
                                          f"{_shape_text(shape)}")
                    out.append(mask)
    except FileNotFoundError:
        raise ConfigError(f"fault map {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"fault map {path} is a directory, not a file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{path} is not a readable fault map (NPZ): {exc}") from None
    try:
        faults = FaultMap(tuple(highs), tuple(lows), rate_high=header.get("rate_high"),
                          rate_low=header.get("rate_low"), seed=header.get("seed"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return header, faults


def load_fault_map(path: Path, topology: Sequence[int] | None = None) -> FaultMap:
    """Read a map written by :func:`save_fault_map`; with ``topology``, check it fits.

    Raises:
        ConfigError: a missing or malformed file (not an NPZ, no or bad header, another version,
            a missing or non-boolean mask, masks that disagree with the header or overlap), a
            per-device map of a conv or pooled network, or shapes that do not match
            ``topology`` (naming the layer and both shapes).
    """
    header, faults = _read_fault_map(path)
    recorded = header.get("topology")
    if recorded is None and header.get("layers") is not None:
        raise ConfigError(f"{path} is a per-device fault map of a conv or pooled network, not of a dense "
                          "network" + ("" if topology is None else f" ({'-'.join(map(str, topology))})"))
    if isinstance(recorded, list) and len(recorded) == len(faults.stuck_high) + 1:
        check_fault_map(faults, recorded, f"{path} (against its own recorded topology)")
    if topology is not None:
        check_fault_map(faults, topology, f"fault map {path}")
    return faults


def device_fault_shapes(spec: NetworkSpec) -> tuple[tuple[int, int], ...]:
    """``(n_columns, devices per column)`` of every crossbar layer: a per-device map's shapes."""
    return tuple((p.n_columns, p.devices_per_column) for p in spec.plans)


def check_layer_faults(faults: FaultMap, spec: NetworkSpec, source: str = "fault map") -> None:
    """Raise unless ``faults`` has one ``(n_columns, D)`` mask pair per crossbar layer of ``spec``
    (per physical device, :mod:`memspice.network.wiring` order).

    Raises:
        ConfigError: another number of layers, or the first layer whose masks have another
            shape (naming the layer, its kind and output shape, and both shapes).
    """
    want = device_fault_shapes(spec)
    if len(faults.stuck_high) != len(want):
        raise ConfigError(f"{source} has {len(faults.stuck_high)} layers, the network has "
                          f"{len(want)} crossbar layers")
    for index, (mask, shape) in enumerate(zip(faults.stuck_high, want)):
        if tuple(mask.shape) != shape:
            plan = spec.plans[index]
            raise ConfigError(f"{source}: layer {index} ({plan.kind} {_shape_text(plan.output_shape)}) is "
                              f"{_shape_text(mask.shape)}, the network's layer has {_shape_text(shape)} "
                              "devices (columns × devices per column)")


def save_device_fault_map(faults: FaultMap, path: Path, spec: NetworkSpec) -> Path:
    """Write a per-device map of a network of any layers (conv, pooled, dense) atomically.

    The header records ``layers`` (the layer description) instead of a topology, and the
    shapes ``(n_columns, D)`` of every crossbar layer's devices.

    Raises:
        ConfigError: the map does not fit ``spec``.
    """
    check_layer_faults(faults, spec)
    summary = fault_map_summary(faults)
    header = {"format": FAULT_MAP_FORMAT, "version": FAULT_MAP_VERSION, "topology": None,
              "layers": spec.to_dict(), "shapes": [list(m.shape) for m in faults.stuck_high],
              "row_order": "per physical device: columns (channel, row, col) × devices as memspice.network.wiring",
              **{k: summary[k] for k in ("rate_high", "rate_low", "seed", "devices", "stuck_high", "stuck_low")}}
    return _write(header, faults, Path(path))


def load_device_fault_map(path: Path, spec: NetworkSpec | None = None) -> FaultMap:
    """Read a per-device map (:func:`save_device_fault_map`); with ``spec``, check it fits.

    Raises:
        ConfigError: what :func:`load_fault_map` refuses, or shapes that do not match
            ``spec``'s devices (naming the layer).
    """
    _, faults = _read_fault_map(path)
    if spec is not None:
        check_layer_faults(faults, spec, f"fault map {path}")
    return faults


def column_harm(conductances: np.ndarray, high: np.ndarray, low: np.ndarray, g_min: float, g_max: float) -> np.ndarray:
    """``(M,)`` how much the stuck devices change each neuron's normalized weights.

    The L1 distance between ``w = g / Σ_column g`` with the trained conductances ``(M, 2N+2)``
    (S) and with the stuck devices at ``g_max`` / ``g_min``: the fraction of the column's input
    mixture the faults move (0 = unharmed, at most 2).
    """
    g = np.asarray(conductances, dtype=np.float64)
    faulty = np.where(high, g_max, np.where(low, g_min, g))
    ideal_w = g / g.sum(axis=1, keepdims=True)
    faulty_w = faulty / faulty.sum(axis=1, keepdims=True)
    return np.abs(faulty_w - ideal_w).sum(axis=1)


def remap_to_spares(conductances: Sequence[np.ndarray], faults: FaultMap, spares: Sequence[int],
                    g_min: float, g_max: float) -> tuple[FaultMap, list[np.ndarray]]:
    """Move the neurons whose faults hurt most to fault-free spare crossbar columns.

    Each layer ``i`` has ``spares[i]`` spare columns known to be free of faults. The
    ``spares[i]`` neurons with the largest :func:`column_harm` are built on them instead of on
    their own column, so their devices are healthy; the other neurons keep their column and its
    faults. The circuit is then the network with the returned map.

    Args:
        conductances: trained per-layer conductances ``(M, 2N+2)`` (S).
        faults: the map of the neurons' own columns (shaped like ``conductances``).
        spares: spare columns per layer (≥ 0).
        g_min: stuck-at-low conductance (S).
        g_max: stuck-at-high conductance (S).

    Returns:
        ``(map the remapped network sees, per layer the indices of the neurons moved to spares)``.

    Raises:
        ConfigError: a negative spare count, or one per layer missing.
    """
    if len(spares) != len(conductances) or any(int(s) < 0 for s in spares):
        raise ConfigError(f"need one non-negative spare-column count per layer, got {list(spares)}")
    highs, lows, moved = [], [], []
    for g, high, low, count in zip(conductances, faults.stuck_high, faults.stuck_low, spares):
        harm = column_harm(g, high, low, g_min, g_max)
        worst = np.argsort(-harm, kind="stable")[: min(int(count), len(harm))]
        worst = np.sort(worst[harm[worst] > 0])
        high, low = high.copy(), low.copy()
        high[worst], low[worst] = False, False
        highs.append(high)
        lows.append(low)
        moved.append(worst)
    remapped = FaultMap(tuple(highs), tuple(lows), rate_high=faults.rate_high, rate_low=faults.rate_low,
                        seed=faults.seed)
    return remapped, moved
