"""Recognize ngspice failures from its printed output (it may exit 0 after an error)."""

from __future__ import annotations

import re

#: Lines that mean the results cannot be trusted, most telling first.
_ERROR_PATTERNS = (
    re.compile(r"^\s*(fatal )?error", re.IGNORECASE),
    re.compile(r"timestep too small", re.IGNORECASE),
    re.compile(r"singular matrix", re.IGNORECASE),
    re.compile(r"gmin stepping failed|source stepping failed", re.IGNORECASE),
    re.compile(r"no convergence|did not converge|convergence failed", re.IGNORECASE),
    re.compile(r"simulation\(s\) aborted|aborted", re.IGNORECASE),
    re.compile(r"fatal", re.IGNORECASE),
    re.compile(r"could not find|can't find|cannot open|unknown (subckt|model|device)", re.IGNORECASE),
    re.compile(r"unable to find definition of model", re.IGNORECASE),
    re.compile(r"is not a valid|not found", re.IGNORECASE),
)
#: Lines that match a pattern above but are harmless.
_BENIGN = (
    re.compile(r"no error", re.IGNORECASE),
    re.compile(r"^\s*warning: can't find the initialization file spinit", re.IGNORECASE),
    re.compile(r"using spice opus path", re.IGNORECASE),
    re.compile(r"note: can't find init file", re.IGNORECASE),
    re.compile(r"unsupported ngspice version", re.IGNORECASE),
)


def find_error_line(output: str) -> str | None:
    """Return the most telling error line in ngspice's output, or ``None``."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not any(b.search(line) for b in _BENIGN)]
    for pattern in _ERROR_PATTERNS:
        for line in lines:
            if pattern.search(line):
                return line
    return None
