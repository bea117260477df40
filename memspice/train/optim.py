"""Optimizers shared by the constrained network and the float baseline.

Mini-batch optimizers (:class:`Adam`, :class:`SGD`) update a list of arrays in place and expose
their state as named arrays for checkpoints. Full-batch quasi-Newton / conjugate gradient runs
go through :func:`minimize_full_batch` (scipy's L-BFGS-B or CG; PHAX trained with CG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import numpy as np

from memspice.errors import ConfigError

OptimizerName = Literal["adam", "sgd", "lbfgs", "cg"]
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
FULL_BATCH: tuple[str, ...] = ("lbfgs", "cg")


class Adam:
    """Adam (Kingma & Ba) with bias correction.

    Args:
        lr: step size (parameter units per step).
        beta1: first-moment decay.
        beta2: second-moment decay.
        eps: denominator floor.
    """

    def __init__(self, lr: float = 1e-2, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        if not lr > 0:
            raise ConfigError(f"learning rate must be positive, got {lr}")
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update ``params`` in place."""
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        scale = self.lr * np.sqrt(1.0 - self.beta2**self.t) / (1.0 - self.beta1**self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * (g * g)
            p -= scale * m / (np.sqrt(v) + self.eps)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Named arrays for a checkpoint."""
        state = {"t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m{i}"] = m
            state[f"v{i}"] = v
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        count = sum(1 for k in state if k.startswith("m"))
        self.m = [np.array(state[f"m{i}"]) for i in range(count)]
        self.v = [np.array(state[f"v{i}"]) for i in range(count)]


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum.

    Args:
        lr: step size.
        momentum: velocity decay in [0, 1).
    """

    def __init__(self, lr: float = 1e-2, momentum: float = 0.9) -> None:
        if not lr > 0:
            raise ConfigError(f"learning rate must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum}")
        self.lr, self.momentum = lr, momentum
        self.velocity: list[np.ndarray] = []

    def step(self, params: list[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update ``params`` in place."""
        if not self.velocity:
            self.velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.velocity):
            v *= self.momentum
            v -= self.lr * g
            p += v

    def state_dict(self) -> dict[str, np.ndarray]:
        """Named arrays for a checkpoint."""
        return {f"velocity{i}": v for i, v in enumerate(self.velocity)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.velocity = [np.array(state[f"velocity{i}"]) for i in range(len(state))]


class ParameterAverage:
    """Exponential moving average of the parameters over optimizer steps (Polyak averaging).

    ``a_t = d·a_{t−1} + (1 − d)·p_t`` from ``a_0 = 0``, read out bias-corrected as
    ``a_t/(1 − dᵗ)`` (as Adam corrects its moments), so early read-outs are not pulled toward
    zero. The average of the last ~``1/(1 − d)`` steps sits nearer the middle of the basin
    that mini-batch noise makes the parameters wander around than any single step does.

    Args:
        decay: ``d`` in (0, 1).
    """

    def __init__(self, decay: float) -> None:
        if not 0 < decay < 1:
            raise ConfigError(f"average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.t = 0
        self.average: list[np.ndarray] = []

    def update(self, params: Sequence[np.ndarray]) -> None:
        """Fold the current parameters into the average."""
        if not self.average:
            self.average = [np.zeros_like(p) for p in params]
        self.t += 1
        for a, p in zip(self.average, params):
            a *= self.decay
            a += (1.0 - self.decay) * p

    def value(self) -> list[np.ndarray]:
        """The bias-corrected average (new arrays)."""
        if self.t == 0:
            raise ConfigError("the parameter average has seen no step yet")
        correction = 1.0 - self.decay**self.t
        return [a / correction for a in self.average]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Named arrays for a checkpoint."""
        return {"t": np.array(self.t), **{f"a{i}": a for i, a in enumerate(self.average)}}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.t = int(state["t"])
        count = sum(1 for k in state if k.startswith("a"))
        self.average = [np.array(state[f"a{i}"]) for i in range(count)]


def make_optimizer(name: str, lr: float) -> Adam | SGD:
    """A mini-batch optimizer by name (``"adam"`` or ``"sgd"``)."""
    if name == "adam":
        return Adam(lr)
    if name == "sgd":
        return SGD(lr)
    raise ConfigError(
        f"{name!r} is not a mini-batch optimizer; choose one of {list(OPTIMIZER_NAMES)}"
    )


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate arrays into one float64 vector."""
    return np.concatenate([a.ravel() for a in arrays]).astype(np.float64)


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split ``vector`` back into arrays shaped like ``like``."""
    out, start = [], 0
    for a in like:
        out.append(vector[start : start + a.size].reshape(a.shape).copy())
        start += a.size
    return out


def minimize_full_batch(
    objective: Callable[[list[np.ndarray]], tuple[float, list[np.ndarray]]],
    params: list[np.ndarray],
    method: str,
    max_iter: int,
    callback: Callable[[int, list[np.ndarray]], bool] | None = None,
) -> list[np.ndarray]:
    """Minimize a full-batch objective with scipy.

    Args:
        objective: ``params -> (loss, grads)``.
        params: starting point (not modified).
        method: ``"lbfgs"`` (L-BFGS-B) or ``"cg"`` (Polak–Ribière CG).
        max_iter: iteration limit.
        callback: called as ``callback(iteration, params)`` after every iteration; returning
            True stops the run (early stopping).

    Returns:
        The final parameters.
    """
    from scipy.optimize import minimize

    scipy_method = {"lbfgs": "L-BFGS-B", "cg": "CG"}.get(method)
    if scipy_method is None:
        raise ConfigError(f"{method!r} is not a full-batch method; choose one of {list(FULL_BATCH)}")
    like = [p.copy() for p in params]
    iteration = 0

    def fun(vector: np.ndarray) -> tuple[float, np.ndarray]:
        value, grads = objective(unflatten(vector, like))
        return value, flatten(grads)

    def step_callback(intermediate_result: object) -> None:
        nonlocal iteration
        iteration += 1
        if callback is not None:
            vector = intermediate_result.x  # type: ignore[attr-defined]
            if callback(iteration, unflatten(vector, like)):
                raise StopIteration

    result = minimize(fun, flatten(params), jac=True, method=scipy_method,
                      callback=step_callback, options={"maxiter": int(max_iter)})
    return unflatten(result.x, like)


def clip_global_norm(grads: Sequence[np.ndarray], max_norm: float) -> list[np.ndarray]:
    """Scale ``grads`` together so their joint L2 norm is at most ``max_norm`` (new arrays).

    One factor for all arrays keeps the step's direction; only a rare outsized mini-batch
    gradient (a burst of saturated neurons) is shortened.
    """
    if not max_norm > 0:
        raise ConfigError(f"max_norm must be positive, got {max_norm}")
    norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))
    scale = max_norm / norm if norm > max_norm else 1.0
    return [g * scale for g in grads]
