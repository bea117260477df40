"""The PHAX weight mapping θ → σ → w as a forward/inverse pair.

``σ = g_min + (g_max − g_min)·sigmoid(θ)`` gives each memristor a conductance inside the
device window; ``w = σ / Σ_column σ`` is the weight a column applies to its rows (the column
node is a conductance-weighted average of the row voltages). Every function here is pure and
vectorized; the vector-Jacobian products (``*_vjp``) are what the trainer backpropagates with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ConductanceWindow:
    """The conductance range the mapping targets.

    Attributes:
        g_min_siemens: lowest programmable conductance (S), > 0.
        g_max_siemens: highest programmable conductance (S), > g_min.
    """

    g_min_siemens: float
    g_max_siemens: float

    def __post_init__(self) -> None:
        if not (0 < self.g_min_siemens < self.g_max_siemens):
            raise ConfigError(
                f"conductance window needs 0 < g_min < g_max, got "
                f"[{self.g_min_siemens}, {self.g_max_siemens}] S"
            )

    @property
    def span_siemens(self) -> float:
        """``g_max − g_min`` (S)."""
        return self.g_max_siemens - self.g_min_siemens


def _sigmoid(theta: np.ndarray) -> np.ndarray:
    # exp of a non-positive argument never overflows; both branches share one formula.
    e = np.exp(-np.abs(theta))
    return np.where(theta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def theta_to_conductance(theta: np.ndarray, window: ConductanceWindow) -> np.ndarray:
    """``σ = g_min + (g_max − g_min)·sigmoid(θ)`` in siemens."""
    return window.g_min_siemens + window.span_siemens * _sigmoid(theta)


def theta_to_conductance_vjp(
    theta: np.ndarray, window: ConductanceWindow, grad_sigma: np.ndarray
) -> np.ndarray:
    """Pull a gradient w.r.t. σ (1/S) back to θ (dimensionless)."""
    s = _sigmoid(theta)
    return grad_sigma * (window.span_siemens * s * (1.0 - s))


def conductance_to_theta(sigma: np.ndarray, window: ConductanceWindow) -> np.ndarray:
    """Inverse of :func:`theta_to_conductance` (the logit of the normalized conductance).

    Values at or outside the window edges map to ±inf: a device sitting exactly on ``g_min``
    or ``g_max`` has no finite θ. The round trip is exact (to rounding) strictly inside.
    """
    u = (np.asarray(sigma, dtype=np.float64) - window.g_min_siemens) / window.span_siemens
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.log(u) - np.log1p(-u)
    theta = np.where(u <= 0, -np.inf, theta)
    return np.where(u >= 1, np.inf, theta)


def column_weights(conductance: np.ndarray) -> np.ndarray:
    """``w = σ / Σ_row σ`` per neuron: each row of ``(M, 2N+2)`` sums to one."""
    return conductance / conductance.sum(axis=1, keepdims=True)


def column_weights_vjp(conductance: np.ndarray, grad_w: np.ndarray) -> np.ndarray:
    """Pull a gradient w.r.t. ``w`` back to ``σ`` through the column normalization.

    ``∂w_jk/∂σ_jl = (δ_kl − w_jk)/S_j``, so ``g_σ_jl = (g_w_jl − Σ_k g_w_jk w_jk)/S_j``:
    every conductance of a column moves every weight of that column.
    """
    total = conductance.sum(axis=1, keepdims=True)
    w = conductance / total
    return (grad_w - (grad_w * w).sum(axis=1, keepdims=True)) / total


def signed_weights(conductance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effective signed input weights ``(σ_ip − σ_in)/Σσ`` and bias ``(σ_bp − σ_bn)/Σσ``.

    Args:
        conductance: ``(M, 2N+2)`` layer matrix in wiring order (S).

    Returns:
        ``((M, N) signed weights, (M,) signed bias weight)`` (dimensionless).
    """
    w = column_weights(conductance)
    n = (conductance.shape[1] - 2) // 2
    return w[:, :n] - w[:, n : 2 * n], w[:, 2 * n] - w[:, 2 * n + 1]


def quantize_conductance(
    conductance: np.ndarray, window: ConductanceWindow, levels: int
) -> np.ndarray:
    """Round conductances to ``levels`` uniform steps between g_min and g_max (inclusive).

    ``levels == 0`` means continuous (returned unchanged). Values outside the window are
    clipped to it first.
    """
    if levels == 0:
        return conductance
    if levels < 2:
        raise ConfigError(f"quantization needs at least 2 levels (or 0 = off), got {levels}")
    step = window.span_siemens / (levels - 1)
    clipped = np.clip(conductance, window.g_min_siemens, window.g_max_siemens)
    return window.g_min_siemens + np.round((clipped - window.g_min_siemens) / step) * step
