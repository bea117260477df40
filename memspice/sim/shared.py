"""Shared-library backend: ngspice in-process through PySpice (imported lazily).

``libngspice`` is process-global and not re-entrant, so every use goes through one lock;
parallel work belongs to the batch backend's subprocesses.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from memspice.errors import SimFailed, SimulatorNotFound, SimTimeout
from memspice.sim.diagnose import find_error_line
from memspice.sim.rawfile import Plot, normalize_name
from memspice.sim.rundir import DECK_NAME, SPICEINIT_NAME

_LOCK = threading.Lock()
_INSTANCE: Any = None


def _ngspice() -> Any:
    global _INSTANCE
    if _INSTANCE is None:
        import logging

        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared
        except ImportError as exc:  # PySpice is the optional `shared` extra
            missing = isinstance(exc, ModuleNotFoundError) and str(exc.name).startswith("PySpice")
            raise SimulatorNotFound(
                "the shared backend needs PySpice, which is "
                + ("not installed" if missing else f"not importable ({exc})")
                + ": pip install 'memspice[shared]', or use the default batch backend (--backend batch)"
            ) from exc
        # PySpice 1.5 logs an error-level 'Unsupported Ngspice version' for ngspice ≥ 35.
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        try:
            _INSTANCE = NgSpiceShared.new_instance()
        except OSError as exc:
            raise SimulatorNotFound(
                f"libngspice could not be loaded ({exc}); install `libngspice0-dev` "
                "(Debian/Ubuntu) or set NGSPICE_LIBRARY_PATH"
            ) from exc
    return _INSTANCE


def run_shared(run_dir: Path, timeout_s: float) -> tuple[list[Plot], str]:
    """Run ``deck.cir`` in ``run_dir`` inside the shared library.

    The timeout is checked after the run (the library cannot be interrupted safely from
    Python while it runs in the foreground).
    """
    import time

    with _LOCK:
        ng = _ngspice()
        ng.clear_output()
        settings = run_dir / SPICEINIT_NAME
        if settings.is_file():
            for line in settings.read_text().splitlines():
                if line.strip():
                    ng.exec_command(line.strip())
        start = time.monotonic()
        try:
            ng.exec_command(f"source {run_dir / DECK_NAME}")
            ng.run()
        except Exception as exc:  # PySpice raises NgSpiceCommandError and friends
            output = _output(ng)
            _reset(ng)
            raise SimFailed(find_error_line(output) or str(exc), run_dir, output) from exc
        elapsed = time.monotonic() - start
        output = _output(ng)
        try:
            if elapsed > timeout_s:
                raise SimTimeout(timeout_s, run_dir)
            error = find_error_line(output)
            if error is not None:
                raise SimFailed(error, run_dir, output)
            plots = _collect_plots(ng)
            if not plots:
                raise SimFailed("ngspice produced no results", run_dir, output)
            return plots, output
        finally:
            _reset(ng)


def _output(ng: Any) -> str:
    return "\n".join([str(ng.stdout), str(ng.stderr)])


def _collect_plots(ng: Any) -> list[Plot]:
    plots: list[Plot] = []
    for plot_name in reversed(ng.plot_names):
        if plot_name == "const":
            continue
        raw = ng.plot(None, plot_name)
        vectors: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        for name, vector in raw.items():
            key = normalize_name(name)
            vectors[key] = np.array(vector._data)
            units[key] = str(vector._type)
        plots.append(Plot(plot_name, vectors, units))
    return plots


def _reset(ng: Any) -> None:
    for command in ("destroy all", "remove_circuit"):
        try:
            ng.exec_command(command)
        except Exception:  # noqa: BLE001 - best effort cleanup of a global library state
            pass
