"""Shared-library backend: ngspice in-process through PySpice (imported lazily).

``libngspice`` is process-global and not re-entrant, so every use goes through one lock;
parallel work belongs to the batch backend's subprocesses.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from memspice.circuit.values import check_deck_text
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
            from PySpice.Spice.NgSpice import Shared
        except ImportError as exc:  # PySpice is the optional `shared` extra
            missing = isinstance(exc, ModuleNotFoundError) and str(exc.name).startswith("PySpice")
            raise SimulatorNotFound(
                "the shared backend needs PySpice, which is "
                + ("not installed" if missing else f"not importable ({exc})")
                + ": pip install 'memspice[shared]', or use the default batch backend (--backend batch)"
            ) from exc

        class NgSpiceShared(Shared.NgSpiceShared):  # type: ignore[misc,name-defined]
            @staticmethod
            def _background_thread_running(exited: bool, ngspice_id: int, user_data: Any) -> int:
                # PySpice 1.5's callback returns None where C wants an int (cffi then prints
                # an error per call); ngspice passes its "thread exited" flag.
                Shared.ffi.from_handle(user_data)._is_running = bool(exited)
                return 0

        # PySpice 1.5 logs an error-level 'Unsupported Ngspice version' for ngspice ≥ 35.
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        try:
            _INSTANCE = _init_without_user_spiceinit(NgSpiceShared)
        except OSError as exc:
            raise SimulatorNotFound(
                f"libngspice could not be loaded ({exc}); install `libngspice0-dev` "
                "(Debian/Ubuntu) or set NGSPICE_LIBRARY_PATH"
            ) from exc
    return _INSTANCE


def _init_without_user_spiceinit(shared_class: Any) -> Any:
    """Create the library instance without letting it read a ``.spiceinit`` nobody asked for.

    When it starts, libngspice sources ``.spiceinit`` from the process's working directory,
    or else the user's home directory. It is started inside an empty directory holding an
    empty ``.spiceinit``, so neither is read; each run applies its own settings afterwards.
    """
    try:
        previous: str | None = os.getcwd()
    except OSError:  # the working directory was removed; there is nothing to go back to
        previous = None
    with tempfile.TemporaryDirectory(prefix="memspice-init-") as empty:
        (Path(empty) / SPICEINIT_NAME).write_text("* memspice: settings come with each run\n")
        os.chdir(empty)
        try:
            return shared_class.new_instance()
        finally:
            os.chdir(previous if previous is not None else tempfile.gettempdir())


def run_shared(run_dir: Path, timeout_s: float) -> tuple[list[Plot], str]:
    """Run ``deck.cir`` in ``run_dir`` inside the shared library.

    The analyses run in ngspice's background thread and are halted past ``timeout_s``
    (reading the deck itself cannot be interrupted).
    """
    deck_path = check_deck_text(str(run_dir / DECK_NAME), "run directory path")
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
            ng.exec_command(f"source {deck_path}")
            finished = _run_in_background(ng, start + timeout_s)
        except Exception as exc:  # PySpice raises NgSpiceCommandError and friends
            output = _output(ng)
            _reset(ng)
            raise SimFailed(find_error_line(output) or str(exc), run_dir, output) from exc
        output = _output(ng)
        try:
            if not finished:
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


def _run_in_background(ng: Any, deadline: float) -> bool:
    """``bg_run``, wait until the background thread has exited or ``deadline`` passed.

    Returns:
        ``True`` when the run finished, ``False`` when it was halted at the deadline.
    """
    # The thread callback stores ngspice's "exited" flag in ``_is_running``: False when the
    # thread starts, True when it ends. None marks "not reported yet".
    ng._is_running = None
    ng.exec_command("bg_run")
    try:
        while ng._is_running is not True:
            if time.monotonic() > deadline:
                _halt(ng)
                return False
            time.sleep(0.002)
    except BaseException:  # Ctrl-C or SIGTERM while waiting: stop the library's thread too
        _halt(ng)
        _reset(ng)
        raise
    return True


def _halt(ng: Any) -> None:
    try:
        ng.exec_command("bg_halt")
    except Exception:  # noqa: BLE001 - halting is best effort; the reset follows
        pass


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
