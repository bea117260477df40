"""Comparisons against goldens: netlist text (normalized, unified diff) and signal tables."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memspice.regress.golden import Tolerance

_SPACE = re.compile(r"\s+")


def normalize_netlist(text: str) -> list[str]:
    """Lines that matter for comparison: comments and blank lines dropped, whitespace collapsed.

    The title (first line) is kept even if it starts with ``*``: SPICE never treats it as an
    element, but it names the deck.
    """
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = _SPACE.sub(" ", raw).strip()
        if not line or (number > 0 and line.startswith("*")):
            continue
        lines.append(line)
    return lines


def netlist_diff(expected: str, actual: str, expected_name: str = "golden", actual_name: str = "generated") -> str:
    """Unified diff of the normalized texts, or ``""`` when they match after normalization."""
    old, new = normalize_netlist(expected), normalize_netlist(actual)
    if old == new:
        return ""
    return "\n".join(difflib.unified_diff(old, new, expected_name, actual_name, lineterm="", n=2)) + "\n"


@dataclass(frozen=True, slots=True)
class SignalCheck:
    """One signal compared with its golden values.

    Attributes:
        signal: vector name (``o1``, ``i(vdd)``…).
        max_deviation: largest ``|new − golden|`` (signal unit; ``nan`` when not comparable).
        at_x: independent-variable value where it occurs.
        worst_ratio: largest deviation divided by the allowed one (≤ 1 passes).
        tolerance: the tolerance applied.
        passed: within tolerance everywhere.
        note: why the signal could not be compared, if it could not.
    """

    signal: str
    max_deviation: float
    at_x: float
    worst_ratio: float
    tolerance: Tolerance
    passed: bool
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "signal": self.signal,
            "max_deviation": _json_number(self.max_deviation),
            "at_x": _json_number(self.at_x),
            "worst_ratio": _json_number(self.worst_ratio),
            "tolerance": self.tolerance.to_json(),
            "passed": self.passed,
            "note": self.note,
        }


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _failed(signal: str, tolerance: Tolerance, note: str) -> SignalCheck:
    nan = float("nan")
    return SignalCheck(signal, nan, nan, nan, tolerance, False, note)


def align(golden_x: np.ndarray, new_x: np.ndarray, new_y: np.ndarray) -> np.ndarray | None:
    """``new_y`` on the golden abscissa: as is when the abscissae match, else interpolated.

    Transient time points move with the adaptive step, so they are interpolated; a sweep that
    does not cover the golden range cannot be compared (``None``).
    """
    if new_x.shape == golden_x.shape and np.allclose(new_x, golden_x, rtol=1e-9, atol=1e-15):
        return new_y
    if new_x.size < 2 or np.any(np.diff(new_x) < 0) or np.any(np.diff(golden_x) < 0):
        return None
    span = max(abs(golden_x[-1] - golden_x[0]), 1e-300)
    if new_x[0] > golden_x[0] + 1e-9 * span or new_x[-1] < golden_x[-1] - 1e-9 * span:
        return None
    return np.interp(golden_x, new_x, new_y)


def compare_signals(
    golden: pd.DataFrame,
    x_name: str,
    vectors: Mapping[str, np.ndarray],
    tolerances: Mapping[str, Tolerance],
) -> list[SignalCheck]:
    """Compare simulated ``vectors`` with the ``golden`` table, signal by signal.

    Args:
        golden: table with column ``x_name`` and one column per signal.
        x_name: independent variable (``v-sweep``, ``time``).
        vectors: simulated vectors by normalized name.
        tolerances: signal → tolerance; only these signals are compared.
    """
    checks: list[SignalCheck] = []
    if x_name not in vectors:
        return [_failed(name, tol, f"results have no {x_name!r} vector") for name, tol in tolerances.items()]
    golden_x = golden[x_name].to_numpy()
    new_x = np.real(np.asarray(vectors[x_name], dtype=np.complex128)).astype(np.float64)
    for name, tolerance in tolerances.items():
        if name not in golden.columns:
            checks.append(_failed(name, tolerance, "not in the golden table"))
            continue
        if name not in vectors:
            checks.append(_failed(name, tolerance, "not in the simulation results"))
            continue
        new_y = np.real(np.asarray(vectors[name], dtype=np.complex128)).astype(np.float64)
        aligned = align(golden_x, new_x, new_y)
        if aligned is None:
            checks.append(_failed(name, tolerance, f"{x_name} range/points differ from the golden table"))
            continue
        golden_y = golden[name].to_numpy()
        deviation = np.abs(aligned - golden_y)
        ratio = deviation / np.maximum(tolerance.limit(golden_y), 1e-300)
        worst = int(np.argmax(np.where(np.isfinite(ratio), ratio, np.inf)))
        biggest = int(np.argmax(np.where(np.isfinite(deviation), deviation, np.inf)))
        passed = bool(np.all(np.isfinite(deviation)) and np.all(deviation <= tolerance.limit(golden_y)))
        checks.append(SignalCheck(name, float(deviation[biggest]), float(golden_x[biggest]),
                                  float(ratio[worst]), tolerance, passed))
    return checks


def result_table(vectors: Mapping[str, np.ndarray], x_name: str, signals: list[str]) -> pd.DataFrame:
    """The golden table of a simulation: ``x_name`` then ``signals`` (real parts, float64)."""
    missing = [name for name in [x_name, *signals] if name not in vectors]
    if missing:
        raise KeyError(f"simulation results lack {missing}; have {sorted(vectors)}")
    return pd.DataFrame(
        {name: np.real(np.asarray(vectors[name], dtype=np.complex128)).astype(np.float64) for name in [x_name, *signals]}
    )
