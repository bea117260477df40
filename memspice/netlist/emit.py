"""The one place that formats SPICE text.

``emit(deck)`` is pure: identical decks give byte-identical text, with no timestamps, versions
or absolute paths. Every number goes through :func:`fmt`. The deck order (title, settings
comment, params, includes, temperature, options, subcircuits, instances, saves, analyses, ``.end``) is
written here and only here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from memspice.circuit.deck import ALLOWED_SETTINGS, Dc, Deck, Op, Save, Subckt, Tran, element_letter
from memspice.circuit.elements import (
    Capacitor,
    Element,
    Pulse,
    Pwl,
    PwlOfVoltage,
    Resistor,
    Sine,
    SubcktInstance,
    Transistor,
    Vcvs,
    VoltageSource,
)
from memspice.circuit.values import check_number
from memspice.errors import NetlistError

#: Numbers per continuation line for long PWL lists (keeps lines readable).
_PER_LINE = 8


def fmt(value: float) -> str:
    """Format a number for SPICE: shortest text that round-trips the float64 exactly.

    No engineering suffixes are used (ngspice reads ``M`` as milli), so the text is unambiguous.
    """
    return _shortest(check_number(value, "number"))


def _shortest(number: float) -> str:
    if number == 0:
        return "0"
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


def _fmt_checked(numbers: Iterable[float], memo: dict[float, str]) -> list[str]:
    """:func:`fmt` for numbers an element already validated as finite floats (long PWL lists).

    Drive waveforms repeat few distinct values (pixel levels, sample indices), so each
    distinct value is formatted once per deck (``memo``).
    """
    out = []
    for v in numbers:
        text = memo.get(v)
        if text is None:
            text = memo[v] = _shortest(v)
        out.append(text)
    return out


def emit(deck: Deck) -> str:
    """Render ``deck`` as ngspice netlist text (ends with ``.end`` and a newline)."""
    return "\n".join(_deck_lines(deck)) + "\n"


def _deck_lines(deck: Deck) -> Iterator[str]:
    yield deck.title or "memspice deck"
    for key, value in deck.settings:
        # Comment only: the simulator layer writes these to .spiceinit; recorded for readers.
        yield f"* requires: set {key}={value}" if value else f"* requires: set {key}"
    if deck.params:
        yield ".param " + " ".join(f"{k}={fmt(v)}" for k, v in deck.params)
    for inc in deck.includes:
        path = f'"{inc.root}/{inc.relpath}"'
        yield f".lib {path} {inc.section}" if inc.section else f".include {path}"
    if deck.temperature_c is not None:
        yield f".temp {fmt(deck.temperature_c)}"
    if deck.options:
        yield ".options " + " ".join(f"{k}={fmt(v)}" for k, v in deck.options)
    for sub in deck.subckts:
        yield from _subckt_lines(sub)
    memo: dict[float, str] = {}
    for element in deck.elements:
        yield from element_lines(element, memo)
    if deck.saves:
        yield from _wrap(".save", [_save_text(s) for s in deck.saves])
    for analysis in deck.analyses:
        yield _analysis_line(analysis)
    yield ".end"


_REQUIRES = re.compile(r"^\* requires: set ([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?[ \t]*$", re.MULTILINE)


def required_settings(text: str) -> tuple[tuple[str, str], ...]:
    """The interpreter settings a deck says it needs in the ``* requires: set …`` comments
    :func:`emit` writes (the inverse of that part of :func:`emit`; nothing in the deck runs).

    Only settings memspice itself writes are returned; others are ignored.
    """
    found: dict[str, str] = {}
    for key, value in _REQUIRES.findall(text):
        if key in ALLOWED_SETTINGS and key not in found:
            found[key] = value
    return tuple(found.items())


def _subckt_lines(sub: Subckt) -> Iterator[str]:
    yield f".subckt {sub.name} " + " ".join(sub.ports)
    for element in sub.elements:
        yield from element_lines(element)
    yield f".ends {sub.name}"


def _save_text(save: Save) -> str:
    return save.vector


def _params(params: Iterable[tuple[str, float]]) -> str:
    return "".join(f" {k}={fmt(v)}" for k, v in params)


def element_lines(element: Element, memo: dict[float, str] | None = None) -> list[str]:
    """Lines of one element (a long PWL is split into ``+`` continuation lines).

    ``memo`` caches the text of PWL numbers across the elements of one deck.
    """
    memo = {} if memo is None else memo
    name = f"{element_letter(element)}{element.name}"
    if isinstance(element, Resistor):
        return [f"{name} {element.n1} {element.n2} {fmt(element.resistance_ohm)}"]
    if isinstance(element, Capacitor):
        return [f"{name} {element.n1} {element.n2} {fmt(element.capacitance_farad)}"]
    if isinstance(element, VoltageSource):
        head = f"{name} {element.np_} {element.nn} dc {fmt(element.dc_v)}"
        return _waveform_lines(head, element.waveform, memo)
    if isinstance(element, Vcvs):
        return [f"{name} {element.np_} {element.nn} {element.cp} {element.cn} {fmt(element.gain)}"]
    if isinstance(element, PwlOfVoltage):
        numbers = _fmt_checked((v for pair in zip(element.xs, element.ys) for v in pair), memo)
        head = f"{name} {element.np_} {element.nn} v=pwl(v({element.control})"
        return _wrap(head, numbers, sep=", ", close=")", first=", ")
    if isinstance(element, Transistor):
        nodes = f"{element.drain} {element.gate} {element.source} {element.bulk}"
        return [f"{name} {nodes} {element.model}{_params(element.params)}"]
    if isinstance(element, SubcktInstance):
        return [f"{name} {' '.join(element.nodes)} {element.subckt}{_params(element.params)}"]
    raise NetlistError(f"cannot emit element of type {type(element).__name__}")


def _waveform_lines(head: str, waveform: Pwl | Pulse | Sine | None, memo: dict[float, str]) -> list[str]:
    if waveform is None:
        return [head]
    if isinstance(waveform, Pwl):
        numbers = _fmt_checked((v for pair in zip(waveform.times_s, waveform.values) for v in pair), memo)
        return _wrap(head + " pwl(", numbers, close=")", first="")
    if isinstance(waveform, Pulse):
        values = (waveform.v1, waveform.v2, waveform.delay_s, waveform.rise_s, waveform.fall_s,
                  waveform.width_s, waveform.period_s)
        return [head + " pulse(" + " ".join(fmt(v) for v in values) + ")"]
    if isinstance(waveform, Sine):
        values = (waveform.offset_v, waveform.amplitude_v, waveform.frequency_hz)
        return [head + " sin(" + " ".join(fmt(v) for v in values) + ")"]
    raise NetlistError(f"unknown waveform {waveform!r}")


def _wrap(head: str, items: list[str], *, sep: str = " ", close: str = "", first: str = " ") -> list[str]:
    """``head`` then ``items`` joined by ``sep``, :data:`_PER_LINE` per ``+`` continuation line."""
    if not items:
        return [head + close]
    chunks = [items[i : i + _PER_LINE] for i in range(0, len(items), _PER_LINE)]
    lines = [head + first + sep.join(chunks[0])]
    for chunk in chunks[1:]:
        lines[-1] += sep.rstrip()
        lines.append("+ " + sep.join(chunk))
    lines[-1] += close
    return lines


def _analysis_line(analysis: Op | Dc | Tran) -> str:
    if isinstance(analysis, Op):
        return ".op"
    if isinstance(analysis, Dc):
        parts = [".dc"]
        for sweep in (analysis.inner, analysis.outer):
            if sweep is not None:
                parts += [f"v{sweep.source}", fmt(sweep.start), fmt(sweep.stop), fmt(sweep.step)]
        return " ".join(parts)
    if isinstance(analysis, Tran):
        line = f".tran {fmt(analysis.step_s)} {fmt(analysis.stop_s)}"
        if analysis.start_s or analysis.max_step_s is not None:
            line += f" {fmt(analysis.start_s)}"
        if analysis.max_step_s is not None:
            line += f" {fmt(analysis.max_step_s)}"
        if analysis.uic:
            line += " uic"
        return line
    raise NetlistError(f"unknown analysis {analysis!r}")
