"""The pruning methods as functions on trained networks: CSrram clusters and ADMM.

Both return a :class:`Pruned`: the pruned network as a file-ready
:class:`~memspice.train.conv_io.TrainedCrossbarNetwork` (masks in its description), the
neurons it kept and the training record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memspice.fit.calibration import Calibration
from memspice.network.spec import NetworkSpec
from memspice.train.admm import (
    AdmmConfig,
    LayerTarget,
    admm_prune,
    evaluator_name,
    make_model,
    programmed_conductances,
)
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.sparsity import block_diagonal_mask, masked_spec
from memspice.train.trainer import TrainConfig, train

METHODS = ("csrram", "admm")


@dataclass
class Pruned:
    """A pruned (or dense) network and how it was made.

    Attributes:
        network: the network to save, netlist and simulate.
        kept_neurons: per layer, original indices of the neurons kept (None: all kept).
        record: JSON-safe description (method, targets, rounds, best epoch).
    """

    network: TrainedCrossbarNetwork
    kept_neurons: list[np.ndarray] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def trained_network(model: Any, params: Sequence[np.ndarray],
                    metadata: dict[str, Any] | None = None) -> TrainedCrossbarNetwork:
    """The conductances to program for θ (quantized to the model's levels), with its masks."""
    return TrainedCrossbarNetwork(model.spec, programmed_conductances(model, params),
                                  model.calibration, evaluator_name(model), None, dict(metadata or {}))


def train_dense(calibration: Calibration, spec: NetworkSpec, x: np.ndarray, labels: np.ndarray,
                config: TrainConfig, evaluator: str = "coupled", init_mean: float = -1.5,
                levels: int = 0, initial_params: Sequence[np.ndarray] | None = None
                ) -> tuple[Any, list[np.ndarray], Pruned]:
    """Train a network of ``spec`` (its masks fixed from the start; from ``initial_params``
    when given, e.g. a load-aware pre-training) and return the model, θ and the network."""
    model = make_model(calibration, spec, levels, evaluator, init_mean)
    result = train(model, x, labels, config,
                   initial_params=None if initial_params is None else list(initial_params))
    record = {"best_epoch": result.best_epoch,
              "val_accuracy": float(result.history["val_accuracy"].max())}
    return model, result.params, Pruned(trained_network(model, result.params, record), None, record)


def csrram(calibration: Calibration, spec: NetworkSpec, density: float, x: np.ndarray,
           labels: np.ndarray, config: TrainConfig, evaluator: str = "coupled",
           init_mean: float = -1.5, levels: int = 0, order: str = "interleaved") -> Pruned:
    """CSrram: block-diagonal clusters of ``density`` in the first layer (inputs clustered in
    ``order``), fixed before training, then trained from scratch with the recipe ``config``."""
    masks: list[np.ndarray | None] = [None] * len(spec.plans)
    masks[0] = block_diagonal_mask(spec.plans[0], density, order)
    masked = masked_spec(spec, masks)
    _, _, pruned = train_dense(calibration, masked, x, labels, config, evaluator, init_mean, levels)
    pruned.record.update({"method": "csrram", "first_layer_density": density,
                          "clusters": round(1 / density), "input_order": order})
    return pruned


def admm(model: Any, params: Sequence[np.ndarray], x: np.ndarray,
         labels: np.ndarray, targets: Sequence[LayerTarget], config: AdmmConfig) -> Pruned:
    """ADMM pruning from trained θ (see :func:`memspice.train.admm.admm_prune`)."""
    out = admm_prune(model, params, x, labels, targets, config)
    record = {"method": "admm", "levels": config.levels, "rounds": out.rounds,
              "targets": [{"structure": t.structure, "density": t.density,
                           "tile": None if t.tile is None else list(t.tile),
                           "budgeted": t.budgeted} for t in targets],
              "device_compression": config.device_compression,
              "weight_compression": config.weight_compression,
              "quantize_rounds": config.quantize_rounds, "rho": config.rho,
              "admm_rounds": config.rounds, "retrain_epochs": config.retrain_epochs,
              "best_epoch": int(out.history["val_loss"].idxmin()) + 1
              if out.history is not None and out.history["val_loss"].notna().any() else None,
              "val_accuracy": float(out.history["val_accuracy"].max())
              if out.history is not None and out.history["val_accuracy"].notna().any() else None}
    kept = out.kept_neurons
    return Pruned(trained_network(out.model, out.params, record), kept, record)
