"""CLI: ``memspice size`` — sweep inverter sizes over a load grid and pick a design."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from memspice.characterize.command import LOADS_HELP, parse_floats, parse_loads
from memspice.cli_options import add_technology_options, rails_from_args, technology_factory
from memspice.errors import ConfigError
from memspice.sim import SimOptions
from memspice.safe_io import dumps_strict

_AXES = (("wn", "n-channel widths of one device"), ("wp", "p-channel widths of one device"),
         ("ln", "n-channel lengths"), ("lp", "p-channel lengths"))


def register(subparsers: Any) -> None:
    """Add the ``size`` subcommand."""
    p = subparsers.add_parser(
        "size", help="sweep inverter sizes over a load grid and pick the least-power design that meets targets",
        conflict_handler="resolve",  # --wn/--wp/--ln/--lp take lists here
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Sweep Wn, Wp, Ln, Lp and parallel devices (mn, mp: SPICE m, so a large effective width stays "
            "inside a PDK's model bins) over a load grid. Tabulates per size x load both stages' V_M (relative "
            "to mid-rail), peak gain, swing, noise margins and tanh-fit residual, and the neuron's static power; "
            "judges every size at the design load(s), worst of both stages, and picks the design that meets "
            "the targets at the least static power. Hundreds of sizes share a few ngspice processes (one .dc "
            "sweep each). Writes sizing_table and sizing_designs (CSV, and Parquet when pyarrow is installed), "
            "heat maps of V_M and gain over size x load, the chosen design's VTCs, summary.md and summary.json "
            "to --out.\n\nAxis lists are comma lists or lin:/geom:START:STOP:COUNT, in µm; the default grid is "
            "the technology's (see docs/sizing.md)."))
    add_technology_options(p)
    grid = p.add_argument_group("size grid (µm; default: the technology's sizing grid)")
    for name, what in _AXES:
        grid.add_argument(f"--{name}", default=None, metavar="LIST", help=f"{what} in µm, e.g. 0.5,1,2")
    grid.add_argument("--mn", default=None, metavar="LIST", help="parallel n-channel devices, e.g. 1,2,4")
    grid.add_argument("--mp", default=None, metavar="LIST", help="parallel p-channel devices, e.g. 1,2")
    p.add_argument("--loads", default="geom:1e5:2e6:39", help=LOADS_HELP + " (default geom:1e5:2e6:39)")
    p.add_argument("--design-loads", default="0.9e6",
                   help="load(s) in ohms the targets must hold at, comma list, or 'all' for the whole grid "
                        "(default 0.9e6)")
    targets = p.add_argument_group("targets (at every design load; V_M and swing: worst of both stages)")
    targets.add_argument("--max-vm", type=float, default=10.0, help="largest |V_M - mid-rail| in mV (default 10)")
    targets.add_argument("--min-gain", type=float, default=50.0, help="smallest neuron peak gain in V/V (default 50)")
    targets.add_argument("--min-swing", type=float, default=95.0,
                         help="smallest output swing in %% of VDD - VSS (default 95)")
    targets.add_argument("--max-tanh-rms", type=float, default=None, help="largest neuron tanh-fit RMS residual in mV (default: none)")
    targets.add_argument("--min-noise-margin", type=float, default=None,
                         help="smallest noise margin NM_L/NM_H in mV (default: none)")
    speed = p.add_argument_group(
        "speed and energy (a transient at the design loads for every size that meets the static targets)")
    speed.add_argument("--settle", action="store_true",
                       help="tabulate each candidate's settling time and energy to settle (implied by --objective "
                            "energy and --max-settle)")
    speed.add_argument("--objective", choices=("power", "energy"), default="power",
                       help="choose the least static power (default) or the least energy per inference: energy "
                            "to settle + --driver-power x settling time")
    speed.add_argument("--max-settle", type=float, default=None, metavar="NS",
                       help="largest settling time of the neuron outputs in ns (default: none)")
    speed.add_argument("--driver-power", type=float, default=0.0, metavar="UW",
                       help="input drivers' power per neuron in µW, counted over the settling time (default 0)")
    speed.add_argument("--source-ohm", type=float, default=1e4,
                       help="resistance driving each neuron input in the transient, in ohms: a crossbar column's "
                            "Thevenin resistance (default 1e4)")
    speed.add_argument("--settle-step", type=float, default=2.0, metavar="PCT",
                       help="input step of the transient: ± this %% of VDD - VSS around the neuron's threshold "
                            "(default 2)")
    speed.add_argument("--settle-window", type=float, default=5000.0, metavar="NS",
                       help="time per input edge in ns; an output still moving at its end has not settled "
                            "(default 5000)")
    p.add_argument("--network", type=Path, default=None, metavar="DIR",
                   help="a trained network (memspice train --out DIR): also tabulate which size each hidden "
                        "layer's load calls for (judged at its median and heaviest neuron load)")
    p.add_argument("--step", type=float, default=1e-3, help="input sweep step in volts (default 1e-3)")
    p.add_argument("--timeout", type=float, default=600.0, help="ngspice timeout per run in seconds")
    p.add_argument("--allow-unmet", action="store_true",
                   help="when no design meets the targets, still write the tables (and exit 0) instead of failing")
    p.add_argument("--no-plots", action="store_true", help="skip PNG plots")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_size)


def grid_from_args(args: argparse.Namespace):  # noqa: ANN201 - SizingGrid (imported lazily)
    """The size grid of ``--wn/--wp/--ln/--lp/--mn/--mp`` over the technology's default grid."""
    from memspice.characterize.presets import default_grid
    from memspice.characterize.sizing import SizingGrid

    base = default_grid(args.tech)
    given = {name: getattr(args, name) for name, _ in _AXES}
    if base is None and not all(given.values()):
        raise ConfigError(f"--tech {args.tech} has no default size grid: give --wn, --wp, --ln and --lp (µm)")
    axes: dict[str, Any] = {}
    for name, _ in _AXES:
        text = given[name]
        axes[f"{name}_m"] = getattr(base, f"{name}_m") if text is None else tuple(
            v * 1e-6 for v in parse_floats(text, f"--{name}"))
    for name in ("mn", "mp"):
        text = getattr(args, name)
        if text is None:
            axes[name] = getattr(base, name) if base is not None else (1,)
        else:
            values = parse_floats(text, f"--{name}")
            if not all(v >= 1 and float(v).is_integer() for v in values):
                raise ConfigError(f"--{name} must list whole numbers of parallel devices ≥ 1, got {text!r}")
            axes[name] = tuple(int(v) for v in values)
    return SizingGrid(**axes)


def run_size(args: argparse.Namespace) -> int:
    """``memspice size``."""
    from memspice.characterize.size_report import write_sizing
    from memspice.characterize.layer_sizing import layer_loads, size_layers
    from memspice.characterize.sizing import Targets, run_sizing
    from memspice.characterize.sweeps import Condition, load_copies, run_family

    def mv(value: float | None, flag: str) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number")
        return value * 1e-3

    from memspice.characterize.settling import SettleSpec

    for flag, value in (("--max-settle", args.max_settle), ("--driver-power", args.driver_power),
                        ("--source-ohm", args.source_ohm), ("--settle-step", args.settle_step),
                        ("--settle-window", args.settle_window)):
        if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and flag != "--driver-power")):
            raise ConfigError(f"{flag} must be a positive finite number, got {value!r}")
    targets = Targets(max_abs_v_m_v=mv(args.max_vm, "--max-vm") or 0.0, min_neuron_gain=args.min_gain,
                      min_swing_fraction=args.min_swing / 100, max_tanh_rms_v=mv(args.max_tanh_rms, "--max-tanh-rms"),
                      min_noise_margin_v=mv(args.min_noise_margin, "--min-noise-margin"),
                      max_settle_s=None if args.max_settle is None else args.max_settle * 1e-9)
    settle = None
    if args.settle or args.objective == "energy" or args.max_settle is not None:
        settle = SettleSpec(source_ohm=args.source_ohm, step_fraction=args.settle_step / 100,
                            window_s=args.settle_window * 1e-9)
    tech = technology_factory(args)(args.corner, rails_from_args(args), args.temp)
    grid = grid_from_args(args)
    loads = parse_loads(args.loads)
    design = loads if args.design_loads.strip() == "all" else parse_loads(args.design_loads)
    options = SimOptions(timeout_s=args.timeout)
    per_layer = []
    if args.network is not None:
        from memspice.train.network_io import load_network

        per_layer = layer_loads(load_network(args.network).conductances)
        if not per_layer:
            raise ConfigError(f"the network in {args.network} has no hidden layer to size")
    extra = [load for _, _, median, heaviest in per_layer for load in (median, heaviest)]
    result = run_sizing(tech, grid, loads, design_loads_ohm=design, targets=targets, step_v=args.step,
                        options=options, require=not args.allow_unmet, extra_loads_ohm=extra, settle=settle,
                        objective=args.objective, driver_power_w=args.driver_power * 1e-6)
    layers = size_layers(result, per_layer) if per_layer else None
    curves = None
    if result.chosen_sizing is not None and not args.no_plots:
        shown = sorted(set(loads[:: max(1, len(loads) // 8)]) | set(result.design_loads_ohm))
        curves = run_family([Condition(tech)], load_copies([result.chosen_sizing], shown), step_v=args.step,
                            options=options, fit=False).curves
    summary = write_sizing(result, args.out, make_plots=not args.no_plots, chosen_curves=curves, layers=layers)
    if args.json:
        print(dumps_strict(summary, default=float))
    elif summary["chosen"] is None:
        print(f"no design meets the targets; tables written to {args.out}")
    else:
        c = summary["chosen"]
        print(f"chosen: {c['description']} — |V_M| {c['worst_abs_v_m_v'] * 1e3:.3g} mV, neuron gain "
              f"{c['min_neuron_gain']:.3g}, swing {100 * c['min_swing_fraction']:.4g} %, neuron tanh RMS "
              f"{c['neuron_tanh_rms_v'] * 1e3:.3g} mV, static power {c['static_power_w'] * 1e9:.4g} nW"
              + (f", settles in {c['settle_s'] * 1e9:.4g} ns, {c['energy_per_inference_j'] * 1e12:.4g} pJ per "
                 "inference" if c.get("settle_s") is not None and math.isfinite(c["settle_s"]) else "")
              + f"; written to {args.out}")
    return 0
