"""Validation of every value that may reach a SPICE deck.

Nothing a user types reaches a netlist unchecked: names must match a strict identifier
pattern (so no newline, dot-command, ``shell`` or expression can be smuggled in), numbers must
be finite, and physical quantities must have the right sign.
"""

from __future__ import annotations

import math
import re

import numpy as np

from memspice.errors import NetlistError

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_SUFFIX = re.compile(r"[A-Za-z0-9_]{1,64}")
_NODE = re.compile(r"0|[A-Za-z][A-Za-z0-9_]{0,63}")
#: Words a name may not be, because ngspice gives them meaning in some position.
_RESERVED = frozenset({"shell", "control", "endc", "include", "lib", "end", "gnd"})


#: Characters a path or name may have when memspice writes it into deck text, a ``.spiceinit``
#: line or an ngspice command. Everything else is refused: quotes, whitespace and control
#: characters (a new line or token), ``;`` and ``$`` (comments, variable and command
#: substitution), ``~ * ? [ ] { }`` (expansion), ``< > | &`` (redirection), ``\\``, ``#``, ``!``.
_DECK_WORD = re.compile(r"[A-Za-z0-9_.+,@%=/:-]{1,1024}")
_DECK_LINE = re.compile(r"[A-Za-z0-9_.+,@%=/:() -]{0,1024}")


def check_deck_text(value: object, what: str, *, spaces: bool = False) -> str:
    """Return ``value`` if it can be written into deck text as it is, else raise :class:`NetlistError`.

    This is the one gate for every path or name memspice writes into a deck, a ``.spiceinit``
    or an ngspice command (model-root aliases, include paths, settings, run directories,
    titles). A word (``spaces=False``) is one token: ASCII letters, digits and ``_ . + , @ % =
    / : -``. With ``spaces=True`` (a title line) spaces and parentheses are allowed too, but the
    text may not start with a character ngspice reads as a command, comment or continuation.
    """
    pattern = _DECK_LINE if spaces else _DECK_WORD
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        raise NetlistError(
            f"{what} {shown!r} cannot be written into a deck "
            f"(allowed: ASCII letters, digits and {'space ( ) ' if spaces else ''}_ . + , @ % = / : -)"
        )
    if spaces and value[:1] in (".", "*", "+", " "):
        raise NetlistError(f"{what} {value!r} must not start with {value[:1]!r} (ngspice reads it as a command)")
    return value


def check_name(value: object, what: str = "name") -> str:
    """Return ``value`` if it is a safe SPICE identifier, else raise :class:`NetlistError`."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise NetlistError(
            f"{what} {value!r} is not a valid identifier "
            "(letters, digits and '_', starting with a letter, at most 64 characters)"
        )
    if value.lower() in _RESERVED:
        raise NetlistError(f"{what} {value!r} is a reserved word")
    return value


def check_element_name(value: object, what: str = "element name") -> str:
    """Element names follow the emitted type letter, so they may start with a digit."""
    if not isinstance(value, str) or not _SUFFIX.fullmatch(value):
        raise NetlistError(
            f"{what} {value!r} is not valid (letters, digits and '_', at most 64 characters)"
        )
    return value


def check_node(value: object) -> str:
    """Return ``value`` if it is a safe node name (``0`` is ground)."""
    if not isinstance(value, str) or not _NODE.fullmatch(value):
        raise NetlistError(
            f"node {value!r} is not a valid node name "
            "(letters, digits and '_', starting with a letter, or 0 for ground)"
        )
    if value.lower() in _RESERVED:
        raise NetlistError(f"node {value!r} is a reserved word")
    return value


def check_number(value: object, what: str) -> float:
    """Return ``value`` as a finite float, else raise :class:`NetlistError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise NetlistError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise NetlistError(f"{what} must be finite, got {number!r}")
    return number


def check_numbers(values: object, what: str) -> tuple[float, ...]:
    """Return ``values`` as a tuple of finite floats, else raise :class:`NetlistError`.

    A one-dimensional integer or float NumPy array is checked at once; anything else goes
    through :func:`check_number` item by item, so the message names the bad item.
    """
    if isinstance(values, (str, bytes)):
        raise NetlistError(f"{what} must be numbers, got {values!r}")
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iuf":
        array = values.astype(np.float64, copy=False)
        if bool(np.isfinite(array).all()):
            return tuple(array.tolist())
    return tuple(check_number(v, what) for v in values)  # type: ignore[union-attr]


def check_positive(value: object, what: str) -> float:
    """Return ``value`` as a finite float > 0, else raise :class:`NetlistError`."""
    number = check_number(value, what)
    if number <= 0:
        raise NetlistError(f"{what} must be positive, got {number!r}")
    return number


def check_nonnegative(value: object, what: str) -> float:
    """Return ``value`` as a finite float ≥ 0, else raise :class:`NetlistError`."""
    number = check_number(value, what)
    if number < 0:
        raise NetlistError(f"{what} must not be negative, got {number!r}")
    return number
