"""Robustness across process corners: train at one corner or at several, validate at all.

A network trained against one corner's calibration meets the other corners' transistors in
SPICE. :class:`MultiCornerNetwork` trains one θ against several corners at once: every
mini-batch's loss (and gradient) is the mean over the corners' models, each a
:class:`~memspice.train.model.PhaxNetwork` with that corner's calibration.
:func:`train_at_corners` runs a training recipe against one or several corners;
:class:`PerCornerBias` trains trim-aware (each corner owns the devices a per-chip trim,
:mod:`memspice.loop.trim`, re-programs). :func:`corner_study` calibrates each corner (cached in
the run directory), trains the chosen networks and simulates each of them at every corner.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, load_calibration, save_calibration
from memspice.io import write_text_atomic
from memspice.tech.technology import Technology
from memspice.train.evaluate import network_from_params
from memspice.train.losses import Loss
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import TrainedNetwork, load_network, save_network
from memspice.train.trainer import TrainConfig, TrainResult, train
from memspice.validate.api import RunSettings, validate_network

CORNERS_CSV = "corners.csv"
#: sky130 process corners.
SKY130_CORNERS = ("tt", "ss", "ff", "sf", "fs")


class MultiCornerNetwork:
    """One θ, several corners: the loss is the (weighted) mean over the corners' models.

    Args:
        models: one :class:`PhaxNetwork` per corner, same topology, window and rails.
        weights: relative weight of each corner's loss (default equal).

    Raises:
        ConfigError: no models, or models that do not share topology, window or rails.
    """

    def __init__(self, models: Sequence[PhaxNetwork], weights: Sequence[float] | None = None) -> None:
        if not models:
            raise ConfigError("a multi-corner network needs at least one corner model")
        first = models[0]
        for model in models[1:]:
            if (model.topology != first.topology or model.window != first.window
                    or model.calibration.rails != first.calibration.rails):
                raise ConfigError("corner models must share topology, device window and rails")
        w = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(models),) or np.any(w < 0) or w.sum() <= 0:
            raise ConfigError("corner weights must be non-negative, one per model, not all zero")
        self.models = list(models)
        self.weights = w / w.sum()
        self.topology = first.topology

    @property
    def output_range(self) -> tuple[float, float]:
        """The shared ``(vss, vdd)`` (V)."""
        return self.models[0].output_range

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """θ initialized as the first corner's model does."""
        return self.models[0].init_params(rng)

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Weighted mean of the corners' output voltages ``(B, n_classes)`` (V)."""
        return sum(w * m.predict(params, x) for w, m in zip(self.weights, self.models))

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """Weighted mean of the corners' output logits ``(B, n_classes)`` (the ``logit`` loss link)."""
        return sum(w * m.predict_logits(params, x) for w, m in zip(self.weights, self.models))

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray, loss: Loss,
                      rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        """Weighted mean of the corners' losses and of their ``∂loss/∂θ``."""
        total = 0.0
        grads = [np.zeros_like(p, dtype=np.float64) for p in params]
        for w, model in zip(self.weights, self.models):
            value, g = model.loss_and_grad(params, x, labels, loss, rng)
            total += w * value
            for acc, part in zip(grads, g):
                acc += w * part
        return total, grads


def corner_calibrations(make_tech: Callable[[str], Technology], corners: Sequence[str], sizing: InverterSizing,
                        out_dir: Path, log: Callable[[str], None] | None = None) -> dict[str, Calibration]:
    """Calibrate each corner once; ``<out>/calibration_<corner>.json`` is reused when present.

    Raises:
        ConfigError: a corner the technology does not know (before anything is calibrated).
    """
    from memspice.characterize.calibrate import calibrate

    out_dir = Path(out_dir)
    techs = {corner: make_tech(corner) for corner in corners}  # an unknown corner fails before any file
    result = {}
    for corner in corners:
        path = out_dir / f"calibration_{corner}.json"
        if path.is_file():
            result[corner] = load_calibration(path)
            continue
        t0 = time.perf_counter()
        result[corner] = calibrate(techs[corner], sizing)
        save_calibration(result[corner], path)
        if log:
            log(f"calibrated corner {corner} in {time.perf_counter() - t0:.1f} s")
    return result


@dataclass
class CornerStudy:
    """Outcome of :func:`corner_study`.

    Attributes:
        table: one row per (trained, corner): SPICE accuracy, the corner model's accuracy and
            the agreement between them, RMS output error (V).
        networks: trained networks by name (``"<corner>"`` or ``"multi"``).
        train_seconds: training wall time by name (s).
    """

    table: pd.DataFrame
    networks: dict[str, TrainedNetwork]
    train_seconds: dict[str, float]

    def pivot(self) -> pd.DataFrame:
        """SPICE accuracy with trainings as rows and corners as columns, plus worst and spread."""
        wide = self.table.pivot(index="trained", columns="corner", values="spice_accuracy")
        wide["worst"] = wide.min(axis=1)
        wide["spread"] = wide.max(axis=1) - wide["worst"]
        return wide


def corner_study(make_tech: Callable[[str], Technology], x_train: np.ndarray, y_train: np.ndarray,
                 x_test: np.ndarray, y_test: np.ndarray, out_dir: Path, *, sizing: InverterSizing,
                 corners: Sequence[str] = SKY130_CORNERS, train_corner: str = "tt", multi: bool = True,
                 topology: Sequence[int] | None = None, mode: str = "coupled",
                 config: TrainConfig = TrainConfig(epochs=10, batch_size=16, lr=0.01, lr_decay=0.93,
                                                   val_fraction=0.0, progress=False),
                 init_mean: float = -3.0, settings: RunSettings = RunSettings(batch_size=250),
                 log: Callable[[str], None] | None = None) -> CornerStudy:
    """Train at ``train_corner`` (and, with ``multi``, at all corners at once); validate at all.

    Args:
        make_tech: technology of a corner name, e.g. ``lambda c: sky130(c)``.
        x_train: ``(n, N)`` training inputs (V).
        y_train: ``(n,)`` labels.
        x_test: ``(S, N)`` test inputs (V), simulated at every corner for every network.
        y_test: ``(S,)`` labels.
        out_dir: run directory (calibrations, networks and SPICE batches are reused).
        sizing: inverter sizes (m), the same at every corner.
        corners: corners to validate at (and to train against with ``multi``).
        train_corner: the single corner of the baseline network.
        multi: also train one network against every corner at once.
        topology: layer sizes (default ``(N, 32, n_classes)``).
        mode: model every corner is trained in.
        config: training settings (same for both networks).
        init_mean: mean of the initial θ.
        settings: SPICE batching and parallelism.
        log: optional ``callable(message)``.

    Raises:
        ConfigError: ``train_corner`` not among ``corners``.
    """
    if train_corner not in corners:
        raise ConfigError(f"training corner {train_corner!r} is not among the corners {list(corners)}")
    say = log or (lambda message: None)
    out_dir = Path(out_dir)
    x_train, x_test = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    topology = tuple(topology or (x_train.shape[1], 32, int(max(y_train.max(), y_test.max())) + 1))
    cals = corner_calibrations(make_tech, corners, sizing, out_dir, say)
    models = {c: PhaxNetwork(cals[c], topology, evaluator=mode, init_mean=init_mean) for c in corners}
    plans: dict[str, Any] = {train_corner: models[train_corner]}
    if multi:
        plans["multi"] = MultiCornerNetwork([models[c] for c in corners])
    networks, seconds = {}, {}
    for name, trainable in plans.items():
        net_dir = out_dir / f"trained_{name}"
        if (net_dir / "network.json").is_file():
            networks[name] = load_network(net_dir)
            seconds[name] = float(networks[name].metadata.get("train_seconds", np.nan))
            continue
        t0 = time.perf_counter()
        result = train(trainable, x_train, y_train, config)
        seconds[name] = time.perf_counter() - t0
        networks[name] = network_from_params(models[train_corner], result.params,
                                             {"trained_at": name, "train_seconds": seconds[name], "mode": mode})
        save_network(networks[name], net_dir)
        say(f"trained '{name}' ({mode}) in {seconds[name]:.1f} s")
    rows = []
    for name, network in networks.items():
        for corner in corners:
            at_corner = dataclasses.replace(network, calibration=cals[corner])
            run = dataclasses.replace(settings, resume=True, force=False)
            report = validate_network(at_corner, make_tech(corner), x_test, y_test,
                                      out_dir / f"validate_{name}_at_{corner}", sizing=sizing, settings=run,
                                      evaluator=mode, write_files=False)
            if report.comparison is None or not report.complete:
                raise ConfigError(f"validation of '{name}' at {corner} did not finish")
            c = report.comparison
            errors = c.layer_errors
            out = errors[(errors["layer"] == errors["layer"].max()) & (errors["output"] == "outp")].iloc[0]
            rows.append({"trained": name, "corner": corner, "spice_accuracy": c.spice_accuracy,
                         "model_accuracy": c.model_accuracy, "agreement": c.agreement,
                         "output_rms_v": float(out["rms_v"]), "n_samples": c.n_samples})
            say(f"'{name}' at {corner}: SPICE acc {c.spice_accuracy:.4f}, {corner} model acc "
                f"{c.model_accuracy:.4f}, agreement {c.agreement:.4f}")
    table = pd.DataFrame(rows)
    write_text_atomic(out_dir / CORNERS_CSV, table.to_csv(index=False))
    return CornerStudy(table, networks, seconds)


@dataclass(frozen=True, slots=True)
class CornerRecipe:
    """How a network is trained against one or several corners' models.

    Attributes:
        settings: optimizer, loss and schedule; ``settings.epochs`` are the final phase's epochs.
        mode: model of the final phase (``"coupled"``: what SPICE solves).
        pretrain_epochs: epochs in ``pretrain_mode`` first (0 = none); the exponential schedule
            continues across both phases and each keeps its epoch of lowest validation loss.
        pretrain_mode: the cheaper model of the first phase.
        init_mean: mean of the initial θ (negative: most devices start near g_min).
    """

    settings: TrainConfig = TrainConfig(epochs=6, batch_size=16, lr=0.005, lr_decay=0.96, loss="bce",
                                        loss_link="logit", progress=False)
    mode: str = "coupled"
    pretrain_epochs: int = 60
    pretrain_mode: str = "load-aware"
    init_mean: float = -3.0

    def __post_init__(self) -> None:
        if self.pretrain_epochs < 0:
            raise ConfigError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if self.pretrain_epochs and self.settings.schedule != "exponential":
            raise ConfigError("pre-training needs the exponential schedule")


def train_at_corners(calibrations: dict[str, Calibration], corners: Sequence[str], topology: Sequence[int],
                     x: np.ndarray, labels: np.ndarray, recipe: CornerRecipe = CornerRecipe(),
                     reference: str | None = None, trim_aware: bool = False,
                     trim_rows: dict[int, np.ndarray] | None = None,
                     initial: Sequence[np.ndarray] | None = None) -> CornerTraining:
    """Train one θ against the mean loss of ``corners``' models (one corner: that corner alone).

    Args:
        calibrations: calibration by corner name.
        corners: corners whose models share the loss (equal weights).
        topology: layer sizes.
        x: ``(n, N)`` training inputs (V); ``recipe.settings.val_fraction`` of them are held out.
        labels: ``(n,)`` labels.
        recipe: training phases and settings.
        reference: corner whose calibration the returned network carries (default: the first).
        trim_aware: give every corner its own trimmed devices (:class:`PerCornerBias`); the other
            devices are shared. The returned network carries the reference corner's.
        trim_rows: trim-aware only: by layer, the rows each corner owns (default: the bias rows;
            see :func:`~memspice.loop.trim.check_trim`).
        initial: θ per layer to fine-tune from (the pre-training phase is then skipped).

    Returns:
        The network, with ``trim_aware`` each corner's network, and the final phase's result.

    Raises:
        ConfigError: no corners, or a corner without a calibration.
    """
    from memspice.train.schedule import epoch_learning_rate

    corners = list(corners)
    if not corners:
        raise ConfigError("training needs at least one corner")
    missing = [c for c in corners if c not in calibrations]
    if missing:
        raise ConfigError(f"no calibration for corner(s) {missing}; calibrated: {sorted(calibrations)}")
    reference = reference or corners[0]
    if reference not in calibrations:
        raise ConfigError(f"no calibration for the reference corner {reference!r}")

    def trainable(mode: str) -> Any:
        models = [PhaxNetwork(calibrations[c], topology, evaluator=mode, init_mean=recipe.init_mean) for c in corners]
        if trim_aware:
            return PerCornerBias(models, trim_rows)
        return models[0] if len(models) == 1 else MultiCornerNetwork(models)

    settings, params = recipe.settings, None
    if initial is not None:
        params = [np.array(t, dtype=np.float64) for t in initial]
    elif recipe.pretrain_epochs:
        first = dataclasses.replace(settings, epochs=recipe.pretrain_epochs)
        params = train(trainable(recipe.pretrain_mode), x, labels, first).params
        total = recipe.pretrain_epochs + settings.epochs
        lr = epoch_learning_rate(settings.lr, recipe.pretrain_epochs + 1, total, settings.schedule,
                                 settings.lr_decay, settings.warmup_epochs)
        settings = dataclasses.replace(settings, lr=lr, warmup_epochs=0)
    final = trainable(recipe.mode)
    if trim_aware and params is not None and len(params) == len(topology) - 1:
        params = final.extend(params)
    result = train(final, x, labels, settings, initial_params=params)
    meta = {"trained_at": ",".join(corners), "best_epoch": result.best_epoch, "trim_aware": trim_aware}
    per_corner = {}
    for index, corner in enumerate(corners if trim_aware else ()):
        model = PhaxNetwork(calibrations[corner], topology, evaluator=recipe.mode)
        per_corner[corner] = network_from_params(model, final.corner_params(result.params, index),
                                                 {**meta, "bias_of": corner})
    model = PhaxNetwork(calibrations[reference], topology, evaluator=recipe.mode, init_mean=recipe.init_mean)
    theta = final.corner_params(result.params, corners.index(reference)) if trim_aware else result.params
    return CornerTraining(network_from_params(model, theta, meta), per_corner, result)


@dataclass(frozen=True)
class CornerTraining:
    """Outcome of :func:`train_at_corners`.

    Attributes:
        network: the trained network (the reference corner's calibration and, trim-aware, bias).
        corner_networks: trim-aware only: by corner, the shared weights with that corner's bias.
        result: the final phase's training result.
    """

    network: TrainedNetwork
    corner_networks: dict[str, TrainedNetwork]
    result: TrainResult


class PerCornerBias:
    """Trim-aware training: shared weight devices, each corner its own trimmed devices.

    The parameters are θ of every layer (its trimmed devices serve the first corner) followed,
    for each further corner, by the θ of the trimmed devices of every trimmed layer. The loss is
    the mean over the corners' models, each seeing the shared devices and its own trimmed ones, so
    the shared weights learn to work with what a per-chip trim
    (:func:`~memspice.loop.trim.trim_bias`) sets after fabrication.

    Args:
        models: one :class:`PhaxNetwork` per corner, same topology, window and rails.
        rows: by layer, the trimmed rows (wiring order; default: every layer's two bias rows).
    """

    def __init__(self, models: Sequence[PhaxNetwork], rows: dict[int, np.ndarray] | None = None) -> None:
        self.shared = MultiCornerNetwork(models)
        self.models = self.shared.models
        self.topology = self.shared.topology
        self.n_layers = len(self.models[0].shapes)
        if rows is None:
            rows = {i: np.array([s.n_rows - 2, s.n_rows - 1]) for i, s in enumerate(self.models[0].shapes)}
        self.rows = {int(k): np.asarray(v, dtype=np.intp) for k, v in rows.items()}

    @property
    def output_range(self) -> tuple[float, float]:
        """The shared ``(vss, vdd)`` (V)."""
        return self.shared.output_range

    def corner_params(self, params: Sequence[np.ndarray], index: int) -> list[np.ndarray]:
        """θ of every layer as corner ``index`` sees them."""
        theta = [np.array(p, dtype=np.float64) for p in params[: self.n_layers]]
        if index:
            start = self.n_layers + len(self.rows) * (index - 1)
            for k, (layer, rows) in enumerate(self.rows.items()):
                theta[layer][:, rows] = params[start + k]
        return theta

    def extend(self, theta: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Parameters from plain θ: every corner's trimmed devices start at ``theta``'s."""
        theta = [np.array(t, dtype=np.float64) for t in theta]
        return theta + [theta[layer][:, rows].copy() for _ in self.models[1:] for layer, rows in self.rows.items()]

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The first corner's initialization, shared by every corner's trimmed devices."""
        return self.extend(self.models[0].init_params(rng))

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Weighted mean of the corners' output voltages, each with its own trimmed devices (V)."""
        return sum(w * m.predict(self.corner_params(params, i), x)
                   for i, (w, m) in enumerate(zip(self.shared.weights, self.models)))

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """Weighted mean of the corners' output logits, each with its own trimmed devices."""
        return sum(w * m.predict_logits(self.corner_params(params, i), x)
                   for i, (w, m) in enumerate(zip(self.shared.weights, self.models)))

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray, loss: Loss,
                      rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        """Mean loss; shared-device gradients summed over corners, trimmed ones to each corner's own."""
        total = 0.0
        grads = [np.zeros_like(p, dtype=np.float64) for p in params]
        for index, (w, model) in enumerate(zip(self.shared.weights, self.models)):
            value, g = model.loss_and_grad(self.corner_params(params, index), x, labels, loss, rng)
            total += w * value
            if index == 0:
                for layer, part in enumerate(g):
                    grads[layer] += w * part
                continue
            start = self.n_layers + len(self.rows) * (index - 1)
            for layer, part in enumerate(g):
                shared = part.copy()
                if layer in self.rows:
                    shared[:, self.rows[layer]] = 0.0
                grads[layer] += w * shared
            for k, (layer, rows) in enumerate(self.rows.items()):
                grads[start + k] += w * g[layer][:, rows]
        return total, grads
