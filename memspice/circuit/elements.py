"""Circuit elements as frozen, validated values.

Element names carry no SPICE type letter: the emitter adds it (``R``, ``V``, ``M``/``X``…), so a
name can never change an element's kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from memspice.circuit.values import (
    check_element_name,
    check_name,
    check_node,
    check_nonnegative,
    check_number,
    check_numbers,
    check_positive,
)
from memspice.errors import NetlistError


def _nodes(*nodes: str) -> None:
    for node in nodes:
        check_node(node)


@dataclass(frozen=True, slots=True)
class Resistor:
    """Linear resistor; ``resistance_ohm`` > 0 (Ω)."""

    name: str
    n1: str
    n2: str
    resistance_ohm: float

    def __post_init__(self) -> None:
        check_element_name(self.name, "resistor name")
        _nodes(self.n1, self.n2)
        object.__setattr__(self, "resistance_ohm", check_positive(self.resistance_ohm, f"R{self.name} resistance"))

    @classmethod
    def from_conductance(cls, name: str, n1: str, n2: str, conductance_siemens: float) -> Resistor:
        """A resistor of conductance ``conductance_siemens`` (S), which must be > 0."""
        g = check_positive(conductance_siemens, f"R{name} conductance")
        return cls(name, n1, n2, 1.0 / g)


@dataclass(frozen=True, slots=True)
class Capacitor:
    """Linear capacitor; ``capacitance_farad`` > 0 (F)."""

    name: str
    n1: str
    n2: str
    capacitance_farad: float

    def __post_init__(self) -> None:
        check_element_name(self.name, "capacitor name")
        _nodes(self.n1, self.n2)
        object.__setattr__(self, "capacitance_farad", check_positive(self.capacitance_farad, f"C{self.name} capacitance"))


@dataclass(frozen=True, slots=True)
class Pwl:
    """Piecewise-linear waveform: ``times_s`` strictly increasing (s), ``values`` (V)."""

    times_s: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        times = check_numbers(self.times_s, "PWL time")
        if any(t < 0 for t in times):
            times = tuple(check_nonnegative(t, "PWL time") for t in times)
        values = check_numbers(self.values, "PWL value")
        if len(times) != len(values) or len(times) < 1:
            raise NetlistError("PWL needs as many times as values, at least one")
        if any(b <= a for a, b in zip(times[:-1], times[1:])):
            raise NetlistError("PWL times must be strictly increasing")
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "values", values)


@dataclass(frozen=True, slots=True)
class Pulse:
    """``PULSE(v1 v2 delay rise fall width period)``; times in s, levels in V."""

    v1: float
    v2: float
    delay_s: float
    rise_s: float
    fall_s: float
    width_s: float
    period_s: float

    def __post_init__(self) -> None:
        check_number(self.v1, "pulse v1")
        check_number(self.v2, "pulse v2")
        for name in ("delay_s", "rise_s", "fall_s", "width_s", "period_s"):
            check_nonnegative(getattr(self, name), f"pulse {name}")


@dataclass(frozen=True, slots=True)
class Sine:
    """``SIN(offset amplitude frequency)``; V, V, Hz."""

    offset_v: float
    amplitude_v: float
    frequency_hz: float

    def __post_init__(self) -> None:
        check_number(self.offset_v, "sine offset")
        check_number(self.amplitude_v, "sine amplitude")
        check_positive(self.frequency_hz, "sine frequency")


Waveform = Pwl | Pulse | Sine


@dataclass(frozen=True, slots=True)
class VoltageSource:
    """Independent voltage source with a DC value (V) and an optional transient waveform."""

    name: str
    np_: str
    nn: str
    dc_v: float = 0.0
    waveform: Waveform | None = None

    def __post_init__(self) -> None:
        check_element_name(self.name, "voltage source name")
        _nodes(self.np_, self.nn)
        object.__setattr__(self, "dc_v", check_number(self.dc_v, f"V{self.name} value"))


@dataclass(frozen=True, slots=True)
class Vcvs:
    """Voltage-controlled voltage source ``E``: ``v(np,nn) = gain·v(cp,cn)``."""

    name: str
    np_: str
    nn: str
    cp: str
    cn: str
    gain: float

    def __post_init__(self) -> None:
        check_element_name(self.name, "VCVS name")
        _nodes(self.np_, self.nn, self.cp, self.cn)
        object.__setattr__(self, "gain", check_number(self.gain, f"E{self.name} gain"))


@dataclass(frozen=True, slots=True)
class PwlOfVoltage:
    """Behavioural source ``v(np,nn) = pwl(v(control), x0, y0, x1, y1, …)``.

    Used to drive many samples from one DC sweep of an index source. ``xs`` must increase.
    """

    name: str
    np_: str
    nn: str
    control: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __post_init__(self) -> None:
        check_element_name(self.name, "B-source name")
        _nodes(self.np_, self.nn, self.control)
        xs = check_numbers(self.xs, "PWL abscissa")
        ys = check_numbers(self.ys, "PWL value")
        if len(xs) != len(ys) or len(xs) < 1:
            raise NetlistError("PWL source needs as many abscissae as values, at least one")
        if any(b <= a for a, b in zip(xs[:-1], xs[1:])):
            raise NetlistError("PWL abscissae must be strictly increasing")
        object.__setattr__(self, "xs", xs)
        object.__setattr__(self, "ys", ys)


def _params(params: tuple[tuple[str, float], ...], owner: str) -> tuple[tuple[str, float], ...]:
    return tuple((check_name(k, f"{owner} parameter"), check_number(v, f"{owner} parameter {k}")) for k, v in params)


@dataclass(frozen=True, slots=True)
class Transistor:
    """A MOSFET: a primitive ``M`` line or a subcircuit device ``X`` (as sky130 ships them).

    ``params`` are emitted as given (e.g. ``w``/``l`` already in the technology's unit).
    """

    name: str
    drain: str
    gate: str
    source: str
    bulk: str
    model: str
    params: tuple[tuple[str, float], ...] = ()
    as_subckt: bool = False

    def __post_init__(self) -> None:
        check_element_name(self.name, "transistor name")
        _nodes(self.drain, self.gate, self.source, self.bulk)
        check_name(self.model, "transistor model")
        object.__setattr__(self, "params", _params(tuple(self.params), f"M{self.name}"))


@dataclass(frozen=True, slots=True)
class SubcktInstance:
    """Instance ``X`` of a subcircuit with ports ``nodes`` and numeric ``params``."""

    name: str
    nodes: tuple[str, ...]
    subckt: str
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        check_element_name(self.name, "instance name")
        _nodes(*self.nodes)
        check_name(self.subckt, "subcircuit name")
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "params", _params(tuple(self.params), f"X{self.name}"))


Element = Resistor | Capacitor | VoltageSource | Vcvs | PwlOfVoltage | Transistor | SubcktInstance
