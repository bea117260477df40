"""The ``memspice`` command line: a thin layer over library functions.

Each feature package contributes subcommands through a ``command`` module exposing
``register(subparsers)``; every subcommand sets ``func(args) -> int``. Any
:class:`~memspice.errors.MemspiceError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from memspice import __version__
from memspice.errors import MemspiceError

#: Modules that contribute subcommands, in help order (missing optional ones are skipped).
COMMAND_MODULES: tuple[str, ...] = (
    "memspice.commands",
    "memspice.characterize.command",
    "memspice.train.command",
    "memspice.validate.command",
    "memspice.regress.command",
    "memspice.loop.command",
    "memspice.pipeline_command",
    "memspice.doctor",
)

DESCRIPTION = """\
memspice couples the ngspice circuit simulator with a NumPy trainer for inverter-based
memristive neural networks (memristor crossbar columns feeding CMOS inverter neurons).

Typical flow:  characterize (inverter VTCs in SPICE) -> fit (tanh activation, device model)
-> train (hardware-constrained network) -> validate (the trained circuit back in SPICE).
`memspice run` does all of it from one TOML configuration.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memspice`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MemspiceError as exc:
        print(f"memspice: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memspice: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
