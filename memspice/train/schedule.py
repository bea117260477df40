"""Learning-rate schedules for the mini-batch trainer.

The learning rate of a step is a pure function of the settings, the epoch and the step's place
in the epoch, so a resumed run follows the same schedule as the uninterrupted one without
storing anything. Two decays are offered after an optional linear warm-up:

- ``exponential``: ``lr · lr_decay**(e − 1)`` for the ``e``-th epoch after the warm-up;
- ``cosine``: half a cosine from ``lr`` down to ``lr · lr_floor_fraction`` over the epochs after
  the warm-up, reaching the floor in the last epoch.

The warm-up rises linearly per step, from ``lr / n`` at the first step to ``lr`` at the last
step of epoch ``warmup_epochs`` (``n`` steps in all), so Adam's first, noisiest moment estimates
move the parameters little.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from memspice.errors import ConfigError

ScheduleName = Literal["exponential", "cosine"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)


def check_schedule(schedule: str, epochs: int, lr_decay: float = 1.0, warmup_epochs: int = 0,
                   lr_floor_fraction: float = 0.0) -> None:
    """Raise :class:`ConfigError` unless the settings describe one of the schedules."""
    if schedule not in SCHEDULE_NAMES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose one of {list(SCHEDULE_NAMES)}")
    if schedule == "cosine" and lr_decay != 1.0:
        raise ConfigError("lr_decay applies to the exponential schedule; the cosine one ends "
                          "at lr_floor_fraction instead")
    if not 0 <= lr_floor_fraction < 1:
        raise ConfigError(f"lr_floor_fraction must be in [0, 1), got {lr_floor_fraction}")
    if lr_floor_fraction and schedule != "cosine":
        raise ConfigError("lr_floor_fraction needs schedule='cosine'")
    if not 0 <= warmup_epochs < epochs:
        raise ConfigError(f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs}")


def epoch_learning_rate(lr: float, epoch: int, epochs: int, schedule: str = "exponential",
                        lr_decay: float = 1.0, warmup_epochs: int = 0,
                        lr_floor_fraction: float = 0.0) -> float:
    """Learning rate of epoch ``epoch`` (1-based) before the warm-up factor.

    Warm-up epochs get ``lr`` (scaled per step by :func:`warmup_factor`); the decay starts with
    the first epoch after them.
    """
    check_schedule(schedule, epochs, lr_decay, warmup_epochs, lr_floor_fraction)
    after = epoch - warmup_epochs  # 1 for the first decaying epoch
    if after <= 1:
        return lr
    if schedule == "exponential":
        # Repeated products, not a power, so the default schedule is bit-for-bit the old
        # "multiply by lr_decay after every epoch".
        rate = lr
        for _ in range(after - 1):
            rate *= lr_decay
        return rate
    span = epochs - warmup_epochs - 1
    progress = min(1.0, (after - 1) / span)
    floor = lr * lr_floor_fraction
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_factor(epoch: int, step: int, steps_per_epoch: int, warmup_epochs: int) -> float:
    """Linear warm-up factor in (0, 1] for step ``step`` (0-based) of epoch ``epoch`` (1-based)."""
    if epoch > warmup_epochs:
        return 1.0
    total = warmup_epochs * steps_per_epoch
    return ((epoch - 1) * steps_per_epoch + step + 1) / total
