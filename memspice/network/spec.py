"""A network as an ordered list of layers, with shape inference, crossbar plans and a size check.

:class:`NetworkSpec` is the one description every stage reads. Building it infers every
layer's shapes from the input shape and refuses what cannot be built, naming the layer by
index and kind. Its crossbar layers (``Dense``, ``Conv2d``) become :class:`CrossbarPlan`\\ s:
the numbers a trainer, an evaluator or a netlist builder needs (taps, θ shape, physical
columns, devices per column). Pooling layers are folded into the next crossbar layer (see
:mod:`memspice.network.wiring` for the realization), so a plan also lists the pools in front
of it. The per-device wiring arrays themselves are built on demand by
:func:`memspice.network.wiring.crossbar_wiring`, after :meth:`NetworkSpec.estimate` has
said the network fits in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memspice.network.layers import (
    CROSSBAR_KINDS,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    NetworkError,
    Shape,
    layer_from_dict,
    layer_to_dict,
)

#: Default memory budget for :meth:`NetworkSpec.check_size` (bytes).
DEFAULT_MEMORY_LIMIT_BYTES = 4 * 2**30
_FLOAT = 8  # bytes per float64
#: Bytes the wiring arrays hold per physical device: source index, θ index, scale, conductance.
WIRING_BYTES_PER_DEVICE = 4 * 8


def _prod(shape: Shape) -> int:
    return math.prod(shape)


def _show(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


@dataclass(frozen=True, slots=True)
class CrossbarPlan:
    """One crossbar layer in numbers.

    Attributes:
        index: position of the layer in :attr:`NetworkSpec.layers`.
        crossbar: position among the crossbar layers (0 = first, driven by the inputs).
        layer: the ``Dense`` or ``Conv2d`` description.
        source_shape: shape of what drives the rows: the network input for the first
            crossbar layer, the previous crossbar layer's output otherwise.
        pools: average pools between the sources and this layer, in order (folded).
        pooled_shape: ``source_shape`` after the pools (before any flatten).
        input_shape: what the layer sees (``pooled_shape``, flattened for a dense layer).
        output_shape: the layer's output shape: ``(units,)`` or ``(C_out, H_out, W_out)``.
    """

    index: int
    crossbar: int
    layer: Dense | Conv2d
    source_shape: Shape
    pools: tuple[AvgPool2d, ...]
    pooled_shape: Shape
    input_shape: Shape
    output_shape: Shape

    @property
    def kind(self) -> str:
        """``"dense"`` or ``"conv2d"``."""
        return self.layer.kind

    @property
    def n_sources(self) -> int:
        """Units driving the rows (network inputs or previous neurons)."""
        return _prod(self.source_shape)

    @property
    def fold(self) -> int:
        """Devices per logical tap: ``Π size²`` of the folded pools (1 without pooling)."""
        return math.prod(p.size * p.size for p in self.pools)

    @property
    def taps(self) -> int:
        """Logical inputs of one column ``K``: ``N`` for dense, ``kernel²·C_in`` for conv."""
        if isinstance(self.layer, Conv2d):
            return self.layer.taps(self.input_shape)
        return _prod(self.input_shape)

    @property
    def channels(self) -> int:
        """Distinct columns of θ: ``units`` (dense) or ``out_channels`` (conv)."""
        return self.output_shape[0]

    @property
    def theta_shape(self) -> tuple[int, int]:
        """Trainable θ of the layer: ``(channels, 2K + 2)`` in wiring order
        ``[ip taps, in taps, bias_p, bias_n]`` (conv taps in ``(c_in, row, col)`` order)."""
        return (self.channels, 2 * self.taps + 2)

    @property
    def positions(self) -> int:
        """Output positions sharing one θ row: ``H_out·W_out`` (1 for dense)."""
        return _prod(self.output_shape[1:])

    @property
    def n_columns(self) -> int:
        """Physical columns (neurons), ordered like the flat output ``(c, row, col)``."""
        return _prod(self.output_shape)

    @property
    def devices_per_column(self) -> int:
        """``2·K·fold + 2``: every tap's ip and in devices, each split over the pool windows,
        plus the two bias devices."""
        return 2 * self.taps * self.fold + 2

    @property
    def n_devices(self) -> int:
        """Physical devices of the layer (kernels replicated per position)."""
        return self.n_columns * self.devices_per_column


class CrossbarMask:
    """Devices left out of one crossbar layer (structured sparsity, pruning, faults).

    A masked device is *absent*: no element in the netlist, no term in its column's
    normalization, no load on its row's driver. ``False`` means absent.

    Attributes:
        theta: ``(channels, 2K + 2)`` bool or None: per trainable θ, so shared by every
            position of a conv layer (kernel, kernel-row and input-row masks).
        device: ``(n_columns, devices_per_column)`` bool or None: per physical device (column
            and tile masks, per-position faults).
    """

    __slots__ = ("theta", "device")

    def __init__(self, theta: np.ndarray | None = None, device: np.ndarray | None = None) -> None:
        for name, value in (("theta", theta), ("device", device)):
            if value is not None:
                array = np.asarray(value)
                if array.dtype != np.bool_ or array.ndim != 2:
                    raise NetworkError(f"a {name} mask must be a 2-D boolean array, got "
                                       f"{array.dtype} of shape {array.shape}")
                array = array.copy()
                array.flags.writeable = False
                value = array
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("CrossbarMask is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CrossbarMask):
            return NotImplemented
        return all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in ((self.theta, other.theta), (self.device, other.device))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shapes = {n: (None if getattr(self, n) is None else getattr(self, n).shape)
                  for n in ("theta", "device")}
        return f"CrossbarMask(theta={shapes['theta']}, device={shapes['device']})"


@dataclass(frozen=True, slots=True)
class SizeEstimate:
    """What a network will allocate, estimated from shapes alone (nothing is built).

    Attributes:
        devices: physical devices (memristors) over all crossbar layers.
        columns: physical columns (neurons).
        thetas: trainable parameters.
        batch_size: samples per batch the byte figures assume.
        wiring_bytes: the per-device wiring arrays (:data:`WIRING_BYTES_PER_DEVICE` each).
        training_bytes: one training step: im2col rows, their gradients and activations.
        validation_bytes: a per-device evaluation of one batch: the wiring plus every
            device's row voltage and current.
    """

    devices: int
    columns: int
    thetas: int
    batch_size: int
    wiring_bytes: int
    training_bytes: int
    validation_bytes: int

    @property
    def peak_bytes(self) -> int:
        """The larger of the training and validation figures (bytes)."""
        return max(self.training_bytes, self.validation_bytes)

    def describe(self) -> str:
        """One line: devices, columns, and the peak memory in GB."""
        return (f"{self.devices:,} devices in {self.columns:,} columns, "
                f"≈ {self.peak_bytes / 1e9:.2f} GB for a batch of {self.batch_size}")


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """An ordered list of layers on an input of a given shape.

    Attributes:
        input_shape: ``(C, H, W)`` for images or ``(N,)`` for vectors.
        layers: the layers in order.
        masks: per crossbar layer, a :class:`CrossbarMask` or None; empty means no masks.
        plans: (derived) one :class:`CrossbarPlan` per crossbar layer.
        shapes: (derived) the input shape followed by every layer's output shape.

    Raises:
        NetworkError: a layer that does not fit its input (naming its index and kind), no
            crossbar layer, a pool with no crossbar layer after it, an output that is not a
            vector, or masks of the wrong shape.
    """

    input_shape: Shape
    layers: tuple[Layer, ...]
    masks: tuple[CrossbarMask | None, ...] = ()
    plans: tuple[CrossbarPlan, ...] = field(init=False, repr=False, compare=False)
    shapes: tuple[Shape, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if len(shape) not in (1, 3) or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape
        ):
            raise NetworkError(f"network input shape must be (C, H, W) or (N,) of positive "
                               f"integers, got {self.input_shape!r}")
        shape = tuple(int(s) for s in shape)
        object.__setattr__(self, "input_shape", shape)
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        shapes: list[Shape] = [shape]
        plans: list[CrossbarPlan] = []
        source_shape, pools, pooled = shape, [], shape
        for index, layer in enumerate(layers):
            if not isinstance(layer, (Dense, Conv2d, AvgPool2d, Flatten)):
                raise NetworkError(f"network layer {index} is not a layer description: {layer!r}")
            try:
                out = layer.output_shape(shape)
            except NetworkError as exc:
                message = str(exc)
                if message.startswith(layer.kind):
                    message = message[len(layer.kind):].lstrip(": ")
                raise NetworkError(f"network layer {index} ({layer.kind}): {message}") from None
            if isinstance(layer, AvgPool2d):
                pools.append(layer)
                pooled = out
            elif isinstance(layer, CROSSBAR_KINDS):
                plans.append(CrossbarPlan(index, len(plans), layer, source_shape, tuple(pools),
                                          pooled, shape, out))
                source_shape, pools, pooled = out, [], out
            shapes.append(out)
            shape = out
        if not plans:
            raise NetworkError("a network needs at least one dense or conv2d layer")
        if pools:
            last = max(i for i, layer in enumerate(layers) if isinstance(layer, AvgPool2d))
            raise NetworkError(
                f"network layer {last} (avgpool2d): a pool is folded into the next crossbar "
                f"layer's rows, and no dense or conv2d layer follows it"
            )
        if len(shape) != 1:
            raise NetworkError(f"the network output must be a vector, not a {shape} map; "
                               f"end with a dense or flatten layer")
        object.__setattr__(self, "plans", tuple(plans))
        object.__setattr__(self, "shapes", tuple(shapes))
        self._check_masks()

    def _check_masks(self) -> None:
        masks = tuple(self.masks)
        object.__setattr__(self, "masks", masks)
        if not masks:
            return
        if len(masks) != len(self.plans):
            raise NetworkError(f"{len(masks)} masks for {len(self.plans)} crossbar layers")
        for plan, mask in zip(self.plans, masks):
            if mask is None:
                continue
            where = f"network layer {plan.index} ({plan.kind})"
            if not isinstance(mask, CrossbarMask):
                raise NetworkError(f"{where}: mask must be a CrossbarMask, got {type(mask).__name__}")
            if mask.theta is not None:
                if mask.theta.shape != plan.theta_shape:
                    raise NetworkError(f"{where}: θ mask has shape {mask.theta.shape}, "
                                       f"expected {plan.theta_shape}")
                if not mask.theta.any(axis=1).all():
                    raise NetworkError(f"{where}: θ mask leaves a column with no device")
            if mask.device is not None:
                want = (plan.n_columns, plan.devices_per_column)
                if mask.device.shape != want:
                    raise NetworkError(f"{where}: device mask has shape {mask.device.shape}, "
                                       f"expected {want}")
                if not mask.device.any(axis=1).all():
                    raise NetworkError(f"{where}: device mask leaves a column with no device")

    # ---- constructors ------------------------------------------------------------------

    @classmethod
    def dense(cls, topology: tuple[int, ...] | list[int]) -> NetworkSpec:
        """The dense network ``(n_inputs, hidden…, n_outputs)`` of today's topologies."""
        sizes = tuple(topology)
        if len(sizes) < 2:
            raise NetworkError(f"a topology needs at least an input and an output size, got {sizes}")
        return cls((sizes[0],), tuple(Dense(u) for u in sizes[1:]))

    @classmethod
    def from_config(cls, table: Any, input_shape: Shape | None = None,
                    where: str = "network") -> NetworkSpec:
        """Build from a parsed TOML ``[network]`` table.

        The table holds ``layers`` (a list of tables, each with ``kind`` and that kind's
        parameters) and optionally ``input_shape``; ``input_shape`` (the dataset's) is used
        when the table has none and must agree with it when it has one.

        Raises:
            NetworkError: an unknown key, an unknown kind, a bad value, or a network that does
                not fit its input.
        """
        if not isinstance(table, dict):
            raise NetworkError(f"[{where}] must be a table, got {table!r}")
        known = ("input_shape", "layers")
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise NetworkError(f"unknown key {where}.{unknown[0]} (known: {', '.join(known)})")
        layers = table.get("layers")
        if not isinstance(layers, list) or not layers:
            raise NetworkError(f"{where}.layers must be a non-empty list of layer tables, got {layers!r}")
        stated = table.get("input_shape")
        if stated is not None:
            if not isinstance(stated, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in stated
            ):
                raise NetworkError(f"{where}.input_shape must be a list of integers, got {stated!r}")
            if input_shape is not None and tuple(stated) != tuple(input_shape):
                raise NetworkError(f"{where}.input_shape {stated} does not match the data's "
                                   f"{list(input_shape)}")
            input_shape = tuple(stated)
        if input_shape is None:
            raise NetworkError(f"{where}.input_shape is needed (no dataset gives it)")
        built = tuple(layer_from_dict(d, f"{where}.layers[{i}]") for i, d in enumerate(layers))
        return cls(tuple(input_shape), built)

    def to_dict(self) -> dict[str, Any]:
        """``{"input_shape": [...], "layers": [{"kind": ...}, ...]}`` (JSON- and TOML-safe;
        masks are arrays and are stored beside it)."""
        return {"input_shape": list(self.input_shape),
                "layers": [layer_to_dict(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: Any) -> NetworkSpec:
        """Inverse of :meth:`to_dict`."""
        return cls.from_config(data)

    def with_masks(self, masks: tuple[CrossbarMask | None, ...]) -> NetworkSpec:
        """The same network with these masks (one per crossbar layer)."""
        return NetworkSpec(self.input_shape, self.layers, tuple(masks))

    # ---- derived facts -----------------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        """Network inputs (pixels × channels), each driving an ip and an in row."""
        return _prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        """Output neurons (classes)."""
        return self.shapes[-1][0]

    @property
    def is_dense(self) -> bool:
        """True for a plain dense network on a vector input (today's topologies)."""
        return len(self.input_shape) == 1 and all(isinstance(l, Dense) for l in self.layers)

    @property
    def topology(self) -> tuple[int, ...] | None:
        """``(n_inputs, units…)`` for a plain dense network, None otherwise."""
        if not self.is_dense:
            return None
        return (self.input_shape[0], *(l.units for l in self.layers))  # type: ignore[union-attr]

    def summary(self) -> str:
        """A plain-text table: every layer's output shape, columns, devices and θ."""
        head = f"{'layer':>5}  {'kind':<9}  {'output':<10}  {'columns':>8}  {'dev/col':>7}  " \
               f"{'devices':>10}  {'theta':>8}"
        lines = [head, f"{'in':>5}  {'input':<9}  {_show(self.input_shape)}"]
        plans = {p.index: p for p in self.plans}
        for index, (layer, shape) in enumerate(zip(self.layers, self.shapes[1:])):
            text = f"{index:>5}  {layer.kind:<9}  {_show(shape):<10}"
            plan = plans.get(index)
            if plan is not None:
                text += (f"  {plan.n_columns:>8,}  {plan.devices_per_column:>7,}  "
                         f"{plan.n_devices:>10,}  {math.prod(plan.theta_shape):>8,}")
            elif isinstance(layer, AvgPool2d):
                text += "  (folded into the next crossbar layer's rows)"
            lines.append(text.rstrip())
        est = self.estimate()
        lines.append(f"total: {est.devices:,} devices, {est.columns:,} columns, "
                     f"{est.thetas:,} trainable θ")
        return "\n".join(lines)

    def estimate(self, batch_size: int = 64) -> SizeEstimate:
        """Devices, columns and bytes, from shapes alone (see :class:`SizeEstimate`)."""
        devices = sum(p.n_devices for p in self.plans)
        columns = sum(p.n_columns for p in self.plans)
        thetas = sum(math.prod(p.theta_shape) for p in self.plans)
        wiring = devices * WIRING_BYTES_PER_DEVICE
        training = 0
        for plan in self.plans:
            rows = batch_size * plan.positions * (2 * plan.taps + 2)
            sources = batch_size * 2 * plan.n_sources
            # rows and their gradient, pooled and source maps with gradients, 6 per neuron.
            training += _FLOAT * (2 * rows + 4 * sources + 6 * batch_size * plan.n_columns)
        validation = wiring + _FLOAT * 2 * batch_size * devices
        return SizeEstimate(devices, columns, thetas, batch_size, wiring, training, validation)

    def check_size(self, batch_size: int = 64,
                   limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES) -> SizeEstimate:
        """Refuse a network whose estimate exceeds ``limit_bytes``.

        Raises:
            NetworkError: naming the estimate and the limit.
        """
        est = self.estimate(batch_size)
        if est.peak_bytes > limit_bytes:
            raise NetworkError(f"network too large: {est.describe()}, over the "
                               f"{limit_bytes / 1e9:.2f} GB limit; use fewer kernels, a larger "
                               f"stride or pooling, or a smaller batch")
        return est
