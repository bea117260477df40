"""Decks, subcircuits, analyses and model includes as frozen values.

Analyses are data (``Op``, ``Dc``, ``Tran``); how a deck is run (backend, directory, timeout)
lives in :class:`memspice.sim.SimOptions`, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memspice.circuit.elements import (
    Capacitor,
    Element,
    PwlOfVoltage,
    Resistor,
    SubcktInstance,
    Transistor,
    Vcvs,
    VoltageSource,
)
from memspice.circuit.values import (
    check_deck_text,
    check_name,
    check_node,
    check_number,
    check_positive,
)
from memspice.errors import NetlistError

_TITLE = re.compile(r"[A-Za-z0-9 _.,:()+=/-]{0,120}")
_RELPATH = re.compile(r"[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*(/[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*)*")
#: ngspice options a deck may set (closed set: nothing else reaches ``.options``).
ALLOWED_OPTIONS = frozenset(
    {"reltol", "abstol", "vntol", "gmin", "itl1", "itl2", "itl4", "temp", "tnom", "rshunt", "method", "maxord", "bypass"}
)
#: Interpreter settings a deck may require (written to ``.spiceinit`` by the simulator layer).
ALLOWED_SETTINGS = frozenset({"ngbehavior", "ng_nomodcheck", "num_threads", "acct"})
_SETTING_VALUE = re.compile(r"[A-Za-z0-9_]{0,16}")


# ---- analyses ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Op:
    """DC operating point."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """One DC sweep of an independent source ``source`` (the element name, without ``V``)."""

    source: str
    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        check_name(self.source, "swept source")
        check_number(self.start, "sweep start")
        check_number(self.stop, "sweep stop")
        step = check_number(self.step, "sweep step")
        if step == 0 or (self.stop - self.start) * step < 0:
            raise NetlistError(
                f"sweep step {self.step} cannot go from {self.start} to {self.stop}"
            )


@dataclass(frozen=True, slots=True)
class Dc:
    """DC sweep; ``inner`` varies fastest, ``outer`` (optional) is the nested sweep."""

    inner: Sweep
    outer: Sweep | None = None


@dataclass(frozen=True, slots=True)
class Tran:
    """Transient analysis (s). ``uic`` skips the initial operating point."""

    step_s: float
    stop_s: float
    start_s: float = 0.0
    max_step_s: float | None = None
    uic: bool = False

    def __post_init__(self) -> None:
        check_positive(self.step_s, "tran step")
        stop = check_positive(self.stop_s, "tran stop")
        start = check_number(self.start_s, "tran start")
        if not 0 <= start < stop:
            raise NetlistError(f"tran start {start} must be in [0, stop={stop})")
        if self.max_step_s is not None:
            check_positive(self.max_step_s, "tran max step")


Analysis = Op | Dc | Tran


# ---- model files ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Include:
    """A model file under a named model root: ``.include "<root>/<relpath>"``.

    With ``section`` set it is ``.lib "<root>/<relpath>" <section>``. Model roots are
    directories the simulator layer links into each run directory under their alias, so decks
    never contain absolute paths and stay byte-identical across machines.
    """

    root: str
    relpath: str
    section: str | None = None

    def __post_init__(self) -> None:
        check_deck_text(check_name(self.root, "model root alias"), "model root alias")
        check_deck_text(self.relpath, "model file path")
        if not _RELPATH.fullmatch(self.relpath):
            raise NetlistError(f"model file path {self.relpath!r} must be a plain relative path")
        if any(part in ("..", ".") for part in self.relpath.split("/")):
            raise NetlistError(f"model file path {self.relpath!r} must not contain '.' or '..'")
        if self.section is not None:
            check_deck_text(check_name(self.section, "library section"), "library section")


@dataclass(frozen=True, slots=True)
class ModelRoot:
    """Where a model root alias points on this machine (absolute directory; never emitted)."""

    alias: str
    directory: str

    def __post_init__(self) -> None:
        check_deck_text(check_name(self.alias, "model root alias"), "model root alias")


#: Elements whose branch current a :class:`Save` can keep.
SAVED_CURRENT_SOURCES = ("v", "b", "e")


@dataclass(frozen=True, slots=True)
class Save:
    """A vector to keep: ``kind='v'`` for a node voltage, ``'i'`` for a source's branch current.

    ``source`` is the letter of the element whose current is kept: ``v`` (independent voltage
    source, the default), ``b`` (behavioural voltage source) or ``e`` (VCVS); ngspice names the
    vector ``i(<letter><name>)``.
    """

    kind: str
    name: str
    source: str = "v"

    def __post_init__(self) -> None:
        if self.kind == "v":
            check_node(self.name)
        elif self.kind == "i":
            check_name(self.name, "saved source")
        else:
            raise NetlistError(f"save kind must be 'v' or 'i', got {self.kind!r}")
        if self.source not in SAVED_CURRENT_SOURCES:
            raise NetlistError(f"currents can be saved for elements {SAVED_CURRENT_SOURCES}, got {self.source!r}")

    @property
    def vector(self) -> str:
        """The name of the vector in ngspice's output (``v(node)`` or ``i(vname)``)."""
        return f"v({self.name})" if self.kind == "v" else f"i({self.source}{self.name})"


# ---- subcircuits and decks -----------------------------------------------------------------

def _check_unique(elements: tuple[Element, ...], where: str) -> None:
    seen: set[str] = set()
    for element in elements:
        key = f"{element_letter(element)}{element.name}".lower()
        if key in seen:
            raise NetlistError(f"duplicate element {key!r} in {where}")
        seen.add(key)


def element_letter(element: Element) -> str:
    """The SPICE type letter the emitter puts before an element's name."""
    if isinstance(element, Resistor):
        return "R"
    if isinstance(element, Capacitor):
        return "C"
    if isinstance(element, VoltageSource):
        return "V"
    if isinstance(element, Vcvs):
        return "E"
    if isinstance(element, PwlOfVoltage):
        return "B"
    if isinstance(element, Transistor):
        return "X" if element.as_subckt else "M"
    if isinstance(element, SubcktInstance):
        return "X"
    raise NetlistError(f"unknown element type {type(element).__name__}")


@dataclass(frozen=True, slots=True)
class Subckt:
    """``.subckt name ports… params`` with its elements."""

    name: str
    ports: tuple[str, ...]
    elements: tuple[Element, ...]

    def __post_init__(self) -> None:
        check_name(self.name, "subcircuit name")
        for port in self.ports:
            check_node(port)
        object.__setattr__(self, "ports", tuple(self.ports))
        object.__setattr__(self, "elements", tuple(self.elements))
        if len({p.lower() for p in self.ports}) != len(self.ports):
            raise NetlistError(f"subcircuit {self.name} has duplicate ports")
        _check_unique(self.elements, f"subcircuit {self.name}")


@dataclass(frozen=True, slots=True)
class Deck:
    """A complete, simulatable circuit description.

    Attributes:
        title: first line of the deck (restricted character set).
        elements: top-level elements.
        subckts: subcircuit definitions.
        includes: model files (relative to model roots).
        model_roots: where the roots point on this machine (not emitted).
        settings: interpreter settings the models need (``ngbehavior=hsa`` for sky130).
        params: global ``.param`` values the models read (e.g. sky130's ``mc_mm_switch``).
        options: ``.options`` from :data:`ALLOWED_OPTIONS`.
        temperature_c: circuit temperature (°C), ``None`` for ngspice's default 27 °C.
        analyses: analyses to run, in order.
        saves: vectors to keep; empty keeps everything.
    """

    title: str
    elements: tuple[Element, ...]
    subckts: tuple[Subckt, ...] = ()
    includes: tuple[Include, ...] = ()
    model_roots: tuple[ModelRoot, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, float], ...] = ()
    options: tuple[tuple[str, float], ...] = ()
    temperature_c: float | None = None
    analyses: tuple[Analysis, ...] = ()
    saves: tuple[Save, ...] = ()

    def __post_init__(self) -> None:
        check_deck_text(self.title, "deck title", spaces=True)
        if not _TITLE.fullmatch(self.title):
            raise NetlistError(f"deck title {self.title!r} has characters outside [A-Za-z0-9 _.,:()+=/-]")
        for name in ("elements", "subckts", "includes", "model_roots", "settings", "params", "options", "analyses", "saves"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_unique(self.elements, "the deck")
        if len({s.name.lower() for s in self.subckts}) != len(self.subckts):
            raise NetlistError("duplicate subcircuit names in the deck")
        for key, value in self.settings:
            if key not in ALLOWED_SETTINGS or not isinstance(value, str) or not _SETTING_VALUE.fullmatch(value):
                raise NetlistError(f"setting {key}={value!r} is not allowed")
        for key, value in self.params:
            check_name(key, "parameter name")
            check_number(value, f"parameter {key}")
        for key, value in self.options:
            if key not in ALLOWED_OPTIONS:
                raise NetlistError(f"option {key!r} is not one memspice emits ({sorted(ALLOWED_OPTIONS)})")
            check_number(value, f"option {key}")
        if self.temperature_c is not None:
            check_number(self.temperature_c, "temperature")
        for analysis in self.analyses:
            if not isinstance(analysis, (Op, Dc, Tran)):
                raise NetlistError(f"unknown analysis {analysis!r}")
        roots = {r.alias for r in self.model_roots}
        for inc in self.includes:
            if inc.root not in roots:
                raise NetlistError(f"include {inc.relpath!r} names model root {inc.root!r}, which the deck does not define")
