"""What a pruned network costs and how it does: devices, tiles, area, and SPICE figures.

:func:`hardware_counts` counts the devices a network builds (absent devices, removed neurons
and conv channels excluded; a conv kernel counts once per output position, as each position's
column is built with its own copy) against its dense original. :func:`spice_measure` is
:func:`memspice.validate.api.validate_network` on a test set (the one validation path, for
dense and layered networks): SPICE and model accuracy, their agreement, the static power of the
two rails and of the input drivers, and, on the first ``transient_samples`` images, the
transient energy of one inference period (rails and input drivers) and the settling delay.
"""

from __future__ import annotations

from collections.abc import Sequence
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.builders import InverterSizing
from memspice.errors import SimFailed
from memspice.network.spec import NetworkSpec
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.sparsity import kept_theta_columns, tiles_built

#: Test images also simulated in transient mode for the energy per inference, by default.
TRANSIENT_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class HardwareCounts:
    """Devices and crossbar area of a network against its dense original.

    Attributes:
        devices: devices built (memristors).
        dense_devices: devices of the dense original.
        neurons: neurons built.
        dense_neurons: neurons of the dense original.
        tiles_built: tiles with at least one device (0 without a tile size).
        tiles_total: tiles of the dense original (0 without a tile size).
        tile: ``(rows, cols)`` or None.
        weights: distinct trainable θ kept (a conv θ counts once, however many positions
            build it).
        dense_weights: distinct θ of the dense original.
    """

    devices: int
    dense_devices: int
    neurons: int
    dense_neurons: int
    tiles_built: int = 0
    tiles_total: int = 0
    tile: tuple[int, int] | None = None
    weights: int = 0
    dense_weights: int = 0

    @property
    def density(self) -> float:
        """Devices built per dense device."""
        return self.devices / self.dense_devices

    @property
    def compression(self) -> float:
        """Dense devices per device built."""
        return self.dense_devices / self.devices

    @property
    def area_saved(self) -> float:
        """Share of the dense crossbar area not built: tiles when a tile size is given (a tile
        with one device costs a whole tile), devices otherwise."""
        if self.tile is not None and self.tiles_total:
            return 1.0 - self.tiles_built / self.tiles_total
        return 1.0 - self.density

    @property
    def weight_compression(self) -> float:
        """Distinct dense θ per distinct θ kept (how weight-counting papers count)."""
        return self.dense_weights / self.weights if self.weights else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"devices": self.devices, "dense_devices": self.dense_devices,
                "weights": self.weights, "dense_weights": self.dense_weights,
                "weight_compression": self.weight_compression,
                "neurons": self.neurons, "dense_neurons": self.dense_neurons,
                "density": self.density, "compression": self.compression,
                "area_saved": self.area_saved, "tiles_built": self.tiles_built,
                "tiles_total": self.tiles_total,
                "tile": None if self.tile is None else list(self.tile)}


def hardware_counts(network: TrainedCrossbarNetwork, dense: NetworkSpec,
                    kept_neurons: Sequence[np.ndarray] | None = None,
                    tile: tuple[int, int] | None = None) -> HardwareCounts:
    """Count what ``network`` builds against the dense network ``dense``.

    Args:
        network: the pruned network.
        dense: its dense original (same inputs and outputs, no masks).
        kept_neurons: per layer, the original indices of the neurons ``network`` kept (dense
            networks that lost neurons); None when no neuron was removed.
        tile: count tiles of this size over the dense layout (dense layers only).
    """
    devices = int(sum(int((g > 0).sum()) for g in network.device_conductances()))
    dense_devices = sum(p.n_devices for p in dense.plans)
    neurons = sum(p.n_columns for p in network.spec.plans)
    dense_neurons = sum(p.n_columns for p in dense.plans)
    masks = network.spec.masks or (None,) * len(network.spec.plans)
    weights = sum(int(np.prod(p.theta_shape)) if m is None or m.theta is None else int(m.theta.sum())
                  for p, m in zip(network.spec.plans, masks))
    dense_weights = sum(int(np.prod(p.theta_shape)) for p in dense.plans)
    built = total = 0
    if tile is not None:
        masks = network.spec.masks or (None,) * len(network.spec.plans)
        for layer, (plan, small, mask) in enumerate(zip(dense.plans, network.spec.plans, masks)):
            present_small = (np.ones(small.theta_shape, dtype=bool) if mask is None
                             or mask.theta is None else mask.theta)
            present = np.zeros(plan.theta_shape, dtype=bool)
            rows = np.arange(plan.channels) if kept_neurons is None else kept_neurons[layer]
            cols = kept_theta_columns(plan, dense.plans[layer - 1].channels if layer else 0,
                                      None if kept_neurons is None or layer == 0
                                      else kept_neurons[layer - 1])
            present[np.ix_(rows, cols)] = present_small
            b, t = tiles_built(plan, present, tile)
            built += b
            total += t
    return HardwareCounts(devices, dense_devices, neurons, dense_neurons, built, total, tile,
                          weights, dense_weights)


@dataclass
class SpiceFigures:
    """SPICE results on a test set (from :func:`memspice.validate.api.validate_network`).

    Attributes:
        accuracy: SPICE accuracy (class = largest last-layer ``outp``).
        model_accuracy: the network's own model on the same images.
        agreement: share of images where SPICE and the model pick the same class.
        rail_power_w: mean static power from the two rails (W).
        input_power_w: mean static power the input drivers deliver (W).
        samples: test images simulated.
        energy_per_inference_j: mean transient energy of one inference period, rails and input
            drivers (J); None without transient samples.
        energy_to_settle_j: the same up to the outputs' settling (J), None if none settled.
        delay_s: mean settling delay (s), None if none settled.
        transient_samples: images simulated in transient mode.
        period_s: the transient's inference period (s).
        outputs: ``(S, classes)`` SPICE output voltages (V), in the order of ``x``.
    """

    accuracy: float
    model_accuracy: float
    agreement: float
    rail_power_w: float
    input_power_w: float
    samples: int
    energy_per_inference_j: float | None = None
    energy_to_settle_j: float | None = None
    delay_s: float | None = None
    transient_samples: int = 0
    period_s: float | None = None
    outputs: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    @property
    def static_power_w(self) -> float:
        """Rails plus input drivers (W)."""
        return self.rail_power_w + self.input_power_w

    def as_dict(self) -> dict[str, Any]:
        return {"spice_accuracy": self.accuracy, "model_accuracy": self.model_accuracy,
                "agreement": self.agreement, "rail_power_w": self.rail_power_w,
                "input_power_w": self.input_power_w, "static_power_w": self.static_power_w,
                "energy_per_inference_j": self.energy_per_inference_j,
                "energy_to_settle_j": self.energy_to_settle_j, "delay_s": self.delay_s,
                "transient_samples": self.transient_samples, "period_s": self.period_s,
                "spice_samples": self.samples}


def predicted_outputs(network: TrainedCrossbarNetwork, x: np.ndarray,
                      batch_size: int = 500) -> np.ndarray:
    """The network's outputs (V) by the evaluator it was trained with (static or coupled;
    a layered network trained load-aware is compared with the coupled one, like in SPICE)."""
    from memspice.train.admm import make_model

    model = make_model(network.calibration, network.spec,
                       evaluator="coupled" if network.evaluator in ("coupled", "load-aware")
                       else "static")
    forward = model.evaluator.forward if network.spec.is_dense else model.forward
    g = list(network.effective_conductances())
    return np.vstack([forward(g, x[s : s + batch_size]).output
                      for s in range(0, len(x), batch_size)])


def spice_measure(network: TrainedCrossbarNetwork, tech: Any, sizing: InverterSizing | None,
                  x: np.ndarray, labels: np.ndarray, batch_size: int = 250, workers: int = 2,
                  transient_samples: int = TRANSIENT_SAMPLES, out_dir: Path | None = None,
                  ngspice: str | None = None, timeout_s: float | None = None) -> SpiceFigures:
    """Validate ``network`` on a test set in ngspice (:func:`~memspice.validate.api.validate_network`,
    batches of ``batch_size`` in ``workers`` processes) and gather the pruning figures.

    Args:
        tech: the MOSFET technology (its rails are the network's).
        sizing: inverter sizing (m); None = the one the calibration records.
        transient_samples: the first images also run in transient mode (energy per inference
            and settling delay; 0 = none).
        out_dir: the validation run directory (default: a temporary one, removed after).
        ngspice: the ngspice executable (default ``$MEMSPICE_NGSPICE``, else ``ngspice``).
        timeout_s: per batch (default 120 s plus 3 s per image of a batch).

    Raises:
        SimFailed: a batch failed (naming the first failure and its run directory).
    """
    from memspice.validate.api import RunSettings, validate_network

    x = np.asarray(x, dtype=np.float64)
    settings = RunSettings(batch_size=batch_size, workers=workers, order="given",
                           transient_samples=min(int(transient_samples), len(x)),
                           force=True, ngspice=ngspice,
                           timeout_s=timeout_s or 120.0 + 3.0 * min(batch_size, len(x)))
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="memspice_prune_") as tmp:
            return _figures(validate_network(network, tech, x, labels, Path(tmp) / "validate",
                                             sizing=sizing, settings=settings, write_files=False))
    return _figures(validate_network(network, tech, x, labels, out_dir, sizing=sizing,
                                     settings=settings, write_files=False))


def _figures(report: Any) -> SpiceFigures:
    if not report.complete:
        first = report.failures[0]
        raise SimFailed(f"validation batch {first.index} failed: {first.message}",
                        run_dir=first.run_dir)
    s = report.summary
    order = np.argsort(report.sample_index)
    tran = s.get("transient") or {}
    return SpiceFigures(
        accuracy=float(s["spice_accuracy"]), model_accuracy=float(s["model_accuracy"]),
        agreement=float(s["agreement"]), rail_power_w=float(np.mean(report.power_w)),
        input_power_w=float(np.mean(report.input_power_w)) if report.input_power_w.size else 0.0,
        samples=int(s["n_samples"]),
        energy_per_inference_j=tran.get("total_energy_j_mean", tran.get("energy_j_mean")),
        energy_to_settle_j=tran.get("total_energy_to_settle_j_mean"),
        delay_s=tran.get("delay_s_mean"), transient_samples=int(tran.get("samples", 0)),
        period_s=tran.get("period_s"), outputs=report.spice[-1].outp[order])
