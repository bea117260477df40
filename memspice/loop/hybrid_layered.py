"""Preparing a layered network for transfer: quantization-aware fine-tuning before hybrid training.

Programming a network to devices with few levels rounds every conductance to the level grid of
the device window. A network trained with small conductances (the conv recipe starts θ at −3,
σ ≈ 4 % of the window, so that conv neurons are lightly loaded) puts most of its σ below the
first step of an 8-level grid, and the rounding alone can cost tens of points. Fine-tuning the
ex-situ network *with* the levels (straight-through rounding per θ,
:class:`~memspice.train.hardware.HardwareConfig`) moves it onto the grid, where the transfer
only adds the programming variation; the result stores σ already on the grid, so programming
it with the same levels rounds nothing.

:func:`quantization_aware_finetune` does this in two stages, as the conv recipe trains: the
``load-aware`` evaluator (cheap; each neuron's tanh at its load), then the ``coupled``
evaluator (every neuron loaded by the devices it drives, as SPICE's operating point). Both see
the same training images; the trainer's validation split (``val_fraction``) picks the epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.hardware import HardwareConfig
from memspice.train.mapping import conductance_to_theta, quantize_conductance, theta_to_conductance
from memspice.train.trainer import TrainConfig, train

#: θ are clipped to this before training (σ at the window's ends has an infinite logit).
THETA_CLIP = 20.0


@dataclass(frozen=True, slots=True)
class QuantizationAwareSettings:
    """Quantization-aware fine-tuning of an ex-situ network.

    Attributes:
        levels: conductance levels per device of the grid (≥ 2; the transfer's levels).
        load_aware_epochs: epochs with the ``load-aware`` evaluator (0 skips the stage).
        load_aware_lr: its Adam learning rate (cosine schedule, batch 32).
        coupled_epochs: epochs with the ``coupled`` evaluator (0 skips the stage).
        coupled_lr: its Adam learning rate (cosine schedule, batch 64).
        val_fraction: share of the training images the trainer holds out to pick the epoch.
        seed: seeds the split and the shuffles.
    """

    levels: int = 8
    load_aware_epochs: int = 8
    load_aware_lr: float = 0.02
    coupled_epochs: int = 1
    coupled_lr: float = 0.005
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.levels, bool) or not isinstance(self.levels, (int, np.integer)) or self.levels < 2:
            raise ConfigError(f"quantization-aware training needs at least 2 levels, got {self.levels!r}")
        for name in ("load_aware_epochs", "coupled_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a non-negative integer, got {value!r}")
        if self.load_aware_epochs + self.coupled_epochs == 0:
            raise ConfigError("quantization-aware training needs at least one epoch")
        for name in ("load_aware_lr", "coupled_lr"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive number, got {value!r}")
        if not (np.isfinite(self.val_fraction) and 0 <= self.val_fraction < 1):
            raise ConfigError(f"validation fraction must be in [0, 1), got {self.val_fraction!r}")

    def as_dict(self) -> dict[str, float | int]:
        """JSON-safe description."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def network_thetas(network: TrainedCrossbarNetwork) -> list[np.ndarray]:
    """θ of every crossbar layer of ``network`` (its σ through the logit), clipped to ±20."""
    return [np.clip(conductance_to_theta(np.asarray(s, dtype=np.float64), network.window), -THETA_CLIP, THETA_CLIP)
            for s in network.conductances]


def on_grid(network: TrainedCrossbarNetwork, levels: int) -> TrainedCrossbarNetwork:
    """``network`` with every σ rounded to ``levels`` uniform levels of the window."""
    sigma = tuple(quantize_conductance(np.asarray(s, dtype=np.float64), network.window, levels)
                  for s in network.conductances)
    return dataclasses.replace(network, conductances=sigma)


def quantization_aware_finetune(network: TrainedCrossbarNetwork, x: np.ndarray, y: np.ndarray,
                                settings: QuantizationAwareSettings = QuantizationAwareSettings(),
                                log: Callable[[str], None] | None = None) -> TrainedCrossbarNetwork:
    """Fine-tune ``network`` with its σ rounded to ``settings.levels`` (straight-through).

    Args:
        network: the ex-situ network (any layered topology the models take).
        x: ``(n, n_inputs)`` training inputs (V).
        y: ``(n,)`` labels.
        settings: levels, epochs and learning rates of the two stages.
        log: optional ``callable(message)`` (the validation accuracy after each stage).

    Returns:
        The fine-tuned network, σ on the level grid, ``evaluator`` of its last stage and
        ``metadata["quantization_aware"]`` describing the run.

    Raises:
        ConfigError: inputs that do not fit the network, a calibration without the model a
            stage needs (load-aware or inverter current model).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != network.spec.n_inputs or len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"training inputs {x.shape} and labels {y.shape} do not fit a network of "
                          f"{network.spec.n_inputs} inputs")
    cal = network.calibration
    if settings.load_aware_epochs and cal.load_aware is None:
        raise ConfigError("quantization-aware load-aware training needs a calibration with a load-aware model")
    if settings.coupled_epochs and cal.inverter_current is None:
        raise ConfigError("quantization-aware coupled training needs a calibration with an inverter current model")
    say = log or (lambda message: None)
    hardware = HardwareConfig(levels=settings.levels)
    base = dict(loss="softmax_ce", loss_link="logit", schedule="cosine", val_fraction=settings.val_fraction,
                seed=settings.seed, progress=False)
    params = network_thetas(network)
    evaluator = network.evaluator
    history: dict[str, list[float | None]] = {}
    stages = (("load-aware", settings.load_aware_epochs, 32, settings.load_aware_lr),
              ("coupled", settings.coupled_epochs, 64, settings.coupled_lr))
    for name, epochs, batch, lr in stages:
        if not epochs:
            continue
        model = CrossbarNetwork(cal, network.spec, hardware, evaluator=name)
        result = train(model, x, y, TrainConfig(epochs=epochs, batch_size=batch, lr=lr, **base),
                       initial_params=params)
        params, evaluator = result.params, name
        history[name] = [float(v) if np.isfinite(v) else None for v in result.history.val_accuracy]
        say(f"quantization-aware {name}: validation accuracy per epoch "
            + ", ".join("n/a" if v is None else f"{100 * v:.2f} %" for v in history[name]))
    sigma = tuple(quantize_conductance(theta_to_conductance(t, network.window), network.window, settings.levels)
                  for t in params)
    meta = {**network.metadata, "quantization_aware": {**settings.as_dict(), "val_accuracy": history}}
    return dataclasses.replace(network, conductances=sigma, evaluator=evaluator, metadata=meta)
