"""Per-device wiring of a crossbar layer: which row feeds each device and which θ it carries.

Every physical column ``m`` of a layer has ``D = 2·K·F + 2`` device slots (``K`` taps,
``F`` = the fold of the pools in front of it, 1 without pooling), in this order::

    [ip taps (tap-major, F devices each),  in taps (same),  bias_p (VDD),  bias_n (VSS)]

A layer's rows are indexed in its *row-source vector* of length ``2S + 3`` (``S`` units drive
it: the network inputs or the previous crossbar layer's neurons, flat in C order)::

    [p_0 … p_{S-1},  n_0 … n_{S-1},  VDD,  VSS,  0 V]

``p_s`` is ``+x_s`` (first layer) or ``outp_s``; ``n_s`` is ``−x_s`` or ``outn_s``. Index
``2S + 2`` is a row held at 0 V: the taps of a conv window that fall on zero padding. For a
dense layer without pooling this is exactly :mod:`memspice.circuit.wiring`'s row order, and
``source[m] = arange(2N + 2)``, ``theta_index[m] = m·(2N+2) + arange(2N+2)``.

**Pooling, realized in the circuit.** A column voltage is a conductance-weighted average of
its rows, ``V = Σ G_d R_d / Σ G_d``. Average pooling in front of a crossbar layer is folded
into that layer: a tap that reads a pooled input ``(1/P²)·Σ_{s∈window} R_s`` becomes ``P²``
devices, one from each window element's row to the column, each with conductance ``σ/P²``
(``scale = 1/P²``) and all carrying the tap's θ. Their currents add up to
``σ·(pooled − V)``, so the column voltage is exactly pool-then-layer. The normalization
``Σσ`` counts the folded devices at their actual conductances, ``P²·σ/P² = σ``: the column's
total conductance equals the unfolded layer's and a trained weight ``w = σ/Σσ`` means the
same thing with or without pooling. Pools compose (``F = Π P²``, scales multiply); a padded
tap of a conv after a pool becomes ``F`` devices of ``σ/F`` to the 0 V row (electrically one
device of ``σ``). No pooling circuit or neuron exists: the pool costs devices, not neurons.

**Masks.** A :class:`~memspice.network.spec.CrossbarMask` removes devices: ``present`` is
``theta_mask[theta_index] & device_mask``; an absent device has conductance 0 (no current,
no term in ``Σσ``), which is what an element left out of the netlist does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from memspice.network.layers import Conv2d
from memspice.network.spec import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    CrossbarMask,
    CrossbarPlan,
    NetworkError,
    NetworkSpec,
)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class CrossbarWiring:
    """Index arrays of one crossbar layer (all ``(n_columns, devices_per_column)``).

    Attributes:
        plan: the layer's :class:`~memspice.network.spec.CrossbarPlan`.
        source: int64 index into the row-source vector ``[p…, n…, VDD, VSS, 0 V]``.
        theta_index: int64 index into the layer's θ, flattened from ``plan.theta_shape``;
            conv columns of one output channel share it across positions (replicated kernels).
        scale: conductance of the device relative to its θ's σ (1, or ``1/F`` when folded).
        present: bool, False where a mask removes the device.
    """

    plan: CrossbarPlan
    source: np.ndarray
    theta_index: np.ndarray
    scale: np.ndarray
    present: np.ndarray

    @property
    def n_row_sources(self) -> int:
        """Length of the row-source vector, ``2S + 3``."""
        return 2 * self.plan.n_sources + 3

    @property
    def zero_row(self) -> int:
        """Index of the 0 V row (padding)."""
        return 2 * self.plan.n_sources + 2

    def conductances(self, sigma: np.ndarray) -> np.ndarray:
        """Per-device conductances (S) from the layer's σ ``plan.theta_shape`` (S).

        Absent devices are 0 S. Per-device non-idealities (variation, faults) are applied to
        this array, so replicas of one kernel entry can differ.
        """
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != self.plan.theta_shape:
            raise NetworkError(f"layer {self.plan.index}: σ has shape {sigma.shape}, expected "
                               f"{self.plan.theta_shape}")
        g = sigma.ravel()[self.theta_index] * self.scale
        return np.where(self.present, g, 0.0)

    def row_source_voltages(self, v_pos: np.ndarray, v_neg: np.ndarray,
                            vdd: float, vss: float) -> np.ndarray:
        """``(B, 2S + 3)`` row-source voltages from the ``(B, S)`` p and n drives (V)."""
        batch = v_pos.shape[0]
        fixed = np.broadcast_to(np.array([vdd, vss, 0.0]), (batch, 3))
        return np.concatenate([v_pos, v_neg, fixed], axis=1)

    def column_voltages(self, conductances: np.ndarray, v_pos: np.ndarray,
                        v_neg: np.ndarray, vdd: float, vss: float) -> np.ndarray:
        """Column voltages ``V_m = Σ_d G_md R_source(m,d) / Σ_d G_md`` (V), rows ideal.

        Args:
            conductances: ``(n_columns, D)`` per-device conductances (S), 0 = absent.
            v_pos: ``(B, S)`` voltages of the p sources (V).
            v_neg: ``(B, S)`` voltages of the n sources (V).
            vdd: positive rail (V).
            vss: negative rail (V).

        Returns:
            ``(B, n_columns)`` column voltages (V).
        """
        rows = self.row_source_voltages(v_pos, v_neg, vdd, vss)
        gathered = rows[:, self.source]  # (B, n_columns, D)
        total = conductances.sum(axis=1)
        return np.einsum("bmd,md->bm", gathered, conductances) / total


def _fold_map(plan: CrossbarPlan) -> tuple[np.ndarray, np.ndarray]:
    """Source unit and weight of every device of every pooled input.

    Returns:
        ``(src, weight)``, each shaped ``pooled_shape + (F,)``: pooled input ``i`` is
        ``Σ_f weight[i, f]·source[src[i, f]]`` (weights sum to 1).
    """
    src = np.arange(plan.n_sources, dtype=np.int64).reshape(*plan.source_shape, 1)
    weight = np.ones(src.shape)
    for pool in plan.pools:
        size, step = pool.size, pool.step
        views = []
        for array in (src, weight):
            win = sliding_window_view(array, (size, size), axis=(1, 2))[:, ::step, ::step]
            # (C, Ho, Wo, F, size, size) → (C, Ho, Wo, F·size²), order (f, a, b)
            views.append(win.reshape(*win.shape[:3], -1))
        src, weight = views[0], views[1] / (size * size)
    return src, weight


def crossbar_wiring(plan: CrossbarPlan, mask: CrossbarMask | None = None) -> CrossbarWiring:
    """Build the per-device index arrays of one crossbar layer (vectorized, no loops over
    positions)."""
    src, weight = _fold_map(plan)  # pooled_shape + (F,)
    fold = src.shape[-1]
    n_sources = plan.n_sources
    zero_row = 2 * n_sources + 2
    layer = plan.layer
    if isinstance(layer, Conv2d):
        pad, k, step = layer.padding, layer.kernel, layer.stride
        if pad:
            widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
            src = np.pad(src, widths, constant_values=-1)
            weight = np.pad(weight, widths, constant_values=1.0 / fold)
        _, h_out, w_out = plan.output_shape
        views = []
        for array in (src, weight):
            win = sliding_window_view(array, (k, k), axis=(1, 2))[:, ::step, ::step]
            win = win[:, :h_out, :w_out]  # (C_in, Ho, Wo, F, k, k)
            # → (Ho·Wo, C_in·k·k, F): positions, taps in (c, row, col) order, fold
            views.append(win.transpose(1, 2, 0, 4, 5, 3).reshape(h_out * w_out, -1, fold))
        tap_src, tap_weight = views
    else:
        tap_src = src.reshape(1, -1, fold)
        tap_weight = weight.reshape(1, -1, fold)
    positions, taps, _ = tap_src.shape
    channels = plan.channels
    width = 2 * taps + 2
    # One position's devices, then tiled over output channels (column = channel-major).
    pos_source = np.empty((positions, 2 * taps * fold + 2), dtype=np.int64)
    flat_src = tap_src.reshape(positions, taps * fold)
    pos_source[:, : taps * fold] = np.where(flat_src >= 0, flat_src, zero_row)
    pos_source[:, taps * fold : 2 * taps * fold] = np.where(flat_src >= 0, flat_src + n_sources,
                                                            zero_row)
    pos_source[:, -2] = 2 * n_sources
    pos_source[:, -1] = 2 * n_sources + 1
    pos_scale = np.ones(pos_source.shape)
    flat_weight = tap_weight.reshape(positions, taps * fold)
    pos_scale[:, : taps * fold] = flat_weight
    pos_scale[:, taps * fold : 2 * taps * fold] = flat_weight
    tap_of_device = np.concatenate([np.repeat(np.arange(taps), fold),
                                    taps + np.repeat(np.arange(taps), fold),
                                    [2 * taps, 2 * taps + 1]])
    source = np.tile(pos_source, (channels, 1))
    scale = np.tile(pos_scale, (channels, 1))
    channel_of_column = np.repeat(np.arange(channels), positions)
    theta_index = channel_of_column[:, None] * width + tap_of_device[None, :]
    present = np.ones(source.shape, dtype=bool)
    if mask is not None:
        if mask.theta is not None:
            present &= mask.theta.ravel()[theta_index]
        if mask.device is not None:
            present &= mask.device
        if not present.any(axis=1).all():
            raise NetworkError(f"network layer {plan.index} ({plan.kind}): its masks leave a "
                               f"column with no device")
    return CrossbarWiring(plan, _frozen(source), _frozen(theta_index), _frozen(scale),
                          _frozen(present))


def network_wiring(spec: NetworkSpec, limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES
                   ) -> tuple[CrossbarWiring, ...]:
    """:func:`crossbar_wiring` of every crossbar layer, with the spec's masks.

    Raises:
        NetworkError: the wiring arrays alone would exceed ``limit_bytes`` (nothing built).
    """
    estimate = spec.estimate(batch_size=1)
    if estimate.wiring_bytes > limit_bytes:
        raise NetworkError(f"network too large to wire: {estimate.devices:,} devices need "
                           f"≈ {estimate.wiring_bytes / 1e9:.2f} GB of wiring arrays, over the "
                           f"{limit_bytes / 1e9:.2f} GB limit")
    masks = spec.masks or (None,) * len(spec.plans)
    return tuple(crossbar_wiring(plan, mask) for plan, mask in zip(spec.plans, masks))


def fan_out(wiring: CrossbarWiring) -> np.ndarray:
    """Devices each source unit drives in this layer, ``(S,)`` for its p row (the n row is
    the same): the load a coupled model must put on the previous neuron's outputs.

    Edge neurons of a conv map drive fewer devices; masked devices do not count.
    """
    n = wiring.plan.n_sources
    counts = np.bincount(wiring.source[wiring.present], minlength=2 * n + 3)
    return counts[:n]


def row_column_conductance(wiring: CrossbarWiring, conductances: np.ndarray) -> Any:
    """The layer's linear part as a sparse ``(2S + 3, n_columns)`` matrix ``C`` (S).

    ``C[r, m]`` is the total conductance between row ``r`` of the row-source vector and column
    ``m`` (parallel devices of a folded pool summed; absent devices contribute nothing). For
    row voltages ``R`` ``(B, 2S + 3)``, the column voltages are ``(R·C) / Σ_r C[r, m]``, and
    the current a row's driver delivers is ``Σ_m C[r, m]·(R_r − V_m)``: the load a coupled
    model puts on the previous neuron's output (block-sparse for a conv layer: a neuron
    reaches only the columns whose windows cover it).

    Args:
        wiring: the layer's wiring.
        conductances: ``(n_columns, D)`` per-device conductances (S), 0 = absent.

    Returns:
        A ``scipy.sparse.csr_matrix`` (scipy is imported here, lazily).
    """
    from scipy.sparse import coo_matrix

    g = np.asarray(conductances, dtype=np.float64)
    keep = g > 0
    columns = np.broadcast_to(np.arange(g.shape[0])[:, None], g.shape)
    return coo_matrix((g[keep], (wiring.source[keep], columns[keep])),
                      shape=(wiring.n_row_sources, g.shape[0])).tocsr()


def theta_gradient(wiring: CrossbarWiring, grad_devices: np.ndarray) -> np.ndarray:
    """Reduce a per-device gradient ``∂L/∂G`` ``(n_columns, D)`` (1/S) to ``∂L/∂σ`` of the
    layer's θ, ``plan.theta_shape`` (1/S).

    Each device is ``G = scale·σ[theta_index]``, so ``∂L/∂σ_t = Σ_{devices of t} scale·∂L/∂G``:
    the sum over the positions that share a kernel and over the folded devices of a pool.
    Absent devices contribute nothing. A per-device evaluator (variation, faults, the coupled
    solver) computes ``∂L/∂G`` and calls this.
    """
    weights = np.where(wiring.present, wiring.scale * grad_devices, 0.0)
    total = np.bincount(wiring.theta_index.ravel(), weights=weights.ravel(),
                        minlength=int(np.prod(wiring.plan.theta_shape)))
    return total.reshape(wiring.plan.theta_shape)
