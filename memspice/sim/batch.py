"""Batch backend: one ``ngspice -b -r out.raw deck.cir`` subprocess per run."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from memspice.errors import SimFailed, SimTimeout
from memspice.sim.children import kill_group, started
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
    # Only the run directory's own .spiceinit may be read (it sits beside the deck, which
    # ngspice tries first); SPICE_USERINIT_DIR would name another one.
    env = {key: value for key, value in os.environ.items() if key != "SPICE_USERINIT_DIR"}
    with open(log_path, "wb") as log:
        start = functools.partial(
            subprocess.Popen,
            [info.executable, "-b", "-r", RAW_NAME, *inputs],
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**env, "LC_ALL": "C"},
        )
        with started(start) as proc:  # killed with memspice on SIGINT/SIGTERM
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                raise SimTimeout(timeout_s, run_dir) from None
    output = log_path.read_text(errors="replace")
    return _collect(run_dir, returncode, output), output


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
