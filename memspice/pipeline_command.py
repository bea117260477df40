"""``memspice run``: the whole story from one configuration."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="the main job: characterize, calibrate, train, validate in SPICE, close the loop, report",
        description=(
            "Run the full memspice pipeline from one TOML configuration (default: the built-in\n"
            "card and scikit-learn's digits, a few minutes on 2 cores):\n\n"
            "  characterize  inverter and neuron VTCs in ngspice, load family, metrics\n"
            "  calibrate     tanh activation fits and the device window -> calibration.json\n"
            "  train         PHAX-constrained network + float tanh baseline of the same topology\n"
            "  validate      every test sample through the full-network deck in ngspice\n"
            "  report        report.md / report.html with plots, summary.json\n\n"
            "Each stage writes into RUN_DIR/<stage>/; a stage whose configuration and inputs are\n"
            "unchanged is skipped on the next run, an interrupted one resumes (training from its\n"
            "checkpoint, validation batch by batch); --force redoes everything.\n\n"
            "Examples:\n"
            "  memspice run                                   # embedded default into runs/default\n"
            "  memspice run examples/mnist_sky130.toml --run-dir runs/mnist\n"
            "  memspice run --print-default-config > my.toml  # start your own configuration"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", default=None, help="TOML configuration (default: built-in defaults)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--force", action="store_true", help="redo every stage even if unchanged")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    noise.add_argument("-v", "--verbose", action="store_true", help="debug messages on the console too")
    p.add_argument("--json", action="store_true", help="print the JSON summary at the end")
    p.add_argument("--print-default-config", action="store_true", help="print the default configuration as TOML and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from memspice.errors import ConfigError
    from memspice.pipeline.config import default_config_toml, load_config
    from memspice.pipeline.run import run_pipeline
    from memspice.safe_io import dumps_strict

    if args.print_default_config:
        print(default_config_toml(), end="")
        return 0
    config_path = Path(args.config) if args.config else None
    config = load_config(config_path)
    name = config_path.stem if config_path else "default"
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name
    if config_path is not None and (run_dir / "config.toml").resolve() == config_path.resolve():
        raise ConfigError(f"the run would overwrite its own configuration {config_path} with run_dir/config.toml; "
                          "choose another --run-dir or rename the configuration file")
    summary = run_pipeline(config, run_dir, force=args.force, quiet=args.quiet, verbose=args.verbose)
    if args.json:
        print(dumps_strict(summary, indent=2, default=str))
    else:
        print(f"report: {run_dir / 'report.md'}  (and report.html, summary.json)")
    return 0
