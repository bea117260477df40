"""Which ngspice memspice runs, and how it was built — asked from ngspice itself.

The executable is, in this order: the one given explicitly (``--ngspice``, a configuration
key), ``$MEMSPICE_NGSPICE``, then ``ngspice`` on ``PATH``. Its build options come from its own
``version -f`` report (KLU solver, ``--enable-predictor``, OpenMP), so a build is described the
same way wherever it came from. A build with KLU gets KLU selected at run time as a simulator
setting (see :data:`SIMULATOR_OPTIONS`), never in the deck text.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memspice.errors import SimulatorNotFound

#: Environment variable naming the ngspice executable when none is given explicitly.
ENV_VAR = "MEMSPICE_NGSPICE"
#: Oldest ngspice major version memspice supports (Debian 12's 39.3 is the oldest tested).
MIN_MAJOR = 39
#: Written next to the binary by ``scripts/build_ngspice.sh``: how that build was made.
BUILD_MARKER = "memspice-build.txt"
#: ``.options`` that select KLU, given to ngspice as a second input file after the deck.
KLU_OPTIONS = ".options klu"

_VERSION = re.compile(r"ngspice-(\d+)(?:\.(\d+))?")
_QUERY_TIMEOUT_S = 30.0


class UnsupportedSimulator(SimulatorNotFound):
    """The executable is not ngspice, or an ngspice older than memspice supports."""


@dataclass(frozen=True, slots=True)
class SimulatorInfo:
    """One ngspice build.

    Attributes:
        executable: absolute path of the binary.
        version: version word as ngspice prints it (``"39"``, ``"46"``).
        major: major version number.
        klu: compiled with the KLU sparse solver (memspice then selects it).
        predictor: built with ``--enable-predictor`` (no device extrapolation in DC sweeps).
        openmp: BSIM3/BSIM4 evaluated with OpenMP threads.
        build_flags: the CFLAGS of a ``scripts/build_ngspice.sh`` build, else ``""``.
    """

    executable: str
    version: str
    major: int
    klu: bool
    predictor: bool
    openmp: bool
    build_flags: str = ""

    @property
    def options(self) -> str:
        """Build options in words, e.g. ``"KLU, predictor, OpenMP"`` (``"Sparse"`` without KLU)."""
        words = ["KLU" if self.klu else "Sparse"]
        words += ["predictor"] if self.predictor else []
        words += ["OpenMP"] if self.openmp else []
        return ", ".join(words)

    def describe(self) -> str:
        """One line: ``ngspice-46 (KLU, predictor, OpenMP) at /path/ngspice``."""
        return f"ngspice-{self.version} ({self.options}) at {self.executable}"

    def record(self) -> dict[str, Any]:
        """What identifies the build's results (no path): for fingerprints and environment records."""
        return {"version": self.version, "klu": self.klu, "predictor": self.predictor, "openmp": self.openmp}

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-safe (for summaries)."""
        return asdict(self)


_configured: str | None = None


@contextlib.contextmanager
def configured_ngspice(executable: str | None) -> Iterator[None]:
    """Within the block, ``executable`` (a configuration key's value) is the default ngspice.

    It comes before ``$MEMSPICE_NGSPICE``; an explicitly given executable still wins.
    """
    global _configured
    before, _configured = _configured, executable or None
    try:
        yield
    finally:
        _configured = before


def resolve_ngspice(executable: str | None = None) -> str:
    """The ngspice name or path to use.

    In this order: ``executable``, the configured one (:func:`configured_ngspice`),
    ``$MEMSPICE_NGSPICE``, ``ngspice`` (on ``PATH``).
    """
    return executable or _configured or os.environ.get(ENV_VAR, "").strip() or "ngspice"


def find_ngspice(executable: str | None = None) -> str:
    """Absolute path of the ngspice executable (see :func:`resolve_ngspice`).

    Raises:
        SimulatorNotFound: not found (the message says how to install or build one).
    """
    name = resolve_ngspice(executable)
    path = shutil.which(name)
    if path is not None:
        return os.path.abspath(path)
    origin = "" if executable or _configured else (f" (from ${ENV_VAR})" if os.environ.get(ENV_VAR, "").strip() else "")
    if os.sep in name:
        raise SimulatorNotFound(f"ngspice executable {name!r}{origin} does not exist or is not executable")
    raise SimulatorNotFound(
        f"ngspice executable {name!r}{origin} not found on PATH; install it with "
        "`sudo apt-get install ngspice` (Debian/Ubuntu), `brew install ngspice` (macOS) or "
        "`conda install -c conda-forge ngspice`, or build ngspice 46 with scripts/build_ngspice.sh "
        f"and set {ENV_VAR} to it"
    )


def parse_version(output: str) -> tuple[str, int]:
    """Version word and major number from ngspice's banner (``"** ngspice-46 : ..."`` → ``("46", 46)``).

    Raises:
        UnsupportedSimulator: the output names no ngspice version.
    """
    match = _VERSION.search(output)
    if match is None:
        first = output.strip().splitlines()[0] if output.strip() else "(no output)"
        raise UnsupportedSimulator(f"not ngspice: `-v` printed no ngspice version ({first[:120]})")
    word = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return word, int(match.group(1))


def parse_build_options(full: str) -> dict[str, bool]:
    """KLU, predictor and OpenMP from the text of ngspice's ``version -f``."""
    return {
        "klu": "Compiled with KLU" in full,
        "predictor": "--enable-predictor" in full,
        "openmp": "OpenMP multithreading" in full,
    }


def _run(args: list[str], stdin: str | None) -> str:
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, text=True, errors="replace",
                              timeout=_QUERY_TIMEOUT_S, stdin=None if stdin is not None else subprocess.DEVNULL,
                              env={**os.environ, "LC_ALL": "C"}, check=False, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise UnsupportedSimulator(f"{args[0]} did not answer `{' '.join(args[1:])}` within "
                                   f"{_QUERY_TIMEOUT_S:g} s; is it ngspice?") from None
    except OSError as exc:
        raise UnsupportedSimulator(f"cannot run {args[0]}: {exc.strerror or exc}") from None
    return proc.stdout + proc.stderr


@functools.lru_cache(maxsize=16)
def _info(path: str, real: str) -> SimulatorInfo:
    try:
        version, major = parse_version(_run([path, "-v"], None))
    except UnsupportedSimulator as exc:
        raise UnsupportedSimulator(f"{path} is {exc}") from None
    if major < MIN_MAJOR:
        raise UnsupportedSimulator(f"{path} is ngspice-{version}; memspice needs ngspice {MIN_MAJOR} or newer "
                                   "(scripts/build_ngspice.sh builds ngspice 46)")
    # Pipe mode reads commands from stdin; -n skips any .spiceinit. 39.x has no --version-full.
    options = parse_build_options(_run([path, "-n", "-p"], "version -f\nquit\n"))
    marker = Path(real).parent / BUILD_MARKER
    flags = ""
    if marker.is_file():
        for line in marker.read_text(errors="replace").splitlines():
            if line.startswith("cflags:"):
                flags = line.partition(":")[2].strip()
    return SimulatorInfo(executable=path, version=version, major=major, build_flags=flags, **options)


def simulator_info(executable: str | None = None) -> SimulatorInfo:
    """Describe the ngspice that ``executable`` resolves to (cached per path).

    Raises:
        SimulatorNotFound: no such executable.
        UnsupportedSimulator: it is not ngspice, or an ngspice older than :data:`MIN_MAJOR`.
    """
    path = find_ngspice(executable)
    return _info(path, os.path.realpath(path))  # a rebuilt binary behind the same link is asked again


def simulator_record(executable: str | None = None) -> dict[str, Any] | None:
    """:meth:`SimulatorInfo.record` of the resolved ngspice, or ``None`` when there is none usable."""
    try:
        return simulator_info(executable).record()
    except SimulatorNotFound:
        return None
