"""The one source of truth for how a PHAX network is wired.

Both the netlist builders (:mod:`memspice.circuit.builders`) and the NumPy trainer
(:mod:`memspice.train`) use these conventions, so a conductance matrix means the same thing in
a deck and in the model.

A layer with ``N`` inputs and ``M`` neurons has a conductance matrix ``G`` of shape
``(M, 2N + 2)`` in siemens. Its rows (crossbar rows = matrix *columns*) are ordered in blocks::

    [ip_0 … ip_{N-1},  in_0 … in_{N-1},  bias_p (VDD),  bias_n (VSS)]

For the first layer ``ip_i`` is driven at ``+x_i`` and ``in_i`` at ``-x_i``. For later layers
``ip_i ← outp_i`` and ``in_i ← outn_i`` of the previous layer's neuron ``i``. Each neuron is two
cascaded inverters: column → inverter 1 → ``outn`` → inverter 2 → ``outp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.errors import ConfigError

#: Supply node names shared by all builders.
VDD_NODE = "vdd"
VSS_NODE = "vss"


@dataclass(frozen=True, slots=True)
class Rails:
    """Supply rails.

    Attributes:
        vdd: positive rail (V).
        vss: negative rail (V), below ``vdd``.
    """

    vdd: float = 0.25
    vss: float = -0.25

    def __post_init__(self) -> None:
        import math

        for name in ("vdd", "vss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number of volts, got {value!r}")
        if self.vdd <= self.vss:
            raise ConfigError(f"vdd ({self.vdd} V) must be above vss ({self.vss} V)")

    @property
    def mid(self) -> float:
        """Mid-rail voltage (V)."""
        return 0.5 * (self.vdd + self.vss)

    @property
    def half_swing(self) -> float:
        """Half the supply (V)."""
        return 0.5 * (self.vdd - self.vss)


@dataclass(frozen=True, slots=True)
class LayerShape:
    """Sizes of one crossbar layer.

    Attributes:
        n_inputs: number of differential inputs ``N`` (each uses two rows).
        n_outputs: number of neuron columns ``M``.
    """

    n_inputs: int
    n_outputs: int

    def __post_init__(self) -> None:
        for name in ("n_inputs", "n_outputs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"layer {name} must be a positive integer, got {value!r}")

    @property
    def n_rows(self) -> int:
        """Crossbar rows including the two bias rows: ``2N + 2``."""
        return 2 * self.n_inputs + 2

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """Shape of the conductance matrix ``(M, 2N + 2)``."""
        return (self.n_outputs, self.n_rows)


def layer_shapes(topology: tuple[int, ...] | list[int]) -> tuple[LayerShape, ...]:
    """Split a topology such as ``(64, 32, 10)`` into layer shapes.

    Raises:
        ConfigError: fewer than two sizes or a size below one.
    """
    sizes = tuple(topology)
    if len(sizes) < 2:
        raise ConfigError(f"a topology needs at least an input and an output size, got {sizes}")
    for size in sizes:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"every layer needs at least one unit, got topology {sizes}")
    return tuple(LayerShape(int(a), int(b)) for a, b in zip(sizes[:-1], sizes[1:]))


def row_voltages(v_pos: np.ndarray, v_neg: np.ndarray, vdd: float, vss: float) -> np.ndarray:
    """Stack the voltages seen by a layer's crossbar rows, in wiring order.

    Args:
        v_pos: ``(batch, N)`` voltages on the ``ip`` rows (V).
        v_neg: ``(batch, N)`` voltages on the ``in`` rows (V).
        vdd: positive rail (V), drives the ``bias_p`` row.
        vss: negative rail (V), drives the ``bias_n`` row.

    Returns:
        ``(batch, 2N + 2)`` row voltages (V).
    """
    batch = v_pos.shape[0]
    bias = np.empty((batch, 2), dtype=np.result_type(v_pos, np.float64))
    bias[:, 0] = vdd
    bias[:, 1] = vss
    return np.concatenate([v_pos, v_neg, bias], axis=1)


def input_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Differential drive of the first layer: ``ip_i = +x_i``, ``in_i = -x_i``."""
    return x, -x


# ---- node names (readable, deterministic) -------------------------------------------------

def input_node(i: int, polarity: str) -> str:
    """Node of network input ``i``: ``xp{i}`` (+x) or ``xn{i}`` (−x)."""
    return f"x{_pol(polarity)}{i}"


def column_node(layer: int, j: int) -> str:
    """Column (summing) node of neuron ``j`` in layer ``layer``."""
    return f"l{layer}c{j}"


def output_node(layer: int, j: int, polarity: str) -> str:
    """Neuron output: ``'n'`` → after inverter 1 (``outn``), ``'p'`` → after inverter 2."""
    return f"l{layer}o{_pol(polarity)}{j}"


def row_nodes(layer: int, n_inputs: int) -> tuple[str, ...]:
    """Nodes driving the ``2N + 2`` rows of ``layer`` in wiring order."""
    if layer == 0:
        pos = [input_node(i, "p") for i in range(n_inputs)]
        neg = [input_node(i, "n") for i in range(n_inputs)]
    else:
        pos = [output_node(layer - 1, i, "p") for i in range(n_inputs)]
        neg = [output_node(layer - 1, i, "n") for i in range(n_inputs)]
    return (*pos, *neg, VDD_NODE, VSS_NODE)


def _pol(polarity: str) -> str:
    if polarity not in ("p", "n"):
        raise ConfigError(f"polarity must be 'p' or 'n', got {polarity!r}")
    return polarity
