"""Losses on network outputs rescaled to [0, 1], or on logits, each with its exact gradient.

Outputs are voltages (or tanh values for the float baseline) in a known range ``[lo, hi]``;
with the ``output`` link every loss first rescales them to ``p = (y − lo)/(hi − lo)`` — PHAX's
``(outp − vss)/(vdd − vss)`` — so the same loss means the same thing for the circuit and the
baseline.

With the ``logit`` link the loss sees the output neuron's tanh argument instead: a neuron
``c1 + c2·tanh(c4·(v − c3))`` has logit ``z = 2·c4·sign(c2)·(v − c3)``, so that
``sigmoid(z) = (1 + sign(c2)·tanh(c4·(v − c3)))/2`` is its output rescaled to its own swing
(for the float baseline ``tanh(a)``, ``z = 2a`` and ``sigmoid(z)`` is exactly ``p``). Why it
matters: the PHAX output inverter is steep (``c4`` ≈ 190 /V) and swings ±0.24 V inside ±0.25 V
rails, so ``p`` never reaches 0 or 1. BCE on ``p`` then keeps pushing every output deeper into
the flat tail of the tanh, where its gradient decays like ``exp(−2·c4·|v|)``; an output neuron
pushed there early never recovers, and its class is never predicted. On logits BCE is the
usual ``softplus(z) − t·z`` whose gradient ``sigmoid(z) − t`` does not vanish for a wrong
output however saturated it is. Predictions do not change: ``z`` is increasing in the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from memspice.errors import ConfigError

LossName = Literal["bce", "mse", "softmax_ce"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
LossLink = Literal["output", "logit"]
LOSS_LINKS: tuple[str, ...] = get_args(LossLink)

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
            Used by the ``output`` link only.
        link: ``"output"`` (losses of the rescaled outputs, :meth:`value_and_grad`) or
            ``"logit"`` (losses of the output neurons' logits, :meth:`logit_value_and_grad`:
            ``bce`` and ``mse`` of ``sigmoid(z/T)``, ``softmax_ce`` of ``z/T``).
        temperature: ``T``, divides the logits (``logit`` link only; dimensionless, > 0). Above
            1 the loss keeps asking for a wider output swing (a larger margin, in volts of the
            output column) before it is satisfied.
    """

    name: LossName = "bce"
    logit_scale: float = 10.0
    link: LossLink = "output"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise ConfigError(f"unknown loss {self.name!r}; choose one of {list(LOSS_NAMES)}")
        if not self.logit_scale > 0:
            raise ConfigError(f"logit_scale must be positive, got {self.logit_scale}")
        if self.link not in LOSS_LINKS:
            raise ConfigError(
                f"unknown loss link {self.link!r}; choose one of {list(LOSS_LINKS)}"
            )
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"loss temperature must be positive and finite, got {self.temperature}")

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


    def logit_value_and_grad(
        self, logits: np.ndarray, labels: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Loss value and its gradient w.r.t. the output logits (the ``logit`` link).

        Args:
            logits: ``(B, C)`` logits ``z`` (dimensionless, any real value).
            labels: ``(B,)`` integer class labels in ``[0, C)``.

        Returns:
            ``(loss, ∂loss/∂logits)``; ``bce`` and ``mse`` are those of ``sigmoid(z)`` against
            one-hot targets (mean over batch and outputs), ``softmax_ce`` is that of ``z``.
        """
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        batch, classes = z.shape
        rows = np.arange(batch)
        if self.name == "softmax_ce":
            shifted = z - z.max(axis=1, keepdims=True)
            log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            grad = np.exp(log_prob)
            grad[rows, labels] -= 1.0
            return -float(log_prob[rows, labels].mean()), grad / (batch * self.temperature)
        target = np.zeros_like(z)
        target[rows, labels] = 1.0
        count = batch * classes
        prob = _sigmoid(z)
        scale = 1.0 / (count * self.temperature)
        if self.name == "mse":
            diff = prob - target
            return float((diff * diff).sum() / count), 2.0 * scale * diff * prob * (1.0 - prob)
        # softplus(z) − t·z, written so that neither exp nor log1p overflows.
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        return float((softplus - target * z).sum() / count), scale * (prob - target)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the true class."""
    return float(np.mean(np.argmax(outputs, axis=1) == labels))
