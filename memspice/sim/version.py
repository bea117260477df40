"""The installed ngspice's version (recorded in golden metadata)."""

from __future__ import annotations

import functools
import os
import re
import subprocess

from memspice.errors import SimFailed
from memspice.sim.batch import find_ngspice

_VERSION = re.compile(r"ngspice-(\S+)")


def parse_version(output: str) -> str:
    """Extract the version word from ``ngspice -v`` output (``"ngspice-39"`` → ``"39"``).

    Raises:
        SimFailed: the output names no version.
    """
    match = _VERSION.search(output)
    if match is None:
        first = output.strip().splitlines()[0] if output.strip() else "(no output)"
        raise SimFailed(f"cannot read the ngspice version from `ngspice -v`: {first}")
    return match.group(1)


@functools.lru_cache(maxsize=8)
def ngspice_version(executable: str = "ngspice") -> str:
    """Version of the ngspice executable, e.g. ``"39"`` (cached per executable).

    Raises:
        SimulatorNotFound: ngspice is not on PATH.
        SimFailed: it ran but printed no recognizable version.
    """
    exe = find_ngspice(executable)
    proc = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"}, check=False)
    return parse_version(proc.stdout + proc.stderr)
