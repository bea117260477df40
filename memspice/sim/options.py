"""How a deck is run (never part of the deck itself)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memspice.errors import ConfigError

Backend = Literal["batch", "shared"]
Keep = Literal["never", "on_failure", "always"]
BACKENDS: tuple[str, ...] = ("batch", "shared")


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Runtime settings of a simulation.

    Attributes:
        backend: ``batch`` (``ngspice -b`` subprocess; parallel-safe) or ``shared``
            (PySpice over ``libngspice``; process-global, serialized).
        timeout_s: wall-clock limit per run (s); the process is killed past it.
        work_dir: parent of run directories (``None`` = system temp directory).
        keep: keep the run directory ``never``, ``on_failure`` (default) or ``always``.
        ngspice: ngspice executable name or path (batch backend); ``None`` = ``$MEMSPICE_NGSPICE``,
            else ``ngspice`` on ``PATH`` (see :mod:`memspice.sim.info`).
        allow_control: run decks that carry ngspice control code (``.control`` blocks,
            ``*#`` lines, ``shell``…); refused by default (see :mod:`memspice.sim.deckcheck`).
    """

    backend: Backend = "batch"
    timeout_s: float = 120.0
    work_dir: Path | None = None
    keep: Keep = "on_failure"
    ngspice: str | None = None
    allow_control: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown simulator backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout_s!r}")
        if self.keep not in ("never", "on_failure", "always"):
            raise ConfigError(f"keep must be never, on_failure or always, got {self.keep!r}")
