"""Training networks with conv or pooling layers, shared by ``memspice run`` and ``memspice train``.

The models are :class:`~memspice.train.conv_model.CrossbarNetwork` (PHAX-constrained, ``static``
or ``coupled`` evaluator) and :class:`~memspice.train.conv_model.TanhConvNet` (the float
baseline of the same layers), trained by :func:`memspice.train.trainer.train` unchanged. Three
things are added here:

- :class:`ChunkedPredictions`: the trainer scores the whole training and validation split after
  every epoch in one call; a coupled conv network holds a ``K × K`` matrix per sample there
  (``K`` the columns of the layer after a conv layer), about 4 GB for 7,200 MNIST images, so
  predictions are taken a few hundred samples at a time.
- :func:`shift_augment`: one-pixel shifted copies of the training images (``[training] shifts``).
- :func:`plot_kernels`: the first conv layer's kernels as conductance maps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memspice.datasets import shift_images
from memspice.fit.calibration import Calibration
from memspice.network import AvgPool2d, Conv2d, Dense, NetworkSpec
from memspice.safe_io import dumps_strict, write_atomic, write_text_atomic
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.conv_model import CrossbarNetwork, TanhConvNet
from memspice.train.hardware import HardwareConfig
from memspice.train.trainer import TrainConfig, TrainResult, train

#: Samples per prediction call while scoring (bounds the coupled evaluator's memory).
PREDICT_CHUNK = 256
KERNELS_PNG = "kernels.png"
FLOAT_NPZ = "float_network.npz"
FLOAT_JSON = "float_network.json"


class ChunkedPredictions:
    """A trainable model whose ``predict`` / ``predict_logits`` run ``chunk`` samples at a time.

    Results equal the wrapped model's (each sample is evaluated independently); training steps
    (``loss_and_grad``) pass through unchanged.
    """

    def __init__(self, model: Any, chunk: int = PREDICT_CHUNK) -> None:
        self.model = model
        self.chunk = int(chunk)

    @property
    def output_range(self) -> tuple[float, float]:
        return self.model.output_range

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        return self.model.init_params(rng)

    def loss_and_grad(self, *args: Any, **kwargs: Any) -> tuple[float, list[np.ndarray]]:
        return self.model.loss_and_grad(*args, **kwargs)

    def _chunks(self, method: str, params: Sequence[np.ndarray], x: np.ndarray,
                rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        call = getattr(self.model, method)
        if len(x) <= self.chunk:
            return call(params, x, rng)
        return np.concatenate([call(params, x[i: i + self.chunk], rng)
                               for i in range(0, len(x), self.chunk)])

    def predict(self, params: Sequence[np.ndarray], x: np.ndarray,
                rng: np.random.Generator | None = None) -> np.ndarray:
        return self._chunks("predict", params, x, rng)

    def predict_logits(self, params: Sequence[np.ndarray], x: np.ndarray,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        return self._chunks("predict_logits", params, x, rng)


def shift_augment(image_shape: Sequence[int], shifts: int, seed: int, fill: float
                  ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """The trainer's ``augment``: ``shifts`` one-pixel shifted copies of every training image
    (:func:`memspice.datasets.shift_images`, uncovered pixels at ``fill``, e.g. ``vss``); None
    when ``shifts`` is 0."""
    if not shifts:
        return None
    return functools.partial(shift_images, image_shape=tuple(image_shape), copies=shifts, seed=seed, fill=fill)


def constrained_model(calibration: Calibration, spec: NetworkSpec, mode: str, levels: int,
                      init_mean: float, batch_size: int) -> CrossbarNetwork:
    """The PHAX-constrained model of ``spec`` (``mode``: static | load-aware | coupled)."""
    return CrossbarNetwork(calibration, spec, HardwareConfig(levels=levels), evaluator=mode,
                           init_mean=init_mean, batch_size=batch_size)


def train_constrained(model: CrossbarNetwork, x_train: np.ndarray, y_train: np.ndarray,
                      settings: TrainConfig, out_dir: Path | None, resume: bool,
                      metadata: dict[str, Any], initial_params: Sequence[np.ndarray] | None = None,
                      shifts: int = 0) -> tuple[TrainedCrossbarNetwork, TrainResult]:
    """Train ``model`` (from ``initial_params``, e.g. a pre-training's, when given; on ``shifts``
    shifted copies of the training images besides the images, :func:`shift_augment`); return the
    network to program (σ after quantization, S) and the result."""
    augment = shift_augment(model.spec.input_shape, shifts, settings.seed, model.calibration.rails.vss)
    result = train(ChunkedPredictions(model), x_train, y_train, settings, out_dir, resume,
                   initial_params=None if initial_params is None else list(initial_params), augment=augment)
    conductances = tuple(np.asarray(g) for g in model.conductances(result.params)[0])
    network = TrainedCrossbarNetwork(model.spec, conductances, model.calibration, model.evaluator,
                                     None, {**metadata, "best_epoch": int(result.best_epoch)})
    return network, result


def predict(model: Any, params: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """``model.predict`` in chunks."""
    return ChunkedPredictions(model).predict(params, x)


def train_float(spec: NetworkSpec, vss: float, vdd: float, x_train: np.ndarray, y_train: np.ndarray,
                settings: TrainConfig, out_dir: Path | None, resume: bool, shifts: int = 0
                ) -> tuple[TanhConvNet, TrainResult]:
    """Train the float baseline (tanh neurons, free weights) of ``spec`` on inputs in [vss, vdd]
    (and ``shifts`` shifted copies of the training images, :func:`shift_augment`)."""
    model = TanhConvNet(spec, vss, vdd, batch_size=settings.batch_size)
    return model, train(ChunkedPredictions(model), x_train, y_train, settings, out_dir, resume,
                        augment=shift_augment(spec.input_shape, shifts, settings.seed, vss))


def save_float_network(spec: NetworkSpec, params: Sequence[np.ndarray], directory: Path,
                       metadata: dict[str, Any]) -> dict[str, Path]:
    """Write the float baseline's weights: ``float_network.npz`` (``weight{i}`` ``(C_out, K)``,
    ``bias{i}`` per crossbar layer, taps in the wiring's ``(c_in, row, col)`` order) and
    ``float_network.json`` (the layer description). Not a circuit: it has no conductances."""
    directory = Path(directory)
    arrays = {}
    for i in range(len(spec.plans)):
        arrays[f"weight{i}"] = np.asarray(params[2 * i], dtype=np.float64)
        arrays[f"bias{i}"] = np.asarray(params[2 * i + 1], dtype=np.float64)
    meta = {"format": "memspice-float-network", "version": 1, "layers": spec.to_dict(),
            "neuron": "tanh", "inputs": "scaled from [vss, vdd] to [-1, 1]", "metadata": metadata}

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return {"npz": write_atomic(directory / FLOAT_NPZ, write_npz),
            "json": write_text_atomic(directory / FLOAT_JSON, dumps_strict(meta, indent=2) + "\n")}


def describe_layers(spec: Any) -> str:
    """``1x14x14 → conv8k3 → pool2 → conv16k3 → pool2 → flatten → dense10`` (stride/padding when
    not 1/0)."""
    parts = ["x".join(str(s) for s in spec.input_shape)]
    for layer in spec.layers:
        if isinstance(layer, Conv2d):
            text = f"conv{layer.out_channels}k{layer.kernel}"
            text += f"s{layer.stride}" if layer.stride != 1 else ""
            text += f"p{layer.padding}" if layer.padding else ""
        elif isinstance(layer, AvgPool2d):
            text = f"pool{layer.size}" + (f"s{layer.step}" if layer.step != layer.size else "")
        elif isinstance(layer, Dense):
            text = f"dense{layer.units}"
        else:
            text = layer.kind
        parts.append(text)
    return " → ".join(parts)


def write_train_report(directory: Path, summary: dict[str, Any], layers: str,
                       figures: dict[str, str]) -> Path:
    """``report.md`` of ``memspice train --network``: the summary, the layer table and the figures
    (file name → caption, relative to ``directory``)."""
    lines = ["# memspice train report", "", f"Network {summary.get('topology')}, mode {summary.get('mode')}.", "",
             "| quantity | value |", "|---|---|"]
    for key, value in summary.items():
        shown = f"{100 * value:.2f} %" if "accuracy" in key and isinstance(value, float) else value
        lines.append(f"| {key} | {shown} |")
    lines += ["", "## Layers", "", "```", layers, "```"]
    for name, caption in figures.items():
        if (Path(directory) / name).is_file():
            lines += ["", f"## {caption}", "", f"![{caption}]({name})"]
    return write_text_atomic(Path(directory) / "report.md", "\n".join(lines) + "\n")


def first_conv_kernels(network: TrainedCrossbarNetwork) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(layer index, G+, G−)`` of the first conv layer, ``(C_out, C_in, k, k)`` each (S), or
    None when the network has no conv layer. ``G+`` are the devices of the ``ip`` rows (the
    input's positive copy), ``G−`` those of the ``in`` rows (its negative copy)."""
    for plan, g in zip(network.spec.plans, network.effective_conductances()):
        if isinstance(plan.layer, Conv2d):
            k, taps = plan.layer.kernel, plan.taps
            c_in = taps // (k * k)
            shape = (plan.channels, c_in, k, k)
            return plan.index, g[:, :taps].reshape(shape), g[:, taps: 2 * taps].reshape(shape)
    return None


def plot_kernels(network: TrainedCrossbarNetwork, path: Path) -> Path | None:
    """The first conv layer's kernels as conductance maps: one column per output channel, rows
    for the positive device (ip row), the negative device (in row) and their difference, colour
    bars in µS. Input channels sit side by side within a panel. None without a conv layer."""
    found = first_conv_kernels(network)
    if found is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index, g_pos, g_neg = found
    c_out, c_in, k, _ = g_pos.shape

    def tiles(g: np.ndarray) -> np.ndarray:  # (C_out, k, C_in·k): input channels side by side
        return 1e6 * g.transpose(0, 2, 1, 3).reshape(c_out, k, c_in * k)

    pos, neg = tiles(g_pos), tiles(g_neg)
    diff = pos - neg
    window = network.window
    g_max_us = 1e6 * window.g_max_siemens
    span = float(np.abs(diff).max()) or 1.0
    width = min(max(5.0, 1.0 + 1.1 * c_out * max(1.0, c_in * 0.6)), 24.0)
    fig, axes = plt.subplots(3, c_out, figsize=(width, 4.2), squeeze=False)
    rows = ((pos, "G+ (ip row)", "viridis", 0.0, g_max_us), (neg, "G− (in row)", "viridis", 0.0, g_max_us),
            (diff, "G+ − G−", "RdBu_r", -span, span))
    for r, (maps, label, cmap, lo, hi) in enumerate(rows):
        for c in range(c_out):
            ax = axes[r, c]
            image = ax.imshow(maps[c], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"kernel {c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
        bar = fig.colorbar(image, ax=list(axes[r]), fraction=0.02, pad=0.01)
        bar.set_label("µS", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"network layer {index} (conv2d): device conductances of each {k}×{k} kernel"
                 + (f"\n{c_in} input channels side by side" if c_in > 1 else ""), fontsize=9)
    written = write_atomic(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)
    return written
