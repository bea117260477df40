"""Structured sparsity of crossbar layers: structures, projections, quantization, compaction.

A *structure* is a set of trainable θ (so of devices) that is kept or removed as a whole. Per
crossbar layer, :func:`structure_groups` labels every θ entry of ``plan.theta_shape`` with the
structure it belongs to (``-1``: in none, always kept):

- ``row``: one input of the layer, its ``ip`` and ``in`` devices in every column (its driver,
  or the previous neuron's output load, disappears);
- ``column``: one neuron, every device of its column (the neuron is removed, and with it its
  rows in the next layer: see :func:`compact`); not on the output layer;
- ``tile``: a ``rows × cols`` tile of the physical crossbar, whose rows are interleaved
  ``ip_0, in_0, ip_1, in_1, …, bias_p, bias_n`` (so a tile of 2r rows holds r inputs). On a
  conv layer it is a tile of the unrolled crossbar of one output position (rows: the
  ``kernel²·C_in`` taps in ``(c_in, row, col)`` order, both polarities, then the bias pair;
  columns: output channels), shared by every position like the kernel. A tile with no device
  left is not built (:func:`tiles_built`);
- ``kernel``: one ``k × k`` kernel of a conv layer (output channel, input channel), ip and in;
- ``kernel_row``: one row of such a kernel.

Bias devices belong to no structure except ``column`` and ``tile``. CSrram's block-diagonal
clusters are a fixed mask (:func:`block_diagonal_mask`), not a projection.

Projections are Euclidean: :func:`project_structures` keeps the ``ceil(d·n)`` structures of
largest L2 norm (``n`` structures in the layer, density ``d`` in (0, 1]) and sets the others
to 0, which is the nearest point of the "at most that many structures" set.
:func:`project_levels` rounds the kept values to the nearest of ``N`` conductance levels
uniform between g_min and g_max (0, an absent device, stays 0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

from memspice.errors import ConfigError
from memspice.network.layers import Conv2d, Dense
from memspice.network.spec import CrossbarMask, CrossbarPlan, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.hardware import FaultMap

Structure = Literal["row", "column", "tile", "kernel", "kernel_row"]
STRUCTURES: tuple[str, ...] = get_args(Structure)


class SparsityError(ConfigError):
    """A pruning target, structure or mask that cannot be built."""


def check_density(density: float, where: str = "density") -> float:
    """Return ``density`` as a float in (0, 1].

    Raises:
        SparsityError: outside (0, 1] or not finite.
    """
    try:
        value = float(density)
    except (TypeError, ValueError):
        raise SparsityError(f"{where} must be a number in (0, 1], got {density!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise SparsityError(f"{where} must be in (0, 1], got {density!r}")
    return value


def physical_rows(plan: CrossbarPlan) -> np.ndarray:
    """Physical crossbar row of each θ column ``(2K + 2,)``: ``ip_t → 2t``, ``in_t → 2t + 1``,
    ``bias_p → 2K``, ``bias_n → 2K + 1``."""
    k = plan.taps
    return np.concatenate([2 * np.arange(k), 2 * np.arange(k) + 1, [2 * k, 2 * k + 1]])


def _where(plan: CrossbarPlan) -> str:
    return f"network layer {plan.index} ({plan.kind})"


def check_tile(plan: CrossbarPlan, tile: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of a tile that fits the layer.

    Raises:
        SparsityError: not two positive integers, or larger than the layer's crossbar.
    """
    if (len(tile) != 2 or any(isinstance(t, bool) or not isinstance(t, (int, np.integer))
                              or t < 1 for t in tile)):
        raise SparsityError(f"a tile is two positive integers (rows, columns), got {tile!r}")
    rows, cols = int(tile[0]), int(tile[1])
    height, width = plan.theta_shape[1], plan.theta_shape[0]
    if rows > height or cols > width:
        raise SparsityError(f"{_where(plan)}: a {rows}x{cols} tile is larger than its "
                            f"{height}x{width} crossbar (rows x columns)")
    return rows, cols


def structure_groups(plan: CrossbarPlan, structure: str,
                     tile: tuple[int, int] | None = None, output: bool = False) -> np.ndarray:
    """Structure label of every θ entry, ``plan.theta_shape`` int64 (``-1`` = in none).

    Args:
        plan: the layer.
        structure: one of :data:`STRUCTURES`.
        tile: ``(rows, cols)`` for ``tile``.
        output: the layer is the network's output layer (its columns cannot be removed).

    Raises:
        SparsityError: an unknown structure, a kernel structure on a dense layer, a column
            structure on the output layer, a missing or too large tile.
    """
    if structure not in STRUCTURES:
        raise SparsityError(f"unknown structure {structure!r}; choose one of {list(STRUCTURES)}")
    channels, width = plan.theta_shape
    k = plan.taps
    groups = np.full(plan.theta_shape, -1, dtype=np.int64)
    conv = isinstance(plan.layer, Conv2d)
    if structure in ("kernel", "kernel_row"):
        if not conv:
            raise SparsityError(f"{_where(plan)}: a {structure} mask needs a conv2d layer")
        size = plan.layer.kernel
        per = size * size if structure == "kernel" else size
        units = k // per  # kernels (or kernel rows) per output channel
        tap_group = np.arange(k) // per
        labels = np.arange(channels)[:, None] * units + tap_group[None, :]
        groups[:, :k] = labels
        groups[:, k : 2 * k] = labels
        return groups
    if structure == "row":
        groups[:, :k] = np.arange(k)
        groups[:, k : 2 * k] = np.arange(k)
        return groups
    if structure == "column":
        if output:
            raise SparsityError(f"{_where(plan)}: the output layer's neurons are the classes")
        groups[:] = np.arange(channels)[:, None]
        return groups
    if tile is None:
        raise SparsityError("a tile structure needs a tile size (rows, columns)")
    rows, cols = check_tile(plan, tile)
    tiles_across = -(-channels // cols)
    row_tile = physical_rows(plan) // rows
    col_tile = np.arange(channels) // cols
    return row_tile[None, :] * tiles_across + col_tile[:, None]


def project_structures(values: np.ndarray, groups: np.ndarray, density: float,
                       cover_columns: bool = False, cover_with: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean projection onto "keep the best ``density`` fraction of structures".

    Args:
        values: the layer's values (any real array of ``groups``' shape).
        groups: structure labels from :func:`structure_groups` (``-1`` always kept).
        density: fraction of structures kept, in (0, 1]; at least one is kept.
        cover_columns: every column (row of ``values``: an output neuron) keeps at least one
            structure: first the best structure of each column that has none kept otherwise,
            then the best of the rest up to the count (the projection onto that set when
            structures lie in one column, as 2×1 tiles and kernels do).
        cover_with: entries (bool, ``values``' shape) a covering structure must hold one of
            (e.g. taps reading a live neuron, so the column keeps a path from the inputs);
            default: any.

    Returns:
        ``(projected, keep)``: the values with the removed structures at 0, and the boolean
        mask of kept entries.
    """
    density = check_density(density)
    values = np.asarray(values, dtype=np.float64)
    labels = groups[groups >= 0]
    keep = np.ones(values.shape, dtype=bool)
    if labels.size == 0:
        return values.copy(), keep
    n = int(labels.max()) + 1
    norms = np.bincount(labels, weights=values[groups >= 0] ** 2, minlength=n)
    present = np.bincount(labels, minlength=n) > 0
    n_present = int(present.sum())
    n_keep = max(1, math.ceil(density * n_present - 1e-9))
    order = np.argsort(-np.where(present, norms, -np.inf), kind="stable")
    kept_groups = np.zeros(n, dtype=bool)
    if cover_columns:
        covered = (groups < 0).any(axis=1)  # a column with an unstructured entry has a device
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        eligible = (np.ones(values.shape, dtype=bool) if cover_with is None
                    else np.asarray(cover_with, dtype=bool))
        for column in np.flatnonzero(~covered):
            own = groups[column][(groups[column] >= 0) & eligible[column]]
            if own.size:
                kept_groups[own[np.argmin(rank[own])]] = True
        n_keep = max(n_keep, int(kept_groups.sum()))
    rest = order[~kept_groups[order]]
    kept_groups[rest[: max(0, n_keep - int(kept_groups.sum()))]] = True
    keep[groups >= 0] = kept_groups[labels]
    return np.where(keep, values, 0.0), keep


def project_levels(values: np.ndarray, levels: int, low: float, high: float) -> np.ndarray:
    """Round every non-zero value to the nearest of ``levels`` values uniform in
    ``[low, high]`` (inclusive); zeros (absent devices) stay 0.

    Raises:
        SparsityError: fewer than 2 levels or ``high <= low``.
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise SparsityError(f"quantization needs at least 2 levels, got {levels!r}")
    if not high > low:
        raise SparsityError(f"quantization needs high > low, got [{low}, {high}]")
    values = np.asarray(values, dtype=np.float64)
    step = (high - low) / (levels - 1)
    rounded = low + np.round((np.clip(values, low, high) - low) / step) * step
    return np.where(values != 0, rounded, 0.0)


ClusterOrder = Literal["interleaved", "contiguous"]
CLUSTER_ORDERS: tuple[str, ...] = get_args(ClusterOrder)


def block_diagonal_mask(plan: CrossbarPlan, density: float,
                        order: str = "interleaved") -> np.ndarray:
    """CSrram's block-diagonal clusters: ``B = round(1/density)`` clusters of inputs and of
    neurons; neuron cluster ``b`` reads only input cluster ``b``. Bias devices are kept.

    Neurons are clustered contiguously (their order is arbitrary). Inputs are clustered
    ``interleaved`` (input ``i`` in cluster ``i mod B``: on an image every cluster sees the
    whole picture at a lower resolution) or ``contiguous`` (``B`` runs of inputs: bands of an
    image). Either is a block-diagonal crossbar; they differ only in how the input wires are
    routed to its rows.

    Raises:
        SparsityError: density outside (0, 1], an unknown order, a conv layer, or more
            clusters than inputs or neurons.
    """
    density = check_density(density)
    if order not in CLUSTER_ORDERS:
        raise SparsityError(f"unknown cluster order {order!r}; choose one of {list(CLUSTER_ORDERS)}")
    if not isinstance(plan.layer, Dense):
        raise SparsityError(f"{_where(plan)}: block-diagonal clusters need a dense layer")
    blocks = max(1, round(1.0 / density))
    channels, k = plan.channels, plan.taps
    if blocks > min(channels, k):
        raise SparsityError(f"{_where(plan)}: density {density:g} means {blocks} clusters, more "
                            f"than its {k} inputs or {channels} neurons")
    inputs = np.arange(k)
    input_cluster = inputs % blocks if order == "interleaved" else (inputs * blocks) // k
    neuron_cluster = (np.arange(channels) * blocks) // channels
    same = neuron_cluster[:, None] == input_cluster[None, :]
    mask = np.ones(plan.theta_shape, dtype=bool)
    mask[:, :k] = same
    mask[:, k : 2 * k] = same
    return mask


def tiles_built(plan: CrossbarPlan, present: np.ndarray, tile: tuple[int, int]) -> tuple[int, int]:
    """``(built, total)`` tiles of a dense layer: a tile with no present device is not built.

    Args:
        plan: the layer.
        present: ``plan.theta_shape`` bool, the devices that exist.
        tile: ``(rows, cols)``.
    """
    groups = structure_groups(plan, "tile", tile)
    total = int(groups.max()) + 1
    built = np.bincount(groups.ravel(), weights=np.asarray(present, dtype=np.float64).ravel(),
                        minlength=total) > 0
    return int(built.sum()), total


def check_paths(spec: NetworkSpec) -> None:
    """Refuse masks that leave a column without a device or an output with no path from an
    input (through present devices, bias rows not counted).

    Raises:
        SparsityError: naming the layer and the column.
    """
    masks = spec.masks or (None,) * len(spec.plans)
    for plan, mask in zip(spec.plans, masks):
        if mask is None:
            continue
        for name, array in (("θ", mask.theta), ("device", mask.device)):
            if array is not None and not array.any(axis=1).all():
                column = int(np.flatnonzero(~array.any(axis=1))[0])
                raise SparsityError(f"{_where(plan)}: the {name} mask leaves column {column} "
                                    f"with no device")
    reach = np.ones(spec.n_inputs, dtype=bool)
    for wiring in network_wiring(spec):
        n = wiring.plan.n_sources
        tap = wiring.source < 2 * n
        unit = np.where(tap, wiring.source % max(n, 1), 0)
        reach = (wiring.present & tap & reach[unit]).any(axis=1)
    if not reach.all():
        column = int(np.flatnonzero(~reach)[0])
        raise SparsityError(f"the masks leave output neuron {column} with no path from the inputs")


def masked_spec(spec: NetworkSpec, theta_masks: Sequence[np.ndarray | None]) -> NetworkSpec:
    """``spec`` with these θ masks (None = no mask for that layer), checked by
    :func:`check_paths` before anything uses it."""
    if len(theta_masks) != len(spec.plans):
        raise SparsityError(f"{len(theta_masks)} masks for {len(spec.plans)} crossbar layers")
    masks = []
    for plan, mask in zip(spec.plans, theta_masks):
        if mask is None or np.all(mask):
            masks.append(None)
            continue
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != plan.theta_shape:
            raise SparsityError(f"{_where(plan)}: mask shape {mask.shape}, expected "
                                f"{plan.theta_shape}")
        if not mask.any(axis=1).all():
            column = int(np.flatnonzero(~mask.any(axis=1))[0])
            raise SparsityError(f"{_where(plan)}: the mask leaves column {column} with no device")
        masks.append(CrossbarMask(theta=mask))
    out = NetworkSpec(spec.input_shape, spec.layers,
                      () if all(m is None for m in masks) else tuple(masks))
    check_paths(out)
    return out


def _channel_reader(plan: CrossbarPlan, channels: int) -> np.ndarray:
    """Channel of the previous crossbar layer each tap of ``plan`` reads ``(K,)``: conv taps
    are ``(c_in, row, col)``, a flattened input ``(c, row, col)``, so taps come in runs of
    ``K / channels``."""
    return np.arange(plan.taps) // (plan.taps // channels)


def _with_channels(spec: NetworkSpec, channels: Sequence[int]) -> NetworkSpec:
    """``spec``'s layers with these output channels (units) per crossbar layer, no masks."""
    layers = list(spec.layers)
    for plan, n in zip(spec.plans, channels):
        layer = plan.layer
        layers[plan.index] = (Dense(n) if isinstance(layer, Dense) else
                              dataclasses.replace(layer, out_channels=n))
    for plan in spec.plans[1:]:  # an explicit in_channels follows the previous layer's channels
        layer = layers[plan.index]
        if isinstance(layer, Conv2d) and layer.in_channels is not None:
            previous = next(p for p in reversed(spec.plans) if p.index < plan.index)
            layers[plan.index] = dataclasses.replace(layer, in_channels=channels[previous.crossbar])
    return NetworkSpec(spec.input_shape, tuple(layers))


def kept_theta_columns(plan: CrossbarPlan, previous_channels: int,
                       kept_previous: np.ndarray | None) -> np.ndarray:
    """θ columns of the dense layer ``plan`` that a compacted layer keeps, in order: the taps
    reading a kept channel (neuron) of the previous crossbar layer, both polarities, and the
    bias pair (all of them for the first layer or ``kept_previous`` None)."""
    k = plan.taps
    if kept_previous is None or plan.crossbar == 0:
        return np.arange(2 * k + 2)
    taps = np.flatnonzero(np.isin(_channel_reader(plan, previous_channels), kept_previous))
    return np.concatenate([taps, k + taps, [2 * k, 2 * k + 1]])


def read_live(plan: CrossbarPlan, live_previous: np.ndarray | None) -> np.ndarray:
    """θ entries of ``plan`` (``plan.theta_shape`` bool) that read a live neuron (channel) of
    the previous crossbar layer: its taps reading one in ``live_previous`` (bool per previous
    channel), both polarities; bias entries are False. All taps for the first layer or None."""
    k = plan.taps
    out = np.zeros(plan.theta_shape, dtype=bool)
    if live_previous is None:
        out[:, : 2 * k] = True
        return out
    reads = np.asarray(live_previous, dtype=bool)[_channel_reader(plan, len(live_previous))]
    out[:, :k] = reads
    out[:, k : 2 * k] = reads
    return out


def compact(spec: NetworkSpec, arrays: Sequence[np.ndarray],
            theta_masks: Sequence[np.ndarray | None]
            ) -> tuple[NetworkSpec, list[np.ndarray], list[np.ndarray | None], list[np.ndarray]]:
    """Remove dead neurons (dense layers) and dead channels (conv layers): one whose column has
    no device, or whose outputs no device of the next layer reads, is taken out with its
    column and its rows in the next layer (its ``k²`` taps of a conv layer, its ``H·W`` taps
    after a flatten), repeated until nothing changes.

    Args:
        spec: a network without masks (the masks are ``theta_masks``).
        arrays: per layer, any array of ``plan.theta_shape`` (θ or σ) to cut alike.
        theta_masks: per layer, ``plan.theta_shape`` bool or None (all present).

    Returns:
        ``(spec, arrays, masks, kept)``: the smaller network with its masks (checked), the cut
        arrays and masks, and per layer the indices of the neurons (channels) kept.

    Raises:
        SparsityError: masks that remove every neuron of a layer or leave no path to an output.
    """
    if any(m is not None for m in spec.masks):
        raise SparsityError("removing neurons starts from a network without masks")
    arrays = [np.asarray(a) for a in arrays]
    masks = [np.ones(p.theta_shape, dtype=bool) if m is None else np.asarray(m, dtype=bool)
             for p, m in zip(spec.plans, theta_masks)]
    kept = [np.arange(p.channels) for p in spec.plans]
    current = NetworkSpec(spec.input_shape, spec.layers)
    changed = True
    while changed:
        changed = False
        for layer in range(len(masks) - 1):
            plan, nxt = current.plans[layer + 1], masks[layer + 1]
            k = plan.taps
            reader = _channel_reader(plan, current.plans[layer].channels)
            read = (nxt[:, :k] | nxt[:, k : 2 * k]).any(axis=0)
            alive = masks[layer].any(axis=1) & (np.bincount(
                reader, weights=read, minlength=current.plans[layer].channels) > 0)
            if alive.all():
                continue
            if not alive.any():
                raise SparsityError(f"the masks remove every neuron of network layer "
                                    f"{current.plans[layer].index}")
            changed = True
            taps = np.flatnonzero(alive[reader])
            cols = np.concatenate([taps, k + taps, [2 * k, 2 * k + 1]])
            masks[layer] = masks[layer][alive]
            arrays[layer] = arrays[layer][alive]
            kept[layer] = kept[layer][alive]
            masks[layer + 1] = nxt[:, cols]
            arrays[layer + 1] = arrays[layer + 1][:, cols]
            current = _with_channels(current, [m.shape[0] for m in masks])
    small = masked_spec(current, masks)
    return small, arrays, [None if m.all() else m for m in masks], kept


def cut_fault_map(faults: FaultMap, spec: NetworkSpec, dense: NetworkSpec,
                  kept_neurons: Sequence[np.ndarray] | None) -> FaultMap:
    """The stuck devices of a dense chip seen by a network pruned from it.

    Args:
        faults: the dense chip's map, one ``(M, 2N + 2)`` mask pair per layer of ``dense``.
        spec: the pruned network (a dense one, possibly with fewer neurons and with masks).
        dense: the dense network the chip was built for.
        kept_neurons: per layer, the original indices of the neurons kept (None: all).

    Raises:
        SparsityError: a map whose number of layers or shapes do not match ``dense`` (naming
            the layer and both shapes), or a pruned network that is not dense.
    """
    if not (spec.is_dense and dense.is_dense):
        raise SparsityError("fault maps of pruned networks need dense layers")
    if len(faults.stuck_high) != len(dense.plans):
        raise SparsityError(f"the fault map has {len(faults.stuck_high)} layers, the network "
                            f"{len(dense.plans)}")
    for index, (plan, high) in enumerate(zip(dense.plans, faults.stuck_high)):
        if high.shape != plan.theta_shape:
            raise SparsityError(f"the fault map's layer {index} is {high.shape[0]}x{high.shape[1]}, "
                                f"the network's is {plan.theta_shape[0]}x{plan.theta_shape[1]}")
    if kept_neurons is None:
        return faults
    cut = []
    for masks in (faults.stuck_high, faults.stuck_low):
        layers = []
        for index, mask in enumerate(masks):
            rows = kept_neurons[index]
            if index == 0:
                cols = np.arange(mask.shape[1])
            else:
                prev, n = kept_neurons[index - 1], dense.plans[index].taps
                cols = np.concatenate([prev, n + prev, [2 * n, 2 * n + 1]])
            layers.append(mask[np.ix_(rows, cols)])
        cut.append(tuple(layers))
    return FaultMap(cut[0], cut[1], faults.rate_high, faults.rate_low, faults.seed)
