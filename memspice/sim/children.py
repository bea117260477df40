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
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_LIVE: set[subprocess.Popen[bytes]] = set()
_LOCK = threading.Lock()
_INSTALLED = False


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


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kill_all()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


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
def tracked(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Register ``proc`` while the body runs; kill its group if the body is interrupted."""
    _install_handlers()
    with _LOCK:
        _LIVE.add(proc)
    try:
        yield proc
    except BaseException:
        kill_group(proc)
        raise
    finally:
        with _LOCK:
            _LIVE.discard(proc)


_install_handlers()  # importing from the main thread (the usual case) arms the handlers early
