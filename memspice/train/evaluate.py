"""Evaluation of trained networks: accuracy, Monte Carlo over non-idealities, export.

:func:`monte_carlo_accuracy` draws device variation and (optionally) fresh stuck-at fault maps
per trial and reports the mean and spread of the accuracy. :func:`network_from_params` turns a
trained :class:`~memspice.train.model.PhaxNetwork` into the conductances to program.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memspice.errors import ConfigError
from memspice.train.hardware import HardwareConfig, draw_fault_map
from memspice.train.losses import accuracy
from memspice.train.mapping import quantize_conductance, theta_to_conductance
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import TrainedNetwork


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """Accuracy over Monte Carlo draws of the non-idealities.

    Attributes:
        accuracies: one accuracy per trial (fraction).
    """

    accuracies: np.ndarray

    @property
    def mean(self) -> float:
        """Mean accuracy (fraction)."""
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation of the accuracy (fraction; 0 for one trial)."""
        return float(self.accuracies.std(ddof=1)) if len(self.accuracies) > 1 else 0.0


def monte_carlo_accuracy(
    model: PhaxNetwork,
    params: Sequence[np.ndarray],
    x: np.ndarray,
    labels: np.ndarray,
    hardware: HardwareConfig,
    n_trials: int = 20,
    seed: int = 0,
    fault_rate_high: float = 0.0,
    fault_rate_low: float = 0.0,
) -> MonteCarloResult:
    """Accuracy under ``n_trials`` seeded draws of variation and stuck-at faults.

    Args:
        model: the network (its own fault map is used when both rates are zero).
        params: θ per layer.
        x: input voltages ``(n, n_inputs)`` (V).
        labels: ``(n,)`` class indices.
        hardware: levels and variation used for every trial.
        n_trials: number of draws.
        seed: seeds the draws.
        fault_rate_high: per-trial probability that a device is stuck at g_max.
        fault_rate_low: per-trial probability that a device is stuck at g_min.
    """
    if n_trials < 1:
        raise ConfigError(f"Monte Carlo needs at least one trial, got {n_trials}")
    shapes = [s.matrix_shape for s in model.shapes]
    results = []
    for trial in range(n_trials):
        rng = np.random.default_rng([seed, trial])
        faults = None
        if fault_rate_high > 0 or fault_rate_low > 0:
            faults = draw_fault_map(shapes, fault_rate_high, fault_rate_low, rng)
        out = model.predict(params, x, rng=rng, hardware=hardware, faults=faults)
        results.append(accuracy(out, labels))
    return MonteCarloResult(np.array(results))


def network_from_params(
    model: PhaxNetwork, params: Sequence[np.ndarray], metadata: dict[str, Any] | None = None
) -> TrainedNetwork:
    """The conductances to program for trained θ (quantized when the model uses levels).

    The model's fault map, if any, travels with the network so evaluation sees the stuck
    devices.
    """
    conductances = tuple(
        quantize_conductance(theta_to_conductance(theta, model.window), model.window,
                             model.hardware.levels)
        for theta in params
    )
    return TrainedNetwork(model.topology, conductances, model.calibration,
                          model.evaluator.name, model.faults, dict(metadata or {}))
