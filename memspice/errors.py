"""One exception tree for memspice.

The CLI turns any :class:`MemspiceError` into one clear line and a non-zero exit code.
"""

from __future__ import annotations

from pathlib import Path


class MemspiceError(Exception):
    """Root of every error memspice raises on purpose."""


class ConfigError(MemspiceError):
    """An invalid configuration value, option or file."""


class NetlistError(MemspiceError):
    """A value that cannot safely or correctly reach a SPICE deck."""


class FitError(MemspiceError):
    """A fit that cannot be made (no data, nothing to fit, no convergence)."""


class DataError(MemspiceError):
    """A dataset that cannot be read or does not match what it is used for."""


class SimError(MemspiceError):
    """Base class for simulation failures."""


class SimulatorNotFound(SimError):
    """The ngspice executable or shared library is not available."""


class SimFailed(SimError):
    """ngspice ran but did not produce valid results.

    Attributes:
        error_line: the most telling error line ngspice printed (or our own diagnosis).
        run_dir: the run directory, kept for inspection.
        stdout: everything ngspice printed on stdout.
        stderr: everything ngspice printed on stderr.
    """

    def __init__(
        self,
        error_line: str,
        run_dir: Path | None = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        self.error_line = error_line
        self.run_dir = run_dir
        self.stdout = stdout
        self.stderr = stderr
        where = f" (run directory kept: {run_dir})" if run_dir is not None else ""
        super().__init__(f"ngspice failed: {error_line}{where}")


class SimTimeout(SimError):
    """ngspice did not finish within the allowed time."""

    def __init__(self, seconds: float, run_dir: Path | None = None) -> None:
        self.seconds = seconds
        self.run_dir = run_dir
        where = f" (run directory kept: {run_dir})" if run_dir is not None else ""
        super().__init__(f"ngspice did not finish within {seconds:g} s and was killed{where}")
