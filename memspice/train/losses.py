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

Every loss takes the labels either as class indices ``(B,)`` (one-hot targets) or as a ``(B, C)``
matrix of target probabilities: soft targets, e.g. a float teacher's mixed with the labels for
knowledge distillation (:func:`distillation_targets`). For ``bce`` and ``mse`` each entry is the
target of one output; for ``softmax_ce`` each row is a distribution (its entries sum to 1).
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
            labels: ``(B,)`` integer class labels in ``[0, C)``, or ``(B, C)`` target
                probabilities.
            lo: output value that means "0".
            hi: output value that means "1".

        Returns:
            ``(loss, ∂loss/∂outputs)`` with the gradient shaped like ``outputs``.
        """
        span = hi - lo
        p = (outputs - lo) / span
        batch, classes = p.shape
        target = _target_matrix(labels, p.shape)
        if self.name == "softmax_ce":
            z = self.logit_scale * p
            z = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1, keepdims=True))
            log_prob = z - log_norm
            loss, grad_z = _softmax_ce(log_prob, labels, target)
            grad_p = grad_z * (self.logit_scale / batch)
            return loss, grad_p / span
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
            labels: ``(B,)`` integer class labels in ``[0, C)``, or ``(B, C)`` target
                probabilities.

        Returns:
            ``(loss, ∂loss/∂logits)``; ``bce`` and ``mse`` are those of ``sigmoid(z)`` against
            the targets (mean over batch and outputs), ``softmax_ce`` is that of ``z``.
        """
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        batch, classes = z.shape
        target = _target_matrix(labels, z.shape)
        if self.name == "softmax_ce":
            shifted = z - z.max(axis=1, keepdims=True)
            log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss, grad = _softmax_ce(log_prob, labels, target)
            return loss, grad / (batch * self.temperature)
        count = batch * classes
        prob = _sigmoid(z)
        scale = 1.0 / (count * self.temperature)
        if self.name == "mse":
            diff = prob - target
            return float((diff * diff).sum() / count), 2.0 * scale * diff * prob * (1.0 - prob)
        # softplus(z) − t·z, written so that neither exp nor log1p overflows.
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        return float((softplus - target * z).sum() / count), scale * (prob - target)


def _softmax_ce(log_prob: np.ndarray, labels: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy ``−Σ t·log p`` of log-probabilities against the targets, and its
    gradient w.r.t. the logits times the batch size (``p·Σt − t``)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:  # class indices: the sum over one entry per row, as before soft targets
        rows = np.arange(len(labels))
        grad = np.exp(log_prob)
        grad[rows, labels] -= 1.0
        return -float(log_prob[rows, labels].mean()), grad
    grad = np.exp(log_prob) * target.sum(axis=1, keepdims=True) - target
    return -float((target * log_prob).sum() / len(target)), grad


def _target_matrix(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(B, C)`` targets: one-hot rows for class indices, or the given target probabilities."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        if labels.shape != shape:
            raise ConfigError(f"targets {labels.shape} do not match outputs {shape}")
        return labels.astype(np.float64)
    target = np.zeros(shape)
    target[np.arange(shape[0]), labels] = 1.0
    return target


def distillation_targets(teacher_logits: np.ndarray, labels: np.ndarray, loss_name: str,
                         weight: float, temperature: float = 1.0) -> np.ndarray:
    """Soft targets ``(1 − weight)·one_hot + weight·teacher`` for knowledge distillation.

    ``teacher`` is the teacher's probabilities in the loss's own sense: ``sigmoid(z/T)`` per
    output for ``bce`` and ``mse`` (the float baseline's ``(1 + tanh(a/T))/2``), ``softmax(z/T)``
    per row for ``softmax_ce``.

    Args:
        teacher_logits: ``(B, C)`` the teacher's logits ``z`` (dimensionless).
        labels: ``(B,)`` class indices.
        loss_name: the student's loss (``bce``, ``mse`` or ``softmax_ce``).
        weight: share of the teacher in the targets, in [0, 1].
        temperature: ``T`` > 0; above 1 the teacher's probabilities are softer.

    Returns:
        ``(B, C)`` target probabilities.
    """
    if loss_name not in LOSS_NAMES:
        raise ConfigError(f"unknown loss {loss_name!r}; choose one of {list(LOSS_NAMES)}")
    if not 0 <= weight <= 1:
        raise ConfigError(f"distillation weight must be in [0, 1], got {weight}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"distillation temperature must be positive and finite, got {temperature}")
    z = np.asarray(teacher_logits, dtype=np.float64) / temperature
    if loss_name == "softmax_ce":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        teacher = e / e.sum(axis=1, keepdims=True)
    else:
        teacher = _sigmoid(z)
    one_hot = _target_matrix(np.asarray(labels), teacher.shape)
    return (1.0 - weight) * one_hot + weight * teacher


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose largest output is the true class."""
    return float(np.mean(np.argmax(outputs, axis=1) == labels))
