"""``memspice regress``: re-simulate the golden decks and report drift (or regenerate them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from memspice.cli_options import parse_model_roots
from memspice.errors import ConfigError
from memspice.io import check_output_path, write_text_atomic

GOLDEN_DIR_NAME = "netlists"

DESCRIPTION = """\
Re-simulate every golden deck in parallel and compare it with its goldens.

Each case lives in the golden directory as three files:
  <case>.cir         the emitted deck, simulated exactly as stored
  <case>.golden.csv  the golden signals (first column: sweep value or time)
  <case>.meta.json   tolerance per signal (|new - golden| <= abs + rel*|golden|),
                     interpreter settings, ngspice version and SHA-256 of every model file

Cases are defined in memspice.regress.cases (decks built from the library's builders), so
three kinds of findings are reported separately:
  numeric drift        a stored deck's signals moved beyond tolerance        (fails)
  netlist text drift   the deck built now differs from the stored deck text  (fails;
                       the new deck is simulated too, showing which signals it moves)
  environment changed  another ngspice version or changed model files        (reported;
                       fails only with --strict-env)
A deck that does not simulate is an error for that deck; the others still run. Cases
whose technology is not installed (sky130) are reported as unavailable.

Exit status: 0 all passed, 1 a failure or error, 2 a usage or setup error.
"""

EPILOG = """\
examples:
  memspice regress                              check all cases in ./netlists
  memspice regress --case neuron_load_builtin   check one case
  memspice regress --junit out/regress.xml --report out/regress.json
  memspice regress --update                     regenerate all goldens (shows what changed)
  memspice regress --model-root sky130_pdk=/new/pdk/libs   test a new model drop
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``regress`` subcommand."""
    parser = subparsers.add_parser(
        "regress",
        help="re-simulate golden decks and report drift",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", type=Path, default=None, metavar="DIR",
                        help="golden directory (default: netlists/ of the project containing the current directory)")
    parser.add_argument("--case", nargs="+", default=None, metavar="NAME",
                        help="only these cases (default: all; stored decks without a case are then errors)")
    parser.add_argument("--update", action="store_true",
                        help="regenerate the goldens of the selected cases on purpose and show what changed")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                        help="parallel ngspice processes (default: CPU count)")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of the table")
    parser.add_argument("--report", type=Path, default=None, metavar="PATH", help="also write the JSON report to PATH")
    parser.add_argument("--junit", type=Path, default=None, metavar="PATH", help="also write JUnit XML to PATH (for CI)")
    parser.add_argument("--strict-env", action="store_true",
                        help="fail when the ngspice version or a model file differs from the recorded one")
    parser.add_argument("--model-root", action="append", default=[], metavar="ALIAS=DIR",
                        help="point a model root alias at another directory (repeatable)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="S", help="per-deck simulation timeout (s)")
    parser.add_argument("--ngspice", default=None, metavar="EXE",
                        help="ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice on PATH)")
    parser.set_defaults(func=run)


def find_golden_dir(explicit: Path | None, start: Path) -> Path:
    """The golden directory: ``explicit`` if given, else ``netlists/`` of the enclosing project.

    The project is the nearest of ``start`` and its parents that holds ``netlists/``
    beside a ``pyproject.toml`` (or ``start`` itself holding ``netlists/``).

    Raises:
        ConfigError: nothing found.
    """
    if explicit is not None:
        if not explicit.is_dir():
            raise ConfigError(f"golden directory {explicit} does not exist")
        return explicit
    if (start / GOLDEN_DIR_NAME).is_dir():
        return start / GOLDEN_DIR_NAME
    for folder in start.parents:
        if (folder / GOLDEN_DIR_NAME).is_dir() and (folder / "pyproject.toml").is_file():
            return folder / GOLDEN_DIR_NAME
    raise ConfigError(f"no {GOLDEN_DIR_NAME}/ directory found from {start} upwards; pass --dir")


def run(args: argparse.Namespace) -> int:
    """Run the check (or the update); return the exit status."""
    from memspice.regress import report as render
    from memspice.regress.runner import check, update
    from memspice.sim import SimOptions

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    directory = args.dir if args.update and args.dir is not None else find_golden_dir(args.dir, Path(os.getcwd()))
    for path in (args.report, args.junit):
        if path is not None:  # refuse a bad destination before minutes of simulation, not after
            check_output_path(path, [directory / name for name in os.listdir(directory)] if directory.is_dir() else [])
    options = SimOptions(timeout_s=args.timeout, ngspice=args.ngspice)
    roots = parse_model_roots(args.model_root)
    if args.update:
        updates = update(directory, names=args.case, options=options, workers=args.jobs, model_roots=roots)
        print(render.update_text(updates), end="")
        return 1 if any(u.status == "error" for u in updates) else 0
    result = check(directory, names=args.case, options=options, workers=args.jobs, model_roots=roots)
    data = render.check_json(result, args.strict_env)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render.check_text(result, args.strict_env), end="")
    if args.report is not None:
        write_text_atomic(args.report, json.dumps(data, indent=2) + "\n")
    if args.junit is not None:
        write_text_atomic(args.junit, render.junit_xml(result, args.strict_env))
    if not result.passed(args.strict_env):
        print("memspice regress: drift or errors found (see above)", file=sys.stderr)
        return 1
    return 0
