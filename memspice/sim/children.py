"""ngspice child processes die with memspice.

Each batch run starts ngspice in its own session (so a terminal's Ctrl-C reaches memspice,
not ngspice, and memspice decides). When memspice is interrupted (SIGINT) or asked to stop
(SIGTERM), every live ngspice process group is killed before the signal takes its course:
SIGINT still raises :class:`KeyboardInterrupt`, SIGTERM raises ``SystemExit(143)`` so
``finally`` blocks (run-directory cleanup) run. The handlers are installed from the main
thread on first use, and only over Python's default handlers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_LIVE: set[subprocess.Popen[bytes]] = set()
_LOCK = threading.RLock()  # re-entrant: the signal handler may run while the main thread holds it
_INSTALLED = False
#: When the last stop signal arrived (monotonic s) and which it was.
_stop_at = float("-inf")
_stop_signal = signal.SIGINT
#: The main thread is between starting a process and registering it.
_main_starting = False


def kill_group(proc: subprocess.Popen[bytes], wait_s: float = 5.0) -> None:
    """SIGKILL ``proc``'s process group and wait (briefly) for it to be reaped."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + wait_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_all() -> None:
    """Kill every registered ngspice process group."""
    with _LOCK:
        live = list(_LIVE)
    for proc in live:
        kill_group(proc, wait_s=1.0)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop_at, _stop_signal
    _stop_at, _stop_signal = time.monotonic(), signum
    kill_all()
    if _main_starting:
        return  # the process being started is killed, and the signal raised, once it is registered
    _raise_for(signum)


def _install_handlers() -> None:
    global _INSTALLED
    if _INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    _INSTALLED = True
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        try:
            if signal.getsignal(signum) is default:
                signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # not the main interpreter, or no such signal here
            pass


@contextmanager
def started(start: Callable[[], subprocess.Popen[bytes]]) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process with ``start()`` and yield it, registered; its group is killed when the
    body is interrupted or a stop signal arrives, even one that came while it was starting."""
    global _main_starting
    _install_handlers()
    in_main = threading.current_thread() is threading.main_thread()
    began = time.monotonic()
    if in_main:
        _main_starting = True
    try:
        proc = start()
        with _LOCK:
            _LIVE.add(proc)
    finally:
        if in_main:
            _main_starting = False
    try:
        if _stop_at >= began:  # a stop signal arrived while the process was starting
            kill_group(proc)
            _raise_for(_stop_signal)
        yield proc
    except BaseException:
        kill_group(proc)
        raise
    finally:
        with _LOCK:
            _LIVE.discard(proc)


_install_handlers()  # importing from the main thread (the usual case) arms the handlers early
