"""The ``memspice`` command line: a thin layer over library functions.

Each feature package contributes subcommands through a ``command`` module exposing
``register(subparsers)``; every subcommand sets ``func(args) -> int``. Every mistake is one
line on stderr starting ``memspice: error:`` and exit status 2: a
:class:`~memspice.errors.MemspiceError`, an argparse mistake (no usage dump), a file-system
error (with its path), a closed output pipe, or running out of memory.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import typing
from collections.abc import Sequence

from memspice import __version__
from memspice.errors import MemspiceError

#: Modules that contribute subcommands, in help order (missing optional ones are skipped).
COMMAND_MODULES: tuple[str, ...] = (
    "memspice.commands",
    "memspice.characterize.command",
    "memspice.characterize.size_command",
    "memspice.train.command",
    "memspice.validate.command",
    "memspice.prune.command",
    "memspice.regress.command",
    "memspice.loop.command",
    "memspice.loop.trim_command",
    "memspice.pipeline_command",
    "memspice.data_command",
    "memspice.doctor",
)

DESCRIPTION = """\
memspice couples the ngspice circuit simulator with a NumPy trainer for inverter-based
memristive neural networks (memristor crossbar columns feeding CMOS inverter neurons).

Typical flow:  characterize (inverter VTCs in SPICE) -> fit (tanh activation, device model)
-> train (hardware-constrained network) -> validate (the trained circuit back in SPICE).
`memspice run` does all of it from one TOML configuration.
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line mistakes: ``memspice: error: …`` and exit status 2, no usage dump.

    ``--help`` prints the full help as usual; subcommand parsers inherit this class.
    """

    def error(self, message: str) -> typing.NoReturn:
        where = self.prog.removeprefix("memspice").strip()
        hint = f"see 'memspice {where} --help'" if where else "see 'memspice --help'"
        text = " ".join(f"{where + ': ' if where else ''}{message}".split())
        self.exit(2, f"memspice: error: {text} ({hint})\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = ArgumentParser(
        prog="memspice",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"memspice {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name or module_name.startswith(str(exc.name)):
                continue
            raise
        module.register(subparsers)
    parser.subcommands = dict(subparsers.choices)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memspice`` console script."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # name the subcommand whose options they are not
        command = parser.subcommands.get(getattr(args, "command", None) or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except MemspiceError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return fail("the output pipe was closed before everything was written")
    except OSError as exc:
        return fail(describe_os_error(exc))
    except MemoryError:
        return fail("out of memory; make the problem smaller (fewer samples, a smaller network, fewer points)")
    except KeyboardInterrupt:
        print("memspice: interrupted", file=sys.stderr)
        return 130


def fail(message: str) -> int:
    """Print ``memspice: error: message`` as one line on stderr; return exit status 2."""
    text = " ".join(str(message).split())
    try:
        print(f"memspice: error: {text}", file=sys.stderr)
    except (BrokenPipeError, ValueError):  # stderr closed too: nothing left to tell
        pass
    return 2


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: what, and which path."""
    reason = exc.strerror or str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"permission denied ({reason})" if "ermission" not in reason else reason
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
