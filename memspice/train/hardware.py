"""Device non-idealities applied between the ideal conductances σ and the crossbar G.

The order is fixed: quantize σ to the device's levels (straight-through estimator in the
backward pass), multiply by device-to-device / programming variation (fresh seeded draw per
call), then overwrite stuck devices with g_max or g_min (no gradient flows to them).
:func:`realize_conductances` returns, next to G, the elementwise ``∂G/∂σ`` the trainer uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from memspice.errors import ConfigError
from memspice.train.mapping import ConductanceWindow, quantize_conductance

VariationKind = Literal["lognormal", "gaussian"]
VARIATION_KINDS: tuple[str, ...] = get_args(VariationKind)

#: Gaussian variation is clipped so no device drops below this fraction of its target.
_MIN_GAUSSIAN_FACTOR = 0.01


@dataclass(frozen=True, slots=True)
class HardwareConfig:
    """Which non-idealities the forward pass applies.

    Attributes:
        levels: conductance levels, uniform in conductance between g_min and g_max inclusive
            (0 = continuous).
        variation_sigma: relative spread of the multiplicative device variation and programming
            noise on σ (dimensionless, e.g. 0.05 = 5 %); 0 disables it.
        variation_kind: ``"lognormal"`` (factor ``exp(s·z)``) or ``"gaussian"``
            (factor ``1 + s·z``, clipped at 0.01).
    """

    levels: int = 0
    variation_sigma: float = 0.0
    variation_kind: VariationKind = "lognormal"

    def __post_init__(self) -> None:
        if not isinstance(self.levels, (int, np.integer)) or self.levels < 0 or self.levels == 1:
            raise ConfigError(f"levels must be 0 (continuous) or at least 2, got {self.levels!r}")
        if not (0.0 <= self.variation_sigma < 10.0):
            raise ConfigError(f"variation_sigma must be in [0, 10), got {self.variation_sigma}")
        if self.variation_kind not in VARIATION_KINDS:
            raise ConfigError(
                f"unknown variation kind {self.variation_kind!r}; "
                f"choose one of {list(VARIATION_KINDS)}"
            )


@dataclass(frozen=True, slots=True)
class FaultMap:
    """Stuck devices per layer (boolean masks shaped like each conductance matrix).

    Attributes:
        stuck_high: devices stuck at g_max.
        stuck_low: devices stuck at g_min (never both for one device).
        rate_high: probability of stuck-at-g_max the map was drawn with (None: measured or unknown).
        rate_low: probability of stuck-at-g_min the map was drawn with (None: measured or unknown).
        seed: seed of the draw (None: measured or unknown). :mod:`memspice.train.fault_map`
            stores all of it with the masks.
    """

    stuck_high: tuple[np.ndarray, ...]
    stuck_low: tuple[np.ndarray, ...]
    rate_high: float | None = None
    rate_low: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.stuck_high) != len(self.stuck_low):
            raise ConfigError("fault map needs one high and one low mask per layer")
        for high, low in zip(self.stuck_high, self.stuck_low):
            if high.shape != low.shape:
                raise ConfigError("stuck-high and stuck-low masks differ in shape")
            if np.any(high & low):
                raise ConfigError("a device cannot be stuck both high and low")

    @property
    def fraction(self) -> float:
        """Fraction of all devices that are stuck."""
        stuck = sum(int(h.sum() + l.sum()) for h, l in zip(self.stuck_high, self.stuck_low))
        total = sum(h.size for h in self.stuck_high)
        return stuck / total


def draw_fault_map(
    shapes: Sequence[tuple[int, int]],
    rate_high: float,
    rate_low: float,
    rng: np.random.Generator,
) -> FaultMap:
    """Draw independent stuck-at faults.

    Args:
        shapes: conductance-matrix shape of every layer.
        rate_high: probability that a device is stuck at g_max.
        rate_low: probability that a device is stuck at g_min.
        rng: seeded generator.

    Raises:
        ConfigError: rates negative or summing above one.
    """
    if rate_high < 0 or rate_low < 0 or rate_high + rate_low > 1:
        raise ConfigError(
            f"fault rates must be non-negative and sum to at most 1, got "
            f"high={rate_high}, low={rate_low}"
        )
    highs, lows = [], []
    for shape in shapes:
        u = rng.random(shape)
        highs.append(u < rate_high)
        lows.append((u >= rate_high) & (u < rate_high + rate_low))
    return FaultMap(tuple(highs), tuple(lows), rate_high=float(rate_high), rate_low=float(rate_low))


def variation_factors(
    shape: tuple[int, ...], config: HardwareConfig, rng: np.random.Generator
) -> np.ndarray:
    """One multiplicative variation factor per device (dimensionless, > 0)."""
    z = rng.standard_normal(shape)
    if config.variation_kind == "lognormal":
        return np.exp(config.variation_sigma * z)
    return np.maximum(1.0 + config.variation_sigma * z, _MIN_GAUSSIAN_FACTOR)


def realize_conductances(
    sigmas: Sequence[np.ndarray],
    window: ConductanceWindow,
    config: HardwareConfig,
    faults: FaultMap | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Turn ideal conductances into what the crossbar holds.

    Args:
        sigmas: ideal per-layer conductances (S).
        window: device window (S).
        config: quantization and variation settings.
        faults: stuck devices, or None.
        rng: generator for the variation draw; required when ``variation_sigma > 0``.

    Returns:
        ``(G per layer (S), ∂G/∂σ per layer or None where it is the identity)``.
    """
    if config.variation_sigma > 0 and rng is None:
        raise ConfigError("device variation needs a random generator")
    conductances: list[np.ndarray] = []
    slopes: list[np.ndarray | None] = []
    for index, sigma in enumerate(sigmas):
        g = quantize_conductance(sigma, window, config.levels)
        slope: np.ndarray | None = None
        if config.variation_sigma > 0:
            assert rng is not None
            factor = variation_factors(sigma.shape, config, rng)
            g = g * factor
            slope = factor
        if faults is not None:
            high, low = faults.stuck_high[index], faults.stuck_low[index]
            if high.shape != sigma.shape:
                raise ConfigError(
                    f"fault map layer {index} has shape {high.shape}, network has {sigma.shape}"
                )
            stuck = high | low
            g = np.where(high, window.g_max_siemens, np.where(low, window.g_min_siemens, g))
            slope = np.where(stuck, 0.0, 1.0 if slope is None else slope)
        conductances.append(g)
        slopes.append(slope)
    return conductances, slopes
