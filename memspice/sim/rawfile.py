"""Parser for ngspice raw files (binary and ASCII), as plain functions on bytes.

A raw file holds one or more plots, each a header (``Title:``, ``Plotname:``, ``Flags:``,
``No. Variables:``, ``No. Points:``, ``Variables:`` list) followed by ``Binary:`` float64 data
(point-major) or ``Values:`` text. Vector names are normalized: ``v(node)`` → ``node`` (lower
case), currents stay ``i(vname)``, ngspice's ``vname#branch`` → ``i(vname)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from memspice.errors import SimError


class RawFileError(SimError):
    """A raw file that is truncated or malformed."""


@dataclass(frozen=True)
class Plot:
    """One analysis result.

    Attributes:
        name: ngspice's plot name, e.g. ``"DC transfer characteristic"``.
        vectors: normalized name → 1-D array (float64, or complex128 for complex plots).
        units: normalized name → ngspice's type word (``voltage``, ``current``, ``time``…).
    """

    name: str
    vectors: dict[str, np.ndarray]
    units: dict[str, str] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        first = next(iter(self.vectors.values()), np.empty(0))
        return int(first.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        key = normalize_name(name)
        try:
            return self.vectors[key]
        except KeyError:
            raise KeyError(f"no vector {name!r} in plot {self.name!r}; have {sorted(self.vectors)}") from None


def normalize_name(name: str) -> str:
    """Map ngspice vector names onto memspice's: ``v(a)``→``a``, ``vdd#branch``→``i(vdd)``."""
    text = name.strip().lower()
    if text.startswith("v(") and text.endswith(")"):
        return text[2:-1]
    if text.endswith("#branch"):
        return f"i({text[: -len('#branch')]})"
    return text


def parse_raw(data: bytes) -> list[Plot]:
    """Parse every plot in a raw file.

    Raises:
        RawFileError: header fields missing or data shorter than the header promises.
    """
    plots: list[Plot] = []
    offset = 0
    while offset < len(data):
        if not data[offset:].strip():
            break
        plot, offset = _parse_plot(data, offset)
        plots.append(plot)
    if not plots:
        raise RawFileError("raw file holds no plot")
    return plots


def _parse_plot(data: bytes, offset: int) -> tuple[Plot, int]:
    header: dict[str, str] = {}
    names: list[str] = []
    kinds: list[str] = []
    pos = offset
    n_vars = None
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise RawFileError("raw file ends inside a header")
        line = data[pos:end].decode("latin-1")
        pos = end + 1
        stripped = line.strip()
        if stripped in ("Binary:", "Values:"):
            mode = stripped[:-1]
            break
        if n_vars is not None and len(names) < n_vars and line.startswith(("\t", " ")) and stripped:
            parts = stripped.split()
            if len(parts) < 3:
                raise RawFileError(f"bad variable line {line!r}")
            names.append(parts[1])
            kinds.append(parts[2])
            continue
        key, _, value = line.partition(":")
        header[key.strip().lower()] = value.strip()
        if key.strip().lower() == "variables":
            try:
                n_vars = int(header["no. variables"])
            except (KeyError, ValueError) as exc:
                raise RawFileError("raw header lacks 'No. Variables'") from exc
    try:
        n_points = int(header["no. points"])
    except (KeyError, ValueError) as exc:
        raise RawFileError("raw header lacks 'No. Points'") from exc
    if n_vars is None or len(names) != n_vars:
        raise RawFileError("raw header variable list is incomplete")
    is_complex = "complex" in header.get("flags", "").lower()
    if mode == "Binary":
        width = 2 if is_complex else 1
        count = n_points * n_vars * width
        nbytes = count * 8
        if len(data) - pos < nbytes:
            raise RawFileError(
                f"raw file is truncated: {len(data) - pos} data bytes for {nbytes} expected"
            )
        flat = np.frombuffer(data, dtype="<f8", count=count, offset=pos)
        pos += nbytes
        if is_complex:
            table = flat.view("<c16").reshape(n_points, n_vars)
        else:
            table = flat.reshape(n_points, n_vars)
    else:
        table, pos = _parse_values(data, pos, n_points, n_vars, is_complex)
    vectors = {normalize_name(n): np.array(table[:, i]) for i, n in enumerate(names)}
    units = {normalize_name(n): k for n, k in zip(names, kinds)}
    return Plot(header.get("plotname", ""), vectors, units), pos


def _parse_values(data: bytes, pos: int, n_points: int, n_vars: int, is_complex: bool) -> tuple[np.ndarray, int]:
    dtype = np.complex128 if is_complex else np.float64
    table = np.empty((n_points, n_vars), dtype=dtype)
    lines = data[pos:].decode("latin-1").split("\n")
    consumed = 0
    tokens: list[str] = []
    for line in lines:
        consumed += len(line) + 1
        if line.strip():
            tokens.extend(line.split())
        if len(tokens) >= n_points * (n_vars + 1):
            break
    if len(tokens) < n_points * (n_vars + 1):
        raise RawFileError("raw file is truncated in its Values section")
    it = iter(tokens)
    for p in range(n_points):
        next(it)  # point index
        for v in range(n_vars):
            token = next(it)
            if is_complex:
                re_, im_ = token.split(",")
                table[p, v] = complex(float(re_), float(im_))
            else:
                table[p, v] = float(token)
    return table, pos + consumed
