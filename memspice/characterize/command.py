"""CLI: ``memspice characterize``, ``memspice calibrate`` and ``memspice memristor``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from memspice.cli_options import (
    add_technology_options,
    bounded,
    levels_int,
    positive_float,
    seed_int,
    rails_from_args,
    sizings_from_args,
    technology_factory,
)
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict
from memspice.sim import SimOptions

#: Fewest points of a VTC sweep that the metrics (gain, noise margins, tanh fit) can use.
MIN_SWEEP_POINTS = 21

#: Most values a grid option (loads, temperatures, supplies) may hold: each is one more curve.
MAX_GRID = 10000

LOADS_HELP = ("load grid in ohms: a comma list (1e5,2e5,9e5) or geom:START:STOP:COUNT "
              "(geometric, e.g. geom:1e5:2e6:39, PHAX's 39 loads from 0.1 to 2 MOhm)")


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """``a,b,c`` or ``geom:start:stop:count`` / ``lin:start:stop:count`` → floats.

    Raises:
        ConfigError: unparsable text, a count below 1, or non-finite numbers.
    """
    text = text.strip()
    try:
        if text.startswith(("geom:", "lin:")):
            kind, start, stop, count = text.split(":")
            n = int(count)
            if not 1 <= n <= MAX_GRID:
                raise ConfigError(f"{what}: count must be in [1, {MAX_GRID}], got {n}")
            a, b = float(start), float(stop)
            if kind == "geom" and (a <= 0 or b <= 0):
                raise ConfigError(f"{what}: a geometric grid needs positive ends, got {a:g}..{b:g}")
            values = np.geomspace(a, b, n) if kind == "geom" else np.linspace(a, b, n)
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
            if values.size > MAX_GRID:
                raise ConfigError(f"{what}: at most {MAX_GRID} values, got {values.size}")
    except ValueError as exc:
        raise ConfigError(f"cannot read {what} from {text!r}: {exc}") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ConfigError(f"{what} must be finite numbers, got {text!r}")
    return tuple(float(v) for v in values)


def parse_loads(text: str) -> tuple[float, ...]:
    """A load grid (Ω), every value positive."""
    loads = parse_floats(text, "load grid")
    bad = [v for v in loads if v <= 0]
    if bad:
        raise ConfigError(f"load grid values must be positive resistances in ohms, got {bad[0]:g}")
    return loads


def _add_tech_options(p: argparse.ArgumentParser) -> None:
    add_technology_options(p, multi_sizes=True)
    p.add_argument("--timeout", type=bounded(float, 0, lo_open=True, unit="s"), default=600.0, help="ngspice timeout per run in seconds")


def register(subparsers: Any) -> None:
    """Add the ``characterize``, ``calibrate`` and ``memristor`` subcommands."""
    p = subparsers.add_parser(
        "characterize", help="VTC, load grid, corners, temperature, supply and Monte Carlo of the inverter/neuron",
        description=(
            "Sweep the DC transfer curve of one inverter and of the two-inverter neuron (each stage "
            "output loaded to mid-rail) and tabulate V_M, peak gain, V_IL/V_IH, V_OL/V_OH, noise margins, "
            "swing, static current and power, and a tanh fit with residuals per curve. Many curves share "
            "one ngspice process (K chain copies on one .dc input sweep). Writes <section>_curves and "
            "<section>_metrics tables, PNG plots, summary.md and summary.json to --out.\n\n"
            "Monte Carlo mismatch is sampled by memspice with --seed (Pelgrom threshold shifts applied "
            "gate-referred, plus width errors), because sky130's own mismatch switch draws new values on "
            "every ngspice run and cannot be seeded."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_tech_options(p)
    p.add_argument("--loads", default="geom:1e5:2e6:39", help=LOADS_HELP + " (default geom:1e5:2e6:39)")
    p.add_argument("--load", type=positive_float, default=0.9e6, help="nominal load in ohms for the other sections (default 0.9e6)")
    p.add_argument("--corners", default="", help="corners to compare, comma list (e.g. tt,ss,ff,sf,fs)")
    p.add_argument("--temperatures", default="", help="temperatures to compare in °C, comma list (write --temperatures=-20,27,85 when the first is negative)")
    p.add_argument("--supplies", default="", help="half-supplies to compare in volts (rails ±v), comma list")
    p.add_argument("--mc", type=bounded(int, 0, 100000), default=0, help="Monte Carlo samples (default 0 = none)")
    p.add_argument("--seed", type=seed_int, default=1, help="Monte Carlo seed (default 1)")
    p.add_argument("--avt", type=bounded(float, 0, 1000), default=5.0, help="Pelgrom A_VT in mV·µm (default 5)")
    p.add_argument("--sigma-w", type=bounded(float, 0, 1), default=0.01, help="relative width sigma (default 0.01)")
    p.add_argument("--step", type=bounded(float, 0, 1, lo_open=True, unit="V"), default=1e-3, help="input sweep step in volts (default 1e-3)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format (default csv)")
    p.add_argument("--no-plots", action="store_true", help="skip PNG plots")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_characterize)

    c = subparsers.add_parser(
        "calibrate", help="fit the activation, load-aware and inverter-current models into a calibration JSON",
        description=(
            "Characterize the technology and sizing in SPICE and write the versioned calibration file the "
            "trainer reads: static tanh activation of both neuron outputs at --load (with residuals), the "
            "load-aware activation (tanh parameters as polynomials in ln G_load over --loads), the inverter "
            "output-current table (nested .dc over V_in and V_out, with its spline interpolation error), the "
            "device window, and the provenance."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_tech_options(c)
    c.add_argument("--load", type=positive_float, default=0.9e6, help="load of the static fit in ohms (default 0.9e6)")
    c.add_argument("--loads", default="geom:1e5:2e6:9", help=LOADS_HELP + " (default geom:1e5:2e6:9)")
    c.add_argument("--degree", type=bounded(int, 1, 8), default=3, help="polynomial degree of the load-aware model (default 3)")
    c.add_argument("--g-min", type=positive_float, default=None, help="device window minimum in siemens (default PHAX 120 nS)")
    c.add_argument("--g-max", type=positive_float, default=None, help="device window maximum in siemens (default PHAX 8 µS)")
    c.add_argument("--levels", type=levels_int, default=0, help="distinguishable device levels (0 = continuous)")
    c.add_argument("--device-from-model", action="store_true",
                   help="derive the window and levels from a Yakopcic pulse-train simulation "
                        "(1.3 V x 20 ns pulses, 100 per polarity) instead of PHAX's window")
    c.add_argument("--sigma", type=bounded(float, 0, 1e-3, lo_open=True, unit="S"), default=0.05e-6,
                   help="programming noise in siemens for --device-from-model levels (default 50 nS)")
    c.add_argument("--out", required=True, type=Path, help="calibration JSON file to write")
    c.add_argument("--json", action="store_true", help="print the calibration as JSON")
    c.set_defaults(func=run_calibrate)

    m = subparsers.add_parser(
        "memristor", help="characterize the Yakopcic memristor model (hysteresis, pulse trains, read linearity)",
        description=(
            "Simulate the yakopcic_phax subcircuit: pinched I-V hysteresis under a sine, the conductance read "
            "after each pulse of a set-then-reset pulse train, and a .dc read sweep; fit the window, the "
            "pulse-update nonlinearity and the levels --sigma leaves distinguishable. Writes tables, a PNG, "
            "memristor.json and memristor.md to --out."))
    m.add_argument("--amplitude", type=bounded(float, 0, 100, lo_open=True, unit="V"), default=1.3, help="pulse amplitude in volts (default 1.3)")
    m.add_argument("--width", type=bounded(float, 0, 1, lo_open=True, unit="s"), default=20e-9, help="pulse width in seconds (default 20e-9)")
    m.add_argument("--pulses", type=bounded(int, 3), default=100, help="pulses per polarity (default 100)")
    m.add_argument("--read", type=bounded(float, 0, 100, lo_open=True, unit="V"), default=0.25, help="read voltage in volts (default 0.25)")
    m.add_argument("--sigma", type=bounded(float, 0, 1e-3, lo_open=True, unit="S"), default=0.05e-6, help="programming noise in siemens (default 50 nS)")
    m.add_argument("--no-plots", action="store_true", help="skip the PNG")
    m.add_argument("--out", required=True, type=Path, help="output directory")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    m.set_defaults(func=run_memristor)


def run_characterize(args: argparse.Namespace) -> int:
    """``memspice characterize``."""
    from memspice.characterize.study import Study, run_study

    if args.mc < 0:
        raise ConfigError("--mc must not be negative")
    if not math.isfinite(args.load) or args.load <= 0:
        raise ConfigError(f"--load must be a positive resistance in ohms, got {args.load}")
    from memspice.budget import sweep_points
    from memspice.safe_io import check_output_dir

    if sweep_points(args.vdd - args.vss, args.step, "--step") < MIN_SWEEP_POINTS:
        raise ConfigError(f"--step {args.step:g} V gives fewer than {MIN_SWEEP_POINTS} points across the rails "
                          f"({args.vss:g} to {args.vdd:g} V); use a smaller step")
    check_output_dir(args.out, "--out")
    corners = tuple(c.strip() for c in args.corners.split(",") if c.strip())
    study = Study(
        make_tech=technology_factory(args), base_corner=args.corner, rails=rails_from_args(args), temperature_c=args.temp,
        sizings=sizings_from_args(args), loads_ohm=parse_loads(args.loads), load_ohm=args.load, corners=corners,
        temperatures_c=parse_floats(args.temperatures, "temperatures") if args.temperatures else (),
        supplies_v=parse_floats(args.supplies, "supplies") if args.supplies else (),
        mc_samples=args.mc, mc_seed=args.seed, a_vt_vm=args.avt * 1e-9, sigma_w=args.sigma_w, step_v=args.step,
        options=SimOptions(timeout_s=args.timeout))
    summary = run_study(study, args.out, args.format, make_plots=not args.no_plots)
    if args.json:
        print(dumps_strict(summary, default=float))
    else:
        print(f"characterization written to {args.out} ({len(summary['files'])} files)")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    """``memspice calibrate``."""
    from memspice.characterize.calibrate import calibrate
    from memspice.fit.calibration import PHAX_WINDOW, DeviceWindow, save_calibration

    from memspice.safe_io import check_output_file

    check_output_file(args.out, "--out")
    if (args.g_min is None) != (args.g_max is None):
        raise ConfigError("give both --g-min and --g-max, or neither")
    if args.levels and args.g_min is None:
        raise ConfigError("--levels applies to the window of --g-min/--g-max; give them too (PHAX's window is "
                          "continuous)")
    if args.device_from_model and args.g_min is not None:
        raise ConfigError("--device-from-model and --g-min/--g-max are alternatives; give one")
    device = PHAX_WINDOW if args.g_min is None else DeviceWindow(args.g_min, args.g_max, args.levels)
    if args.device_from_model:
        from memspice.characterize import memristor

        device = memristor.device_window(memristor.pulse_train(options=SimOptions(timeout_s=args.timeout)),
                                         args.sigma)
    make = technology_factory(args)
    tech = make(args.corner, rails_from_args(args), args.temp)
    sizing = sizings_from_args(args)
    if len(sizing) != 1:
        raise ConfigError("calibrate takes exactly one sizing")
    loads = parse_loads(args.loads)
    cal = calibrate(tech, sizing[0], load_ohm=args.load, loads_ohm=loads, degree=args.degree,
                    device=device, options=SimOptions(timeout_s=args.timeout),
                    command=f"memspice calibrate --tech {args.tech} --corner {args.corner}")
    save_calibration(cal, args.out)
    if args.json:
        print(dumps_strict(cal.to_dict()))
    else:
        a = cal.activation
        print(f"calibration written to {args.out}: inverting c4={a.inverting.c4:.4g}/V "
              f"(rms {cal.residuals['inverting_rms'] * 1e3:.3g} mV), noninverting c4={a.noninverting.c4:.4g}/V "
              f"(rms {cal.residuals['noninverting_rms'] * 1e3:.3g} mV)")
    return 0


def run_memristor(args: argparse.Namespace) -> int:
    """``memspice memristor``."""
    from memspice.budget import check_pulse_train
    from memspice.characterize.memristor_report import memristor_study
    from memspice.safe_io import check_output_dir

    check_pulse_train(args.pulses, args.width)
    check_output_dir(args.out, "--out")

    summary = memristor_study(args.out, amplitude_v=args.amplitude, width_s=args.width, n_pulses=args.pulses,
                              read_v=args.read, sigma_siemens=args.sigma, make_plots=not args.no_plots)
    if args.json:
        print(dumps_strict(summary, default=float))
    else:
        print(f"memristor characterization written to {args.out}")
    return 0
