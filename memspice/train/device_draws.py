"""The device draws shared by dense and layered networks: programming variation and
stuck-at faults, one implementation of each distribution, and the draw's result.

:func:`memspice.validate.nonideal.apply_device_nonidealities` (dense validation, per
conductance-matrix entry) and :mod:`memspice.train.layered_devices` (any layered network, per
physical device) both draw through these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class DeviceDraw:
    """Conductances after non-idealities and which devices are stuck.

    Attributes:
        conductances: per layer conductances as netlisted (S): ``(M, 2N+2)`` matrices of a
            dense network, ``(n_columns, D)`` per-device arrays of a layered one (0 = absent).
        stuck_high: per layer boolean masks of devices stuck at ``g_max``.
        stuck_low: per layer boolean masks of devices stuck at ``g_min``.
    """

    conductances: tuple[np.ndarray, ...]
    stuck_high: tuple[np.ndarray, ...]
    stuck_low: tuple[np.ndarray, ...]

    @property
    def n_stuck(self) -> int:
        """Number of stuck devices over all layers."""
        return int(sum(h.sum() + lo.sum() for h, lo in zip(self.stuck_high, self.stuck_low)))


def programming_variation(conductances: np.ndarray, sigma: float, rng: np.random.Generator,
                          g_lo: float | np.ndarray, g_hi: float | np.ndarray) -> np.ndarray:
    """Lognormal device variation: every device ``g·exp(σ·z)`` (``z`` standard normal, one
    per device), clipped into its window ``[g_lo, g_hi]`` (S; scalars or per-device arrays).

    The one implementation of the variation distribution, for dense and layered networks.
    """
    factor = np.exp(sigma * rng.standard_normal(np.shape(conductances)))
    return np.clip(np.asarray(conductances, dtype=np.float64) * factor, g_lo, g_hi)


def stuck_at_draw(shape: tuple[int, ...], rate: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Independent stuck-at faults at ``rate``: ``(stuck_high, stuck_low)`` boolean masks,
    each device stuck at g_max with probability ``rate/2`` and at g_min with ``rate/2``.

    The one implementation of the drawn-fault distribution, for dense and layered networks.
    """
    draw = rng.random(shape)
    return draw < rate / 2, (draw >= rate / 2) & (draw < rate)
