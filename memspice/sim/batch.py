"""Batch backend: one ``ngspice -b -r out.raw deck.cir`` subprocess per run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from memspice.errors import SimFailed, SimTimeout
from memspice.sim.diagnose import find_error_line
from memspice.sim.info import KLU_OPTIONS, find_ngspice, simulator_info
from memspice.sim.rawfile import Plot, RawFileError, parse_raw
from memspice.sim.rundir import DECK_NAME, LOG_NAME, RAW_NAME, write_simulator_options

__all__ = ["find_ngspice", "run_batch"]


def run_batch(run_dir: Path, timeout_s: float, executable: str | None = None) -> tuple[list[Plot], str]:
    """Run ``deck.cir`` in ``run_dir`` and parse ``out.raw``.

    ``executable`` resolves as in :func:`memspice.sim.info.resolve_ngspice`. A build with KLU
    gets ``.options klu`` from a second input file after the deck (ngspice reads its input files
    as one), so the deck text is the same for every build.

    Returns:
        The plots and ngspice's combined output.

    Raises:
        SimulatorNotFound, SimTimeout, SimFailed.
    """
    info = simulator_info(executable)
    inputs = [DECK_NAME]
    if info.klu:
        inputs.append(write_simulator_options(run_dir, (KLU_OPTIONS,)).name)
    log_path = run_dir / LOG_NAME
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [info.executable, "-b", "-r", RAW_NAME, *inputs],
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise SimTimeout(timeout_s, run_dir) from None
    output = log_path.read_text(errors="replace")
    return _collect(run_dir, returncode, output), output


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _collect(run_dir: Path, returncode: int, output: str) -> list[Plot]:
    error = find_error_line(output)
    if returncode < 0:
        raise SimFailed(f"ngspice was killed by signal {-returncode}" + (f"; last error: {error}" if error else ""),
                        run_dir, output)
    if returncode != 0:
        raise SimFailed(error or f"ngspice exited with status {returncode}", run_dir, output)
    if error is not None:
        raise SimFailed(error, run_dir, output)
    raw_path = run_dir / RAW_NAME
    if not raw_path.is_file() or raw_path.stat().st_size == 0:
        raise SimFailed("ngspice wrote no results (missing or empty raw file)", run_dir, output)
    try:
        return parse_raw(raw_path.read_bytes())
    except RawFileError as exc:
        raise SimFailed(f"unreadable raw file: {exc}", run_dir, output) from exc
