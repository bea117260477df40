"""Losses on network outputs rescaled to [0, 1], each with its exact gradient.

Outputs are voltages (or tanh values for the float baseline) in a known range ``[lo, hi]``;
every loss first rescales them to ``p = (y − lo)/(hi − lo)`` — PHAX's ``(outp − vss)/(vdd −
vss)`` — so the same loss means the same thing for the circuit and the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from memspice.errors import ConfigError

LossName = Literal["bce", "mse", "softmax_ce"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)

#: Probability clip for the binary cross-entropy (only a saturated float baseline reaches it).
_BCE_EPS = 1e-7


@dataclass(frozen=True, slots=True)
class Loss:
    """A loss on rescaled outputs.

    Attributes:
        name: ``"bce"`` (PHAX: binary cross-entropy per output against one-hot targets, mean
            over batch and outputs), ``"mse"`` (mean squared error against one-hot targets) or
            ``"softmax_ce"`` (softmax cross-entropy of ``logit_scale · p``, mean over batch).
        logit_scale: multiplies the rescaled outputs before the softmax (dimensionless); the
            rescaled outputs lie in [0, 1], so without it the softmax would be nearly flat.
    """

    name: LossName = "bce"
    logit_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise ConfigError(f"unknown loss {self.name!r}; choose one of {list(LOSS_NAMES)}")
        if not self.logit_scale > 0:
            raise ConfigError(f"logit_scale must be positive, got {self.logit_scale}")

    def value_and_grad(
        self, outputs: np.ndarray, labels: np.ndarray, lo: float, hi: float
    ) -> tuple[float, np.ndarray]:
        """Loss value and its gradient w.r.t. ``outputs``.

        Args:
            outputs: ``(B, C)`` raw outputs in ``[lo, hi]`` (V for the circuit).
            labels: ``(B,)`` integer class labels in ``[0, C)``.
            lo: output value that means "0".
            hi: output value that means "1".

        Returns:
            ``(loss, ∂loss/∂outputs)`` with the gradient shaped like ``outputs``.
        """
        span = hi - lo
        p = (outputs - lo) / span
        batch, classes = p.shape
        if self.name == "softmax_ce":
            z = self.logit_scale * p
            z = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1, keepdims=True))
            log_prob = z - log_norm
            rows = np.arange(batch)
            loss = -float(log_prob[rows, labels].mean())
            grad_z = np.exp(log_prob)
            grad_z[rows, labels] -= 1.0
            grad_p = grad_z * (self.logit_scale / batch)
            return loss, grad_p / span
        target = np.zeros_like(p)
        target[np.arange(batch), labels] = 1.0
        count = batch * classes
        if self.name == "mse":
            diff = p - target
            return float((diff * diff).sum() / count), (2.0 / count) * diff / span
        clipped = np.clip(p, _BCE_EPS, 1.0 - _BCE_EPS)
        inside = (p > _BCE_EPS) & (p < 1.0 - _BCE_EPS)
        loss = -float(
            (target * np.log(clipped) + (1.0 - target) * np.log1p(-clipped)).sum() / count
        )
        grad_p = (clipped - target) / (clipped * (1.0 - clipped)) / count
        return loss, np.where(inside, grad_p, 0.0) / span


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the true class."""
    return float(np.mean(np.argmax(outputs, axis=1) == labels))
