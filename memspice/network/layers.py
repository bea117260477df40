"""Layer descriptions: ``Dense``, ``Conv2d``, ``AvgPool2d`` and ``Flatten`` as frozen values.

A layer knows its own parameters and how it maps an input shape to an output shape. Shapes
are ``(C, H, W)`` for feature maps and ``(N,)`` for vectors; activations are stored flat in
C order (channel, row, column), so :class:`Flatten` changes only the shape, never the data.
``Dense`` and ``Conv2d`` are *crossbar* layers (they own devices and neurons); ``AvgPool2d``
is folded into the next crossbar layer's rows and ``Flatten`` is wiring only (see
:mod:`memspice.network.spec`).

Parameter checks raise :class:`NetworkError` naming the layer kind; a
:class:`~memspice.network.spec.NetworkSpec` adds the layer's index.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Literal, get_args

from memspice.errors import ConfigError

Shape = tuple[int, ...]
LayerKind = Literal["dense", "conv2d", "avgpool2d", "flatten"]
LAYER_KINDS: tuple[str, ...] = get_args(LayerKind)


class NetworkError(ConfigError):
    """A network description that cannot be built (shapes, parameters, size)."""


def _positive_int(kind: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise NetworkError(f"{kind}: {name} must be {what}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Dense:
    """Fully connected crossbar layer: every column sees every input (and the two bias rows).

    Attributes:
        units: number of neurons (physical columns).
    """

    units: int
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        _positive_int(self.kind, "units", self.units)

    def output_shape(self, input_shape: Shape) -> Shape:
        """``(units,)``; the input must be a vector."""
        if len(input_shape) != 1:
            raise NetworkError(
                f"dense needs a vector input but gets a {_show(input_shape)} feature map; "
                f"put a flatten layer before it"
            )
        return (self.units,)


@dataclass(frozen=True, slots=True)
class Conv2d:
    """Convolutional crossbar layer with square ``kernel × kernel`` kernels.

    Every output position is its own physical column carrying a copy of its channel's kernel
    (``2(kernel²·C_in + 1)`` devices); the trainer shares θ across positions.

    Attributes:
        out_channels: number of kernels ``C_out``.
        kernel: kernel side ``k`` (pixels).
        stride: step between windows (pixels); output sides are ``(H + 2p − k) // stride + 1``.
        padding: zero padding on every side (pixels); a padded tap is a row held at 0 V.
        in_channels: optional check: the channels this layer expects (None = inferred).
    """

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    in_channels: int | None = None
    kind: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        _positive_int(self.kind, "out_channels", self.out_channels)
        _positive_int(self.kind, "kernel", self.kernel)
        _positive_int(self.kind, "stride", self.stride)
        _positive_int(self.kind, "padding", self.padding, minimum=0)
        if self.in_channels is not None:
            _positive_int(self.kind, "in_channels", self.in_channels)

    def output_shape(self, input_shape: Shape) -> Shape:
        """``(C_out, H_out, W_out)``."""
        if len(input_shape) != 3:
            raise NetworkError(
                f"conv2d needs a (C, H, W) feature map but gets a vector of {input_shape[0]}"
            )
        channels, height, width = input_shape
        if self.in_channels is not None and self.in_channels != channels:
            raise NetworkError(
                f"conv2d expects {self.in_channels} input channels but the layer before "
                f"gives {channels}"
            )
        side = min(height, width) + 2 * self.padding
        if self.kernel > side:
            raise NetworkError(
                f"conv2d kernel {self.kernel}x{self.kernel} is larger than its padded input "
                f"{height + 2 * self.padding}x{width + 2 * self.padding}"
            )
        h_out = (height + 2 * self.padding - self.kernel) // self.stride + 1
        w_out = (width + 2 * self.padding - self.kernel) // self.stride + 1
        return (self.out_channels, h_out, w_out)

    def taps(self, input_shape: Shape) -> int:
        """Inputs of one window, ``kernel²·C_in`` (each has an ip and an in device)."""
        return self.kernel * self.kernel * input_shape[0]


@dataclass(frozen=True, slots=True)
class AvgPool2d:
    """Average pooling over ``size × size`` windows, folded into the next crossbar layer.

    Attributes:
        size: window side (pixels).
        stride: step between windows (pixels); None means ``size`` (non-overlapping). The
            windows must tile the input exactly (no row or column left over).
    """

    size: int
    stride: int | None = None
    kind: ClassVar[str] = "avgpool2d"

    def __post_init__(self) -> None:
        _positive_int(self.kind, "size", self.size)
        if self.stride is not None:
            _positive_int(self.kind, "stride", self.stride)

    @property
    def step(self) -> int:
        """The stride actually used (pixels)."""
        return self.size if self.stride is None else self.stride

    def output_shape(self, input_shape: Shape) -> Shape:
        """``(C, H_out, W_out)``; refuses windows that do not tile the input."""
        if len(input_shape) != 3:
            raise NetworkError(
                f"avgpool2d needs a (C, H, W) feature map but gets a vector of {input_shape[0]}"
            )
        channels, height, width = input_shape
        sides = []
        for side in (height, width):
            if self.size > side or (side - self.size) % self.step:
                raise NetworkError(
                    f"avgpool2d window {self.size} with stride {self.step} does not fit a "
                    f"{height}x{width} input (windows must tile it exactly)"
                )
            sides.append((side - self.size) // self.step + 1)
        return (channels, sides[0], sides[1])


@dataclass(frozen=True, slots=True)
class Flatten:
    """Reshape a ``(C, H, W)`` map to a vector of ``C·H·W`` (C order); wiring only."""

    kind: ClassVar[str] = "flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        """``(C·H·W,)``; a vector passes unchanged."""
        size = 1
        for side in input_shape:
            size *= side
        return (size,)


Layer = Dense | Conv2d | AvgPool2d | Flatten
CROSSBAR_KINDS = (Dense, Conv2d)
_BY_KIND: dict[str, type] = {cls.kind: cls for cls in (Dense, Conv2d, AvgPool2d, Flatten)}


def _show(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """``{"kind": …, <parameters>}``, omitting parameters left at None (TOML has no null)."""
    out: dict[str, Any] = {"kind": layer.kind}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if value is not None:
            out[f.name] = value
    return out


def layer_from_dict(data: Any, where: str) -> Layer:
    """Build one layer from a table such as ``{kind = "conv2d", out_channels = 4, kernel = 3}``.

    Args:
        data: the parsed table.
        where: how to name it in errors, e.g. ``"network.layers[2]"``.

    Raises:
        NetworkError: not a table, an unknown kind, an unknown or missing key, a bad value.
    """
    if not isinstance(data, dict):
        raise NetworkError(f"{where} must be a table such as {{kind = \"dense\", units = 10}}, got {data!r}")
    kind = data.get("kind")
    if kind not in _BY_KIND:
        raise NetworkError(f"{where}: kind must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
    cls = _BY_KIND[kind]
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names) - {"kind"})
    if unknown:
        raise NetworkError(
            f"{where} ({kind}): unknown key {unknown[0]!r} (known: {', '.join(['kind', *names])})"
        )
    try:
        return cls(**{k: v for k, v in data.items() if k != "kind"})
    except TypeError as exc:
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [n for n in required if n not in data]
        raise NetworkError(f"{where} ({kind}): missing key {missing[0]!r}" if missing
                           else f"{where} ({kind}): {exc}") from None
    except NetworkError as exc:
        raise NetworkError(f"{where} ({kind}): {str(exc).split(': ', 1)[1]}") from None
