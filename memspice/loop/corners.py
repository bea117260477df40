"""Robustness across process corners: train at one corner or at several, validate at all.

A network trained against one corner's calibration meets the other corners' transistors in
SPICE. :class:`MultiCornerNetwork` trains one θ against several corners at once: every
mini-batch's loss (and gradient) is the mean over the corners' models, each a
:class:`~memspice.train.model.PhaxNetwork` with that corner's calibration.
:func:`corner_study` calibrates each corner (cached in the run directory), trains the chosen
networks and simulates each of them at every corner.
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
    """Calibrate each corner once; ``<out>/calibration_<corner>.json`` is reused when present."""
    from memspice.characterize.calibrate import calibrate

    out_dir = Path(out_dir)
    result = {}
    for corner in corners:
        path = out_dir / f"calibration_{corner}.json"
        if path.is_file():
            result[corner] = load_calibration(path)
            continue
        t0 = time.perf_counter()
        result[corner] = calibrate(make_tech(corner), sizing)
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
            see :func:`check_trim`).
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


#: |θ| of devices programmed at a window edge (whose exact θ is ±inf) when a trim starts from them.
THETA_EDGE = 12.0


class BiasTrim:
    """A trained network whose only trainable θ are the devices of some rows of some layers.

    The other devices keep their programmed conductances; the parameters are, per trimmed layer,
    the ``(M, R)`` θ of its trimmed rows (a bias trim: the ``bias_p`` / ``bias_n`` rows, and
    optionally input rows whose voltage never changes, which act as bias rows too).

    Args:
        model: the corner's model (its calibration and evaluator), same topology as ``theta``.
        theta: θ of every layer of the programmed network.
        rows: by layer index, the row indices (wiring order) whose devices are trimmed.
    """

    def __init__(self, model: PhaxNetwork, theta: Sequence[np.ndarray], rows: dict[int, np.ndarray]) -> None:
        self.model = model
        self.theta = [np.array(t, dtype=np.float64) for t in theta]
        self.rows = {int(k): np.asarray(v, dtype=np.intp) for k, v in rows.items()}
        self.output_range = model.output_range

    def full(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        """θ of every layer with the trimmed devices replaced by ``params``."""
        theta = [t.copy() for t in self.theta]
        for (layer, rows), value in zip(self.rows.items(), params):
            theta[layer][:, rows] = value
        return theta

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The programmed θ of the trimmed devices (the trim starts from the chip as it is)."""
        return [self.theta[layer][:, rows].copy() for layer, rows in self.rows.items()]

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Output voltages ``(B, n_classes)`` (V)."""
        return self.model.predict(self.full(params), x)

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """Output logits ``(B, n_classes)``."""
        return self.model.predict_logits(self.full(params), x)

    def loss_and_grad(self, params: Sequence[np.ndarray], x: np.ndarray, labels: np.ndarray, loss: Loss,
                      rng: np.random.Generator | None = None) -> tuple[float, list[np.ndarray]]:
        """Loss and ``∂loss/∂θ`` of the trimmed devices only."""
        value, grads = self.model.loss_and_grad(self.full(params), x, labels, loss, rng)
        return value, [grads[layer][:, rows] for layer, rows in self.rows.items()]


def constant_input_rows(x: np.ndarray, tolerance_v: float = 1e-9) -> np.ndarray:
    """First-layer rows (wiring order) whose voltage is the same for every sample of ``x``.

    An input that never changes (a border pixel no image inks) drives its ``ip`` and ``in`` rows at
    constant voltages: their devices shift every column like the bias rows do.

    Args:
        x: ``(n, N)`` input voltages (V), e.g. the whole training split.
        tolerance_v: largest spread (V) still counted as constant.

    Returns:
        Sorted row indices: ``i`` (``ip_i``) and ``N + i`` (``in_i``) for each constant input ``i``.
    """
    x = np.asarray(x, dtype=np.float64)
    constant = np.flatnonzero(np.ptp(x, axis=0) <= tolerance_v)
    return np.concatenate([constant, x.shape[1] + constant])


@dataclass(frozen=True)
class TrimResult:
    """Outcome of :func:`trim_bias`.

    Attributes:
        network: the trimmed network (the corner's calibration; weight devices unchanged).
        devices_reprogrammed: bias devices given a new conductance (stuck devices excluded).
        accuracy_before: the corner model's accuracy on the calibration images before the trim.
        accuracy_after: the same after the trim.
        history: the trim's per-epoch training history.
    """

    network: TrainedNetwork
    devices_reprogrammed: int
    accuracy_before: float
    accuracy_after: float
    history: pd.DataFrame


def center_columns(model: PhaxNetwork, reference: PhaxNetwork, conductances: Sequence[np.ndarray],
                   rows: dict[int, np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Set the trimmed devices so that every column sits where it sat at the reference corner,
    relative to its neuron's threshold.

    Layer by layer (in the chip's model, earlier layers already centred), each column's mean
    voltage over ``x`` is moved to its mean in the reference model plus the shift of the neuron
    threshold ``c3`` between the two corners. The trimmed rows whose (mean) voltage lies above the
    target are set to one common conductance and those below it to ``g_min`` (or the other way
    round), the one conductance solved in closed form and clipped to the device window. This
    restores the operating point a gradient alone cannot reach when a corner's threshold moved
    every input of a neuron to one side of it (its gradient then vanishes).

    Args:
        model: the chip's (corner's) model.
        reference: the model the network was trained in (its corner).
        conductances: the programmed conductances per layer (S).
        rows: by layer, the trimmed rows (wiring order).
        x: ``(n, N)`` calibration inputs (V).

    Returns:
        The conductances with the trimmed devices re-set (S).
    """
    g_min, span = model.window.g_min_siemens, model.window.span_siemens
    shift = model.calibration.activation.noninverting.c3 - reference.calibration.activation.noninverting.c3
    targets = [layer.column.mean(axis=0) + shift for layer in reference.evaluator.forward(conductances, x).layers]
    g = [np.array(c, dtype=np.float64) for c in conductances]
    for layer in sorted(rows):
        trimmed = rows[layer]
        state = model.evaluator.forward(g, x).layers[layer]
        v_rows = state.rows.mean(axis=0)
        keep = np.ones(g[layer].shape[1], dtype=bool)
        keep[trimmed] = False
        v_t = v_rows[trimmed]
        for j, m in enumerate(targets[layer]):
            a = g[layer][j, keep] @ v_rows[keep]
            b = g[layer][j, keep].sum()
            d = v_t - m
            need = m * b - a - g_min * d.sum()  # what the trimmed rows must add above g_min
            up, down = d > 0, d < 0
            value = np.full(len(trimmed), g_min)
            if need > 0 and up.any():
                value[up] += span * min(1.0, need / (span * d[up].sum()))
            elif need < 0 and down.any():
                value[down] += span * min(1.0, need / (span * d[down].sum()))
            g[layer][j, trimmed] = value
    return g


def check_trim(network: TrainedNetwork, layers: Sequence[int] | None = None,
               input_rows: Sequence[int] = ()) -> tuple[dict[int, np.ndarray], int]:
    """The rows a bias trim of ``network`` re-programs, by layer, and how many devices that is.

    Args:
        network: the programmed network.
        layers: layers whose bias rows are trimmed (default: all).
        input_rows: first-layer input rows trimmed too (e.g. :func:`constant_input_rows`);
            they need layer 0 among ``layers``.

    Raises:
        ConfigError: no layer, an index out of range or repeated, input rows without layer 0 or out
            of range, or only stuck devices.
    """
    n_layers = len(network.conductances)
    chosen = tuple(range(n_layers)) if layers is None else tuple(int(i) for i in layers)
    if not chosen:
        raise ConfigError("a bias trim needs at least one layer")
    if any(not 0 <= i < n_layers for i in chosen) or len(set(chosen)) != len(chosen):
        raise ConfigError(f"trim layers must be distinct indices in [0, {n_layers - 1}], got {list(chosen)}")
    extra = np.unique(np.asarray(input_rows, dtype=np.intp))
    n_input_rows = network.conductances[0].shape[1] - 2
    if extra.size and (0 not in chosen or extra[0] < 0 or extra[-1] >= n_input_rows):
        raise ConfigError(f"trimmed input rows must lie in [0, {n_input_rows - 1}] of layer 0, a trimmed layer")
    rows, free = {}, 0
    for i in chosen:
        n_rows = network.conductances[i].shape[1]
        rows[i] = np.concatenate([extra if i == 0 else np.empty(0, dtype=np.intp), [n_rows - 2, n_rows - 1]])
        if network.faults is not None:
            stuck = network.faults.stuck_high[i][:, rows[i]] | network.faults.stuck_low[i][:, rows[i]]
            free += int((~stuck).sum())
        else:
            free += network.conductances[i].shape[0] * len(rows[i])
    if free == 0:
        raise ConfigError(f"layer(s) {list(chosen)} have no programmable bias device: all are stuck")
    return rows, free


def trim_bias(network: TrainedNetwork, calibration: Calibration, x: np.ndarray, labels: np.ndarray, *,
              layers: Sequence[int] | None = None, input_rows: Sequence[int] = (), center: bool = True,
              mode: str = "coupled",
              config: TrainConfig | None = TrainConfig(epochs=20, batch_size=16, lr=0.05, loss="bce", loss_link="logit",
                                                val_fraction=0.0, progress=False)) -> TrimResult:
    """A per-chip trim: re-program only the bias rows, trained against one corner's model.

    What a designer does after fabrication: measure the chip's neurons (here: the corner's
    calibration), then with a few labelled calibration images re-program the ``bias_p`` / ``bias_n``
    devices of the chosen layers; every weight device keeps its conductance.

    Args:
        network: the programmed network (trained at any corner).
        calibration: the chip's (corner's) calibration; its rails must be the network's. The
            network's device window is kept.
        x: ``(n, N)`` calibration inputs (V), from the training split.
        labels: ``(n,)`` labels.
        layers: layers whose bias rows are trimmed (default: all).
        input_rows: first-layer input rows re-programmed too (rows at a constant voltage, see
            :func:`constant_input_rows`); default none.
        center: first move every column back to its operating point relative to the threshold
            (:func:`center_columns`, against the network's own calibration and evaluator), then train.
        mode: the model the trim trains in.
        config: trim training settings (``val_fraction`` 0: the caller validates); None: no
            training, only the centring.

    Raises:
        ConfigError: an empty or out-of-range layer list, no programmable bias device (all stuck),
            calibration rails that differ from the network's, inputs of the wrong shape.
    """
    from memspice.train.losses import accuracy
    from memspice.train.mapping import conductance_to_theta

    rows, free = check_trim(network, layers, input_rows)
    if calibration.rails != network.calibration.rails:
        raise ConfigError(f"the corner's rails {calibration.rails} differ from the network's "
                          f"{network.calibration.rails}")
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[1] != network.topology[0] or len(x) != len(labels) or len(x) == 0:
        raise ConfigError(f"trim inputs must be (n >= 1, {network.topology[0]}) with one label each, "
                          f"got {x.shape} and {labels.shape}")
    chip = dataclasses.replace(calibration, device=network.calibration.device)
    model = PhaxNetwork(chip, network.topology, faults=network.faults, evaluator=mode)
    programmed = list(network.conductances)
    theta = [np.clip(conductance_to_theta(g, model.window), -THETA_EDGE, THETA_EDGE) for g in programmed]
    before = accuracy(model.predict(theta, x), labels)
    if center:
        reference = PhaxNetwork(network.calibration, network.topology, faults=network.faults,
                                evaluator=network.evaluator)
        programmed = center_columns(model, reference, programmed, rows, x)
        theta = [np.clip(conductance_to_theta(g, model.window), -THETA_EDGE, THETA_EDGE) for g in programmed]
    trim = BiasTrim(model, theta, rows)
    start = trim.init_params(np.random.default_rng(0))
    if config is None:
        params, history = start, pd.DataFrame()
    else:
        result = train(trim, x, labels, config, initial_params=start)
        params, history = result.params, result.history
    trimmed = network_from_params(model, trim.full(params))
    conductances = [g.copy() for g in network.conductances]
    for i, r in rows.items():
        value = trimmed.conductances[i][:, r]
        if network.faults is not None:  # a stuck device keeps what it had
            stuck = network.faults.stuck_high[i][:, r] | network.faults.stuck_low[i][:, r]
            value = np.where(stuck, conductances[i][:, r], value)
        conductances[i][:, r] = value
    metadata = {**network.metadata, "trimmed_at": calibration.source.get("corner", ""), "trim_layers": list(rows),
                "trim_input_rows": len(rows.get(0, ())) - 2 if 0 in rows else 0}
    out = dataclasses.replace(network, conductances=tuple(conductances), calibration=chip, evaluator=mode,
                              metadata=metadata)
    return TrimResult(out, free, before, accuracy(trim.predict(params, x), labels), history)


class PerCornerBias:
    """Trim-aware training: shared weight devices, each corner its own trimmed devices.

    The parameters are θ of every layer (its trimmed devices serve the first corner) followed,
    for each further corner, by the θ of the trimmed devices of every trimmed layer. The loss is
    the mean over the corners' models, each seeing the shared devices and its own trimmed ones, so
    the shared weights learn to work with what a per-chip trim (:func:`trim_bias`) sets after
    fabrication.

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
