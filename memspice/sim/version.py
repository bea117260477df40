"""The installed ngspice's version and build options (recorded in golden metadata)."""

from __future__ import annotations

from memspice.errors import SimFailed
from memspice.sim.info import UnsupportedSimulator, simulator_info
from memspice.sim.info import parse_version as _parse


def parse_version(output: str) -> str:
    """Extract the version word from ``ngspice -v`` output (``"ngspice-39"`` → ``"39"``).

    Raises:
        SimFailed: the output names no version.
    """
    try:
        return _parse(output)[0]
    except UnsupportedSimulator as exc:
        raise SimFailed(f"cannot read the ngspice version from `ngspice -v`: {exc}") from None


def ngspice_version(executable: str | None = None) -> str:
    """Version of the ngspice executable, e.g. ``"39"`` (cached per executable).

    Raises:
        SimulatorNotFound: ngspice is not on PATH, is not ngspice, or is too old.
    """
    return simulator_info(executable).version


def ngspice_build(executable: str | None = None) -> str:
    """Build options of the ngspice executable in words, e.g. ``"KLU, predictor, OpenMP"``."""
    return simulator_info(executable).options
