"""ADMM structured pruning (Yuan et al.'s three steps) on any crossbar network.

1. **ADMM-regularized training.** The pruned variable is the normalized conductance
   ``s = σ/g_max`` of every θ (an absent device is ``s = 0``, which σ itself never reaches:
   the sigmoid keeps it above g_min). Each ADMM round trains the network for a few epochs with
   the loss plus ``ρ/2·Σ‖s − Z + U‖²`` (:class:`AdmmPenalty`, exact gradient through the
   sigmoid), then sets ``Z = Π(s + U)`` (:mod:`memspice.train.sparsity`'s projection onto the
   layer's target: the best fraction of structures, optionally on ``N`` conductance levels)
   and ``U ← U + s − Z``; ρ grows by ``rho_growth`` per round.
2. **Masked mapping.** The structures the final projection of ``s`` keeps become θ masks in the
   network description (absent devices); the network loses its dead neurons and conv
   channels (:func:`memspice.train.sparsity.compact`).
3. **Masked retraining** with the mask fixed, through :func:`memspice.train.trainer.train`
   and the same evaluator (static, load-aware or coupled), quantized to ``levels`` when
   asked; optionally a last stage with another evaluator (``AdmmConfig.finish_evaluator``).

Dense and layered (conv, pooled) networks alike: θ is shared by every position of a conv layer,
so a structure, its projection and its mask are too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from memspice.errors import ConfigError
from memspice.network.spec import NetworkSpec
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.device_budget import (
    budget_densities,
    check_compression,
    check_weight_compression,
)
from memspice.train.hardware import HardwareConfig
from memspice.train.losses import Loss
from memspice.train.model import PhaxNetwork
from memspice.train.mapping import (
    ConductanceWindow,
    quantize_conductance,
    theta_to_conductance,
    theta_to_conductance_vjp,
)
from memspice.train.sparsity import (
    SparsityError,
    check_density,
    compact,
    project_levels,
    project_structures,
    read_live,
    structure_groups,
)
from memspice.train.trainer import TrainConfig, split_validation, train


class MaskedDenseNetwork(PhaxNetwork):
    """A dense network whose θ masks remove devices, on the dense evaluators.

    Same numbers as :class:`~memspice.train.conv_model.CrossbarNetwork` on the masked
    description (an absent device is a conductance of 0 S: no term in its column's sum, no
    load on its row), through :class:`~memspice.train.model.PhaxNetwork`'s static or coupled
    evaluator, which is several times faster on dense layers.

    Args:
        calibration: rails, activation fits and device window.
        spec: a dense network, with or without θ masks.
        hardware: quantization (straight-through).
        evaluator: ``"static"`` or ``"coupled"``.
        init_mean: mean of the initial θ.
        init_std: standard deviation of the initial θ.
    """

    def __init__(self, calibration: Any, spec: NetworkSpec,
                 hardware: HardwareConfig = HardwareConfig(), evaluator: str = "static",
                 init_mean: float = 0.0, init_std: float = 1.0) -> None:
        if not spec.is_dense:
            raise SparsityError("the masked dense model needs a dense network")
        if any(m is not None and m.device is not None for m in spec.masks):
            raise SparsityError("per-device masks are not trainable (use θ masks)")
        super().__init__(calibration, spec.topology, hardware, None, evaluator, init_std, init_mean)
        self.spec = spec
        self.evaluator_name = evaluator
        self.masks = [None if m is None or m.theta is None else m.theta.astype(np.float64)
                      for m in (spec.masks or (None,) * len(spec.plans))]

    def conductances(self, params: Sequence[np.ndarray], rng: np.random.Generator | None = None,
                     hardware: HardwareConfig | None = None, faults: Any = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Conductances (S), 0 for absent devices, and ``∂G/∂σ`` (0 there)."""
        g, slopes = super().conductances(params, rng, hardware, faults)
        out_g, out_slopes = [], []
        for gi, slope, mask in zip(g, slopes, self.masks):
            if mask is not None:
                gi = gi * mask
                slope = mask if slope is None else slope * mask
            out_g.append(gi)
            out_slopes.append(slope)
        return out_g, out_slopes

    def training_conductances(self, params: Sequence[np.ndarray], rng: np.random.Generator | None = None
                              ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """A training step's conductances: :meth:`conductances` (absent devices at 0 S, their
        ``∂G/∂σ`` 0), so the loss gradient is exact and 0 for absent devices."""
        return self.conductances(params, rng)


def make_model(calibration: Any, spec: NetworkSpec, levels: int = 0, evaluator: str = "static",
               init_mean: float = 0.0, init_std: float = 1.0) -> Any:
    """The trainable model of ``spec``: :class:`MaskedDenseNetwork` for dense networks (the
    faster dense evaluators; ``"static"`` or ``"coupled"``),
    :class:`~memspice.train.conv_model.CrossbarNetwork` otherwise and for ``"load-aware"``."""
    hardware = HardwareConfig(levels=levels)
    if spec.is_dense and evaluator != "load-aware":
        return MaskedDenseNetwork(calibration, spec, hardware, evaluator, init_mean, init_std)
    return CrossbarNetwork(calibration, spec, hardware, evaluator=evaluator, init_std=init_std,
                           init_mean=init_mean)


def evaluator_name(model: Any) -> str:
    """``"static"`` or ``"coupled"`` of either model kind."""
    return getattr(model, "evaluator_name", None) or model.evaluator


@dataclass(frozen=True, slots=True)
class LayerTarget:
    """What to prune in one crossbar layer.

    Attributes:
        structure: one of :data:`memspice.train.sparsity.STRUCTURES`, or None (not pruned).
        density: fraction of the layer's structures kept, in (0, 1].
        tile: ``(rows, cols)`` for the ``tile`` structure.
        budgeted: the layer's structures compete for the network's device budget
            (``AdmmConfig.device_compression``) or weight budget
            (``AdmmConfig.weight_compression``) instead of keeping ``density`` of them.
    """

    structure: str | None = None
    density: float = 1.0
    tile: tuple[int, int] | None = None
    budgeted: bool = False

    def __post_init__(self) -> None:
        check_density(self.density)
        if self.budgeted and self.structure is None:
            raise SparsityError("a layer in the device budget needs a structure")

    @classmethod
    def from_compression(cls, structure: str | None, ratio: float,
                         tile: tuple[int, int] | None = None) -> LayerTarget:
        """A target of ``1/ratio`` density (a compression ratio ≥ 1)."""
        return cls(structure, 1.0 / check_compression(ratio, "a compression ratio"), tile)


def layer_groups(spec: NetworkSpec, targets: Sequence[LayerTarget]) -> list[np.ndarray | None]:
    """Structure labels per layer (None for a layer without a structure).

    Raises:
        SparsityError: another number of targets than crossbar layers, or a structure the
            layer cannot take.
    """
    if len(targets) != len(spec.plans):
        raise SparsityError(f"{len(targets)} pruning targets for {len(spec.plans)} crossbar layers")
    last = len(spec.plans) - 1
    return [None if t.structure is None else
            structure_groups(p, t.structure, t.tile, output=p.crossbar == last)
            for p, t in zip(spec.plans, targets)]


def project(values: Sequence[np.ndarray], groups: Sequence[np.ndarray | None],
            targets: Sequence[LayerTarget], levels: int = 0, low: float = 0.0,
            high: float = 1.0, spec: NetworkSpec | None = None
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``Π(values)`` per layer and the kept entries: structures (every output neuron keeping at
    least one), then levels in ``[low, high]``.

    With ``spec``, layer by layer, entries reading a neuron (channel) the previous projection
    left without any entry count as 0 (what they read is removed), and an output neuron is
    covered by a structure reading a live neuron (a path from the inputs).
    """
    projected, keeps = [], []
    last = len(values) - 1
    live = None
    for index, (v, g, t) in enumerate(zip(values, groups, targets)):
        readable = None if spec is None else read_live(spec.plans[index], live)
        if g is None:
            z, keep = np.array(v, dtype=np.float64), np.ones(np.shape(v), dtype=bool)
        else:
            usable = np.ones(np.shape(v), dtype=bool)
            if readable is not None:
                usable = readable.copy()
                usable[:, -2:] = True  # the bias pair reads no neuron
            z, keep = project_structures(np.where(usable, v, 0.0), g, t.density,
                                         cover_columns=index == last, cover_with=readable)
            keep &= usable
            z = np.where(keep, v, 0.0)
        if levels:
            z = np.where(keep, project_levels(np.where(keep, np.maximum(z, low), 0.0),
                                              levels, low, high), 0.0)
        projected.append(z)
        keeps.append(keep)
        live = keep.any(axis=1)
    return projected, keeps


@dataclass
class AdmmPenalty:
    """The augmented-Lagrangian term ``ρ/2·Σ_layers ‖s(θ) − Z + U‖²``, ``s = σ(θ)/g_max``.

    Attributes:
        window: the device window (S).
        rho: the penalty weight ρ (per unit of s², summed over every θ).
        z: per layer, the projected copy Z (units of g_max).
        u: per layer, the scaled dual variable U (units of g_max).
    """

    window: ConductanceWindow
    rho: float
    z: list[np.ndarray]
    u: list[np.ndarray]

    def normalized(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``s = σ(θ)/g_max`` per layer."""
        return [theta_to_conductance(t, self.window) / self.window.g_max_siemens for t in params]

    def value_and_grad(self, params: Sequence[np.ndarray]) -> tuple[float, list[np.ndarray]]:
        """The term and its exact gradient in θ."""
        value, grads = 0.0, []
        for theta, s, z, u in zip(params, self.normalized(params), self.z, self.u):
            r = s - z + u
            value += 0.5 * self.rho * float(np.sum(r * r))
            grads.append(theta_to_conductance_vjp(theta, self.window,
                                                  self.rho * r / self.window.g_max_siemens))
        return value, grads


class AdmmObjective:
    """A model whose loss carries an :class:`AdmmPenalty` (what the trainer sees in step 1).

    Prediction, logits and the validation loss are the model's own.
    """

    def __init__(self, model: Any, penalty: AdmmPenalty) -> None:
        self.model = model
        self.penalty = penalty
        self.output_range = model.output_range

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        return self.model.init_params(rng)

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray,
                rng: np.random.Generator | None = None) -> np.ndarray:
        return self.model.predict(params, x, rng)

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        return self.model.predict_logits(params, x, rng)

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray,
                      loss: Loss, rng: np.random.Generator | None = None
                      ) -> tuple[float, list[np.ndarray]]:
        value, grads = self.model.loss_and_grad(params, x, labels, loss, rng)
        extra, extra_grads = self.penalty.value_and_grad(params)
        return value + extra, [g + e for g, e in zip(grads, extra_grads)]


@dataclass(frozen=True, slots=True)
class AdmmConfig:
    """ADMM schedule and the retraining recipe.

    Attributes:
        rho: initial penalty weight ρ (the term sums ``(s − Z + U)²`` over every θ; the loss is
            a per-sample mean, so ρ ~ 1e-3 weighs 40,000 θ about like the loss).
        rho_growth: factor on ρ after every round (≥ 1).
        rounds: ADMM rounds (Z and U updates).
        epochs_per_round: training epochs between updates.
        levels: conductance levels of the result (0 = continuous).
        train: the training recipe of step 1 (its ``epochs`` is replaced by
            ``epochs_per_round``) and of the retraining.
        retrain_epochs: epochs of the masked retraining (step 3).
        finish_evaluator: after the retraining, train the masked network once more with this
            evaluator (e.g. ``"coupled"`` after ``"load-aware"`` steps); None = no such stage.
        finish: the recipe of that stage (its epochs included).
        device_compression: dense devices over the devices the budgeted layers
            (``LayerTarget.budgeted``) and the others may keep together (≥ 1); None = every
            layer keeps its own density.
        weight_compression: dense θ over the θ the budgeted layers and the others may keep
            together (≥ 1; a conv θ counts once, however many positions build it: Yuan et
            al.'s measure); None = no weight budget. At most one of the two budgets.
        quantize_rounds: with ``levels``, the ADMM rounds already train on the level grid
            (straight-through), so the masked mapping does not add the quantization loss.
        finish_samples: the finishing stage trains on the first this many images of the
            training part (never the validation split), without a holdout of its own;
            None = on every training image like the other steps.
    """

    rho: float = 1e-3
    rho_growth: float = 1.5
    rounds: int = 4
    epochs_per_round: int = 2
    levels: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(progress=False))
    retrain_epochs: int = 4
    finish_evaluator: str | None = None
    finish: TrainConfig | None = None
    device_compression: float | None = None
    quantize_rounds: bool = True
    finish_samples: int | None = None
    weight_compression: float | None = None

    def __post_init__(self) -> None:
        if self.finish_samples is not None and self.finish_samples < 1:
            raise ConfigError("ADMM finish samples must be at least 1")
        if self.device_compression is not None:
            check_compression(self.device_compression)
        if self.weight_compression is not None:
            check_compression(self.weight_compression, "a weight compression")
            if self.device_compression is not None:
                raise ConfigError("an ADMM budget counts devices or weights, not both")
        if (self.finish_evaluator is None) != (self.finish is None):
            raise ConfigError("an ADMM finishing stage needs both its evaluator and its recipe")
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise ConfigError(f"ADMM rho must be positive, got {self.rho}")
        if not (math.isfinite(self.rho_growth) and self.rho_growth >= 1):
            raise ConfigError(f"ADMM rho growth must be ≥ 1, got {self.rho_growth}")
        for name in ("rounds", "epochs_per_round", "retrain_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ADMM {name.replace('_', ' ')} must be at least 1")
        HardwareConfig(levels=self.levels)


@dataclass
class PruneResult:
    """Outcome of :func:`admm_prune` or :func:`masked_retrain`.

    Attributes:
        model: the masked (and compacted) model that was retrained.
        params: its θ.
        kept_neurons: per layer, the original indices of the neurons kept.
        rounds: per ADMM round, ρ, ``‖s − Π(s)‖`` (the distance to the target structures) and the
            validation accuracy after the round.
        history: the retraining's history.
    """

    model: Any
    params: list[np.ndarray]
    kept_neurons: list[np.ndarray]
    rounds: list[dict[str, Any]]
    history: Any = None


def masked_retrain(model: Any, params: Sequence[np.ndarray],
                   theta_masks: Sequence[np.ndarray | None], x: np.ndarray, labels: np.ndarray,
                   config: TrainConfig, levels: int = 0, epochs: int | None = None) -> PruneResult:
    """Steps 2 and 3: put the masks in the network description (dense networks lose their
    dead neurons) and retrain with them fixed, on ``levels`` conductance levels.

    Raises:
        SparsityError: masks that leave a column without a device or an output unreachable.
    """
    spec, cut, _, kept = compact(model.spec, list(params), theta_masks)
    masked = make_model(model.calibration, spec, levels, evaluator_name(model), model.init_mean,
                        model.init_std)
    result = train(masked, x, labels, replace(config, epochs=epochs or config.epochs),
                   initial_params=cut)
    return PruneResult(masked, result.params, kept, [], result.history)


def finish_training(result: PruneResult, x: np.ndarray, labels: np.ndarray, evaluator: str,
                    config: TrainConfig, levels: int = 0) -> PruneResult:
    """A last masked training of a pruned network with another evaluator (the CNN recipe's
    coupled fine-tuning after load-aware retraining); the mask and the kept neurons stay."""
    model = result.model
    tuned = make_model(model.calibration, model.spec, levels, evaluator, model.init_mean,
                       model.init_std)
    out = train(tuned, x, labels, config, initial_params=result.params)
    return PruneResult(tuned, out.params, result.kept_neurons, result.rounds, out.history)


def admm_prune(model: Any, params: Sequence[np.ndarray], x: np.ndarray,
               labels: np.ndarray, targets: Sequence[LayerTarget],
               config: AdmmConfig = AdmmConfig()) -> PruneResult:
    """Yuan et al.'s three steps from trained θ ``params`` (see the module docstring).

    Args:
        model: the unmasked network (:func:`make_model`; static or coupled evaluator).
        params: its trained θ.
        x: training inputs (V); the trainer holds out ``config.train.val_fraction``.
        labels: their classes.
        targets: one :class:`LayerTarget` per crossbar layer.
        config: the schedule.

    Returns:
        The pruned, retrained network and the per-round record.
    """
    if any(m is not None for m in model.spec.masks):
        raise SparsityError("ADMM pruning starts from a network without masks")
    budgeted = any(t.budgeted for t in targets)
    compression, unit = config.device_compression, "devices"
    if config.weight_compression is not None:
        compression, unit = check_weight_compression(config.weight_compression, model.spec), "weights"
    if budgeted and compression is None:
        raise SparsityError("layers in the budget need a device compression (or a weight compression)")
    if not budgeted and compression is not None:
        raise SparsityError(f"a {unit[:-1]} compression needs at least one layer in the "
                            f"{unit[:-1]} budget")
    groups = layer_groups(model.spec, targets)
    window = model.window
    low = window.g_min_siemens / window.g_max_siemens

    def layer_targets(values: Sequence[np.ndarray]) -> list[LayerTarget]:
        if not budgeted:
            return list(targets)
        densities = budget_densities(model.spec, values, groups, [t.budgeted for t in targets],
                                     [t.density for t in targets], compression, unit)
        return [replace(t, density=d) for t, d in zip(targets, densities)]

    def projection(values: Sequence[np.ndarray], levels: int = 0
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[LayerTarget]]:
        now = layer_targets(values)
        z, keeps = project(values, groups, now, levels, low, spec=model.spec)
        return z, keeps, now

    params = [np.array(p, dtype=np.float64) for p in params]
    penalty = AdmmPenalty(window, config.rho, [], [])
    s = penalty.normalized(params)
    penalty.z, _, _ = projection(s, config.levels)
    penalty.u = [np.zeros_like(v) for v in s]
    trained = model
    if config.levels and config.quantize_rounds:
        trained = make_model(model.calibration, model.spec, config.levels, evaluator_name(model),
                             model.init_mean, model.init_std)
    objective = AdmmObjective(trained, penalty)
    step_config = replace(config.train, epochs=config.epochs_per_round)
    rounds: list[dict[str, Any]] = []
    for index in range(config.rounds):
        result = train(objective, x, labels, step_config, initial_params=params)
        params = result.params
        s = penalty.normalized(params)
        penalty.z, _, _ = projection([a + b for a, b in zip(s, penalty.u)], config.levels)
        penalty.u = [u + a - z for u, a, z in zip(penalty.u, s, penalty.z)]
        nearest, _, now = projection(s)
        distance = math.sqrt(sum(float(np.sum((a - z) ** 2)) for a, z in zip(s, nearest)))
        rounds.append({"round": index + 1, "rho": penalty.rho, "distance": distance,
                       "val_accuracy": float(result.history["val_accuracy"].iloc[-1]),
                       "densities": [t.density for t in now]})
        penalty.rho *= config.rho_growth
    _, keeps, _ = projection(penalty.normalized(params))
    masks = [None if g is None else k for g, k in zip(groups, keeps)]
    out = masked_retrain(model, params, masks, x, labels, config.train, config.levels,
                         config.retrain_epochs)
    if config.finish_evaluator is not None:
        finish, fx, fy = config.finish, x, labels
        if config.finish_samples is not None:
            part, _ = split_validation(len(x), config.train.val_fraction, config.train.seed)
            part = part[: config.finish_samples]
            finish, fx, fy = replace(finish, val_fraction=0.0), x[part], labels[part]
        out = finish_training(out, fx, fy, config.finish_evaluator, finish, config.levels)
    out.rounds = rounds
    return out


def programmed_conductances(model: Any, params: Sequence[np.ndarray]
                            ) -> tuple[np.ndarray, ...]:
    """σ to program for θ (quantized to the model's levels; masked θ keep their σ, the mask
    removes their devices)."""
    return tuple(quantize_conductance(theta_to_conductance(t, model.window), model.window,
                                      model.hardware.levels) for t in params)
