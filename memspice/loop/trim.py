"""The per-chip trim: re-program a chip's bias rows (and rows at a constant voltage) for its corner.

After fabrication a designer measures the chip's neurons (here: the corner's calibration) and,
with a few labelled images, re-programs only the devices that act as biases, so every neuron
sits on its moved threshold again; every weight device keeps its conductance.
:func:`trim_bias` centres every column in closed form (:func:`center_columns`) and then trains the
trimmed devices (:class:`BiasTrim`) against the chip's model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration
from memspice.train.evaluate import network_from_params
from memspice.train.losses import Loss
from memspice.train.model import PhaxNetwork
from memspice.train.network_io import TrainedNetwork
from memspice.train.trainer import TrainConfig, train


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
