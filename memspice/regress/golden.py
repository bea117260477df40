"""Golden files of one case: stored deck, signal table, metadata (tolerances, environment).

A case ``name`` in a golden directory owns three files:

- ``name.cir`` — the emitted deck, exactly as simulated (no absolute paths);
- ``name.golden.csv`` — the independent variable (``v-sweep`` or ``time``) and each signal;
- ``name.meta.json`` — tolerance per signal, the analysis index, interpreter settings and the
  environment that produced the table (ngspice version, SHA-256 of every model file).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from memspice.circuit.deck import ALLOWED_SETTINGS, ModelRoot
from memspice.circuit.values import check_deck_text
from memspice.errors import ConfigError, NetlistError
from memspice.io import write_atomic, write_text_atomic

FORMAT_VERSION = 1
DECK_SUFFIX = ".cir"
TABLE_SUFFIX = ".golden.csv"
META_SUFFIX = ".meta.json"
_MODEL_LINE = re.compile(r"""^\s*\.(?:include|inc|lib)\s+["']?([^"'\s]+)["']?""", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Allowed deviation of a signal: ``|new − golden| ≤ absolute + relative·|golden|``.

    Attributes:
        absolute: absolute allowance in the signal's unit (V for voltages, A for currents).
        relative: allowance as a fraction of the golden value's magnitude (dimensionless).
    """

    absolute: float
    relative: float = 0.0

    def __post_init__(self) -> None:
        for name in ("absolute", "relative"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"tolerance {name} must be a finite number ≥ 0, got {value!r}")

    def limit(self, golden: np.ndarray) -> np.ndarray:
        """Pointwise allowed deviation for golden values ``golden``."""
        return self.absolute + self.relative * np.abs(golden)

    def describe(self) -> str:
        """Short text such as ``abs=1e-04 rel=1e-03``."""
        return f"abs={self.absolute:.0e} rel={self.relative:.0e}"

    def to_json(self) -> dict[str, float]:
        return {"abs": self.absolute, "rel": self.relative}

    @classmethod
    def from_json(cls, data: object, where: str) -> Tolerance:
        if not isinstance(data, dict) or "abs" not in data:
            raise ConfigError(f"{where}: a tolerance needs an 'abs' entry (and optionally 'rel'), got {data!r}")
        return cls(float(data["abs"]), float(data.get("rel", 0.0)))


@dataclass(frozen=True, slots=True)
class Environment:
    """What produced a golden table besides the deck.

    Attributes:
        ngspice: ngspice version word (``"39"``).
        models: ``"<root alias>/<relpath>"`` → SHA-256 of every model file the deck reads,
            including files those include (``"missing"`` when absent).
        build: ngspice's build options (``"KLU, predictor, OpenMP"``; ``""`` = not recorded).
    """

    ngspice: str
    models: dict[str, str] = field(default_factory=dict)
    build: str = ""

    def changes_from(self, recorded: Environment) -> list[str]:
        """Human-readable differences from ``recorded`` (empty when the same)."""
        changes: list[str] = []
        if self.ngspice != recorded.ngspice:
            changes.append(f"ngspice version {recorded.ngspice} -> {self.ngspice}")
        if recorded.build and self.build and self.build != recorded.build:
            changes.append(f"ngspice build {recorded.build} -> {self.build}")
        for key in sorted(set(recorded.models) | set(self.models)):
            old, new = recorded.models.get(key), self.models.get(key)
            if old == new:
                continue
            if old is None:
                changes.append(f"model file {key} is new")
            elif new is None:
                changes.append(f"model file {key} is no longer read")
            else:
                changes.append(f"model file {key} changed (sha256 {old[:12]} -> {new[:12]})")
        return changes


@dataclass(frozen=True, slots=True)
class GoldenMeta:
    """Contents of ``<case>.meta.json``.

    Attributes:
        case: case name.
        description: one line about what the deck shows.
        analysis: index of the plot (analysis) the table holds.
        x_name: independent vector (``v-sweep`` for ``.dc``, ``time`` for ``.tran``).
        tolerances: signal name → tolerance.
        settings: interpreter settings the deck needs (``.spiceinit`` lines).
        environment: what produced the table.
    """

    case: str
    description: str
    analysis: int
    x_name: str
    tolerances: dict[str, Tolerance]
    settings: tuple[tuple[str, str], ...]
    environment: Environment

    def to_json(self) -> str:
        data = {
            "format": FORMAT_VERSION,
            "case": self.case,
            "description": self.description,
            "analysis": self.analysis,
            "x": self.x_name,
            "signals": {name: tol.to_json() for name, tol in self.tolerances.items()},
            "settings": [list(pair) for pair in self.settings],
            "environment": {"ngspice": self.environment.ngspice,
                            **({"build": self.environment.build} if self.environment.build else {}),
                            "models": dict(sorted(self.environment.models.items()))},
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> GoldenMeta:
        try:
            data = json.loads(text)
            env = data["environment"]
            return cls(
                case=str(data["case"]),
                description=str(data.get("description", "")),
                analysis=int(data.get("analysis", 0)),
                x_name=str(data["x"]),
                tolerances={str(k): Tolerance.from_json(v, f"{where}: signal {k}") for k, v in data["signals"].items()},
                settings=_settings(data.get("settings", []), where),
                environment=Environment(str(env["ngspice"]), {str(k): str(v) for k, v in env.get("models", {}).items()},
                                        str(env.get("build", ""))),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{where}: malformed golden metadata ({exc})") from exc


def _settings(pairs: object, where: str) -> tuple[tuple[str, str], ...]:
    """Interpreter settings from metadata: only ones memspice writes, with plain values."""
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ConfigError(f"{where}: settings must be a list of [name, value] pairs")
    settings = tuple((str(k), str(v)) for k, v in pairs)
    for key, value in settings:
        if key not in ALLOWED_SETTINGS:
            raise ConfigError(f"{where}: setting {key!r} is not one memspice writes ({', '.join(sorted(ALLOWED_SETTINGS))})")
        try:
            if value:
                check_deck_text(value, f"value of setting {key}")
        except NetlistError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return settings


@dataclass(frozen=True, slots=True)
class GoldenFiles:
    """Paths of one case's golden files in ``directory``."""

    directory: Path
    case: str

    @property
    def deck(self) -> Path:
        return self.directory / f"{self.case}{DECK_SUFFIX}"

    @property
    def table(self) -> Path:
        return self.directory / f"{self.case}{TABLE_SUFFIX}"

    @property
    def meta(self) -> Path:
        return self.directory / f"{self.case}{META_SUFFIX}"

    def exists(self) -> bool:
        """All three files are present."""
        return self.deck.is_file() and self.table.is_file() and self.meta.is_file()

    def missing(self) -> list[str]:
        """Names of the files that are absent."""
        return [p.name for p in (self.deck, self.table, self.meta) if not p.is_file()]

    def read_meta(self) -> GoldenMeta:
        return GoldenMeta.from_json(self.meta.read_text(), str(self.meta))

    def read_table(self) -> pd.DataFrame:
        try:
            return read_table(self.table)
        except ValueError as exc:
            raise ConfigError(f"{self.table}: unreadable golden table ({exc})") from exc

    def write(self, deck_text: str, table: pd.DataFrame, meta: GoldenMeta) -> None:
        """Write all three files atomically (each file is replaced whole)."""
        write_text_atomic(self.deck, deck_text)
        write_atomic(self.table, lambda tmp: write_table(tmp, table))
        write_text_atomic(self.meta, meta.to_json())


def stored_cases(directory: Path) -> list[str]:
    """Case names that have a stored deck in ``directory`` (sorted)."""
    return sorted(p.name[: -len(DECK_SUFFIX)] for p in Path(directory).glob(f"*{DECK_SUFFIX}"))


def write_table(path: Path, table: pd.DataFrame) -> None:
    """CSV (header of column names, then rows) with every float written to round-trip exactly."""
    names = [str(c) for c in table.columns]
    if any("," in name or "\n" in name for name in names):
        raise ConfigError(f"signal names must not contain commas or newlines: {names}")
    values = table.to_numpy(dtype=np.float64)
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in values]
    Path(path).write_text("\n".join(lines) + "\n")


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (float64 columns).

    Raises:
        ValueError: the file is not such a table.
    """
    with open(path) as handle:
        names = handle.readline().strip().split(",")
        values = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
    if not names or not names[0] or values.shape[1] != len(names) or values.shape[0] == 0:
        raise ValueError(f"expected {len(names)} columns of numbers under the header, got shape {values.shape}")
    return pd.DataFrame(values, columns=names)


# ---- model file hashes ------------------------------------------------------------------------

def model_file_hashes(deck_text: str, model_roots: tuple[ModelRoot, ...]) -> dict[str, str]:
    """SHA-256 of every model file ``deck_text`` includes, following nested includes.

    Top-level includes name ``"<alias>/<relpath>"``; the alias is resolved through
    ``model_roots``. Nested ``.include``/``.lib`` lines resolve relative to the including file.
    Keys stay machine independent: ``"<alias>/<path relative to the root>"``.
    """
    roots = {root.alias: Path(root.directory) for root in model_roots}
    hashes: dict[str, str] = {}
    pending: list[tuple[str, Path, str]] = []  # (alias, root dir, relpath within root)
    for target in _MODEL_LINE.findall(deck_text):
        alias, _, rel = target.partition("/")
        if alias in roots and rel:
            pending.append((alias, roots[alias], os.path.normpath(rel)))
    while pending:
        alias, root, rel = pending.pop()
        key = f"{alias}/{Path(rel).as_posix()}"
        if key in hashes:
            continue
        path = root / rel
        if not path.is_file():
            hashes[key] = "missing"
            continue
        data = path.read_bytes()
        hashes[key] = hashlib.sha256(data).hexdigest()
        for nested in _MODEL_LINE.findall(data.decode("latin-1")):
            if os.path.isabs(nested):
                continue
            pending.append((alias, root, os.path.normpath(os.path.join(os.path.dirname(rel), nested))))
    return dict(sorted(hashes.items()))
