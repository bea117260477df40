"""Memristor fits: conductance window, pulse-update nonlinearity, distinguishable levels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError, FitError


@dataclass(frozen=True, slots=True)
class PulseResponseFit:
    """``G(n)`` of a pulse train, fitted as a saturating exponential.

    Potentiation: ``G(n) = g_start + ΔG·(1 − exp(−n/ν)) / (1 − exp(−N/ν))``; depression uses
    the same form with a negative ``ΔG``. A large ``ν`` (pulses) is a linear response; the
    dimensionless ``nonlinearity = N/ν`` is 0 for linear, ~5 for strongly saturating updates.

    Attributes:
        nu_pulses: fitted ``ν`` (pulses).
        nonlinearity: ``N/ν``.
        g_start_siemens: conductance before the first pulse (S).
        g_end_siemens: conductance after the last pulse (S).
        rms_siemens: residual RMS of the fit (S).
        n_pulses: ``N``.
    """

    nu_pulses: float
    nonlinearity: float
    g_start_siemens: float
    g_end_siemens: float
    rms_siemens: float
    n_pulses: int


def _model(n: np.ndarray, nu: float, g0: float, g1: float, total: int) -> np.ndarray:
    if nu > 1e6 * total:  # numerically linear
        return g0 + (g1 - g0) * n / total
    return g0 + (g1 - g0) * (-np.expm1(-n / nu)) / (-math.expm1(-total / nu))


def fit_pulse_response(g_after_pulse: np.ndarray, g_start_siemens: float) -> PulseResponseFit:
    """Fit the conductance read after each of ``N`` identical pulses.

    Args:
        g_after_pulse: read conductance after pulse 1..N (S).
        g_start_siemens: read conductance before pulse 1 (S).

    Raises:
        FitError: fewer than 3 pulses, non-finite data, or no change at all.
    """
    from scipy.optimize import least_squares

    g = np.asarray(g_after_pulse, dtype=np.float64)
    if g.ndim != 1 or g.size < 3 or not np.all(np.isfinite(g)):
        raise FitError("a pulse-response fit needs at least 3 finite conductance reads")
    total = int(g.size)
    n = np.arange(0, total + 1, dtype=np.float64)
    data = np.concatenate([[float(g_start_siemens)], g])
    g0, g1 = float(data[0]), float(data[-1])
    if abs(g1 - g0) <= 1e-6 * max(abs(g0), abs(g1), 1e-30):
        raise FitError("the pulse train did not change the conductance: nothing to fit")
    scale = abs(g1 - g0)

    def residual(p: np.ndarray) -> np.ndarray:
        return (_model(n, math.exp(p[0]), g0, g1, total) - data) / scale

    result = least_squares(residual, [math.log(total)], bounds=([math.log(1e-3)], [math.log(1e6 * total)]))
    nu = math.exp(float(result.x[0]))
    r = residual(result.x) * scale
    return PulseResponseFit(nu, total / nu, g0, g1, float(np.sqrt(np.mean(r * r))), total)


def distinguishable_levels(g_min_siemens: float, g_max_siemens: float, sigma_siemens: float,
                           n_steps: int | None = None, z: float = 3.0) -> int:
    """Levels that programming noise ``σ`` still keeps apart within ``[g_min, g_max]``.

    Adjacent levels are at least ``2·z·σ`` apart (±z σ bands do not overlap), so
    ``levels = floor((g_max − g_min) / (2 z σ)) + 1``, capped by the ``n_steps + 1`` states a
    pulse train can reach.

    Raises:
        ConfigError: ``g_min ≥ g_max``, non-positive ``σ`` or ``z``.
        FitError: the noise leaves fewer than two levels.
    """
    if not (math.isfinite(g_min_siemens) and math.isfinite(g_max_siemens)) or g_min_siemens >= g_max_siemens:
        raise ConfigError(f"g_min ({g_min_siemens} S) must be below g_max ({g_max_siemens} S)")
    if not sigma_siemens > 0 or not z > 0:
        raise ConfigError("programming noise sigma and z must be positive")
    levels = int(math.floor((g_max_siemens - g_min_siemens) / (2.0 * z * sigma_siemens))) + 1
    if n_steps is not None:
        levels = min(levels, int(n_steps) + 1)
    if levels < 2:
        raise FitError(f"programming noise σ = {sigma_siemens:g} S leaves fewer than 2 distinguishable levels "
                       f"in [{g_min_siemens:g}, {g_max_siemens:g}] S")
    return levels


def read_nonlinearity(v: np.ndarray, i: np.ndarray) -> float:
    """Largest deviation from the small-signal line over a read sweep, relative to max |I|.

    The small-signal conductance is the slope of a straight line through the origin fitted to
    the points with ``|V|`` below a tenth of the sweep's range.

    Raises:
        FitError: no current or too few points.
    """
    v = np.asarray(v, dtype=np.float64)
    i = np.asarray(i, dtype=np.float64)
    small = np.abs(v) <= 0.1 * np.max(np.abs(v))
    if small.sum() < 2 or np.max(np.abs(i)) == 0:
        raise FitError("a read sweep needs points near 0 V and a non-zero current")
    g0 = float(np.sum(v[small] * i[small]) / np.sum(v[small] ** 2))
    return float(np.max(np.abs(i - g0 * v)) / np.max(np.abs(i)))
