"""``memspice validate``: a trained network back in SPICE, at speed, with energy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from memspice.cli_options import (add_technology_options, bounded, nonnegative_int, positive_int, seed_int,
                                  sizing_from_args, technology_from_args, unit_interval)
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict

#: TransientSpec's defaults in ns (kept equal by a test; the CLI does not import the validation code
#: until it runs). Until this was tied, the CLI's 50 ns left every sample "not settled".
DEFAULT_PERIOD_NS = 1000.0
DEFAULT_RISE_NS = 0.1
DEFAULT_POINTS_PER_PERIOD = 200

DESCRIPTION = """\
Build the full circuit of a trained network (rails, differential input rows driven by the
data, every crossbar conductance, every two-inverter neuron), evaluate it in ngspice on many
samples at once, and compare every neuron output with the trained model.

Speed: samples are batched (--batch-size per deck): one DC sweep of an index source drives
all inputs through PWL B-sources, so one ngspice process evaluates hundreds of samples; one
process runs per core (--workers) or, with --scheduler tcp://HOST:PORT, on a Dask cluster.
Samples are ordered along one nearest-neighbour path through the model's neuron voltages, so
Newton starts each operating point close to the last one, and the path is cut into batches of
equal predicted Newton work, so the workers finish together.

Energy: static power per inference at every operating point, from the rails' currents (the
inverters and the crossbars they drive) and from the input drivers' currents (the first
crossbar, which the rails do not feed; often most of the power).
--transient N also drives the first N samples as PWL steps (--period, --rise) and measures
the settling delay (all last-layer outputs within 10 % of their step) and the energy per
sample (integral of V*I over the rails and over the input drivers). They run in decks of 4 samples (in parallel), each
deck starting from a reset step with all inputs at mid-rail. --points-per-period bounds
ngspice's time step to period/points where the outputs move slowly; its own error control takes
smaller steps on fast edges, so 200 points gave the same delays (within 1 ns) as 1,000 and
20,000 on a trained 64-32-10, 3-4x faster than 1,000.

Non-idealities (in SPICE; the trained model stays ideal): --variation (lognormal sigma),
--fault-rate (stuck at g_max/g_min, half each, drawn anew), --wire-ohm (a wire resistor
between adjacent crossbar cells along every row and column), all seeded with --seed.
A known fault map is built exactly, in SPICE and in the model: the network folder's own
fault_map.npz (from `memspice train --fault-rate`; a line on stderr says so) or --fault-map
FILE. With variation or faults the report also runs the model on the drawn conductances,
which separates what the devices cost from the model's own error. --draws N repeats the run for seeds --seed ... --seed+N-1
(Monte Carlo) and summarises the spread in draws.csv, draws.json and draws.png.

Conv, pooled and masked networks (network files with a `layers` description) are built
flat, one resistor per present device, no driver on a pruned input row, and compared with
the coupled model when their calibration has an inverter current model, else with the
static one (--evaluator static|coupled chooses). Their stuck devices are per physical device
(a per-device fault_map.npz from `memspice train --network ... --fault-rate`, or --fault-rate
drawn device by device); variation and wire resistance are not drawn for them here. A
network trained device by device (`memspice train --per-replica`, format version 3) is
built with its own conductance in every device and the fault map it was trained with; the
summary's fault_map records the map's rates and seed. Their
report adds one image's feature maps, SPICE beside the model.

Outputs in --out: samples.parquet (per-sample SPICE and model voltages, static power, and
delay and energy for the transient samples), neuron_errors.csv, disagreements.csv,
summary.json, report.md with scatter.png, error_histograms.png, confusion.png and (with
--transient) transient.png, the first transient deck's output and power waveforms, and
batches/*.npz (one file per finished batch, written atomically).
A re-run with --resume reuses finished batches; --force starts over. A failed batch does
not stop the others: the run finishes, names the batch, keeps its ngspice directory under
--out/failed and exits with status 1.
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``validate`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("validate", help="simulate a trained network in SPICE and compare with the model",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", type=Path, nargs="?", default=None,
                   help="folder with network.json + network.npz (from `memspice train`): a dense network, "
                        "or a conv, pooled or masked one (network files of any version)")
    p.add_argument("--network", dest="network_dir", type=Path, default=None, metavar="DIR",
                   help="the network folder, as an option (instead of the positional argument)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["digits", "iris", "breast_cancer", "mnist"], default="digits",
                      help="dataset (default: digits)")
    data.add_argument("--mnist-dir", type=Path, default=None, help="folder with MNIST IDX files")
    data.add_argument("--split", choices=["test", "train", "all"], default="test",
                      help="which samples: the training command's test split (default), train split, or all")
    data.add_argument("--samples", type=positive_int, default=None, help="use at most this many samples (default: all)")
    data.add_argument("--seed", type=seed_int, default=0,
                      help="seed of the train/test split and of the non-ideality draws (default: 0)")
    circuit = p.add_argument_group("circuit")
    circuit.add_argument("--calibration", type=Path, default=None,
                         help="calibration JSON; must match the one the network was trained with "
                              "(default: the network's own)")
    circuit.add_argument("--evaluator", default=None,
                         help="model to compare SPICE with: static, load-aware or coupled "
                              "(default: the one the network was trained with)")
    add_technology_options(p, rails=False)
    nonideal = p.add_argument_group("non-idealities (SPICE only)")
    nonideal.add_argument("--variation", type=bounded(float, 0, 10), default=0.0, help="lognormal device variation sigma, e.g. 0.05")
    nonideal.add_argument("--fault-rate", type=unit_interval, default=0.0, help="fraction of stuck devices, e.g. 0.01")
    nonideal.add_argument("--fault-map", type=Path, default=None, metavar="FILE",
                          help="stuck devices from this fault map (fault_map.npz, e.g. from `memspice train "
                               "--fault-rate`; default: the network folder's own fault_map.npz, if any)")
    nonideal.add_argument("--wire-ohm", type=bounded(float, 0, 1e9, unit="Ω"), default=0.0, help="wire resistance per crossbar cell in Ω")
    nonideal.add_argument("--draws", type=bounded(int, 1, 10000), default=1, metavar="N",
                          help="Monte Carlo: validate N device draws (seeds --seed ... --seed+N-1) into "
                               "--out/draw_NNN, with draws.csv, draws.json and draws.png (default: 1, one run)")
    run = p.add_argument_group("execution")
    run.add_argument("--batch-size", type=bounded(int, 1, 100000), default=500, help="samples per ngspice deck: the samples go into ceil(N / this) batches of equal predicted Newton work, so sizes differ a little (default: 500)")
    run.add_argument("--workers", type=bounded(int, 1, 4096), default=None, help="parallel ngspice processes (default: CPU count)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    run.add_argument("--timeout", type=bounded(float, 0, lo_open=True, unit="s"), default=600.0, help="time limit per batch in s (default: 600)")
    run.add_argument("--ngspice", default=None, metavar="EXE",
                     help="ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice on PATH); "
                          "scripts/build_ngspice.sh builds ngspice 46 with KLU and --enable-predictor, "
                          "about twice as fast (docs/simulator.md)")
    run.add_argument("--transient", type=nonnegative_int, default=0, metavar="N",
                     help="also run the first N samples in transient mode (delay, energy; default: 0)")
    run.add_argument("--period", type=bounded(float, 0, 1e9, lo_open=True, unit="ns"), default=DEFAULT_PERIOD_NS,
                     help=f"transient: time per sample in ns; outputs that have not settled within it get no "
                          f"delay (default: {DEFAULT_PERIOD_NS:g}; subthreshold networks at ±0.25 V take "
                          "100-500 ns)")
    run.add_argument("--rise", type=bounded(float, 0, 1e9, lo_open=True, unit="ns"), default=DEFAULT_RISE_NS,
                     help=f"transient: input ramp in ns (default: {DEFAULT_RISE_NS:g})")
    run.add_argument("--points-per-period", type=bounded(int, 2, 1000000), default=DEFAULT_POINTS_PER_PERIOD, metavar="P",
                     help="transient: the largest time step is period/P (default: "
                          f"{DEFAULT_POINTS_PER_PERIOD}; ngspice steps finer on fast edges by itself)")
    run.add_argument("--out", type=Path, default=Path("validate_run"), help="run directory (default: ./validate_run)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="reuse batches finished by an earlier run")
    mode.add_argument("--force", action="store_true", help="discard earlier results in --out")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=run_command)
    return p


def _samples(args: argparse.Namespace, vdd: float, vss: float) -> tuple[Any, Any]:
    """Input voltages and labels, split exactly as ``memspice train`` splits them."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset

    data = load_dataset(args.dataset, args.mnist_dir)
    if args.split != "all":
        parts = benchmark_split(data, 0.2, args.seed)
        data = parts[1] if args.split == "test" else parts[0]
    if args.samples is not None:
        data = data.subset(slice(0, args.samples))
    return features_to_voltages(data.features, vdd, vss), data.labels


SIZE_OPTIONS = ("wn", "wp", "ln", "lp")


def sizing_of(args: argparse.Namespace, network: Any) -> Any:
    """The sizing to simulate at: the one the network's calibration records, else the options'.

    ``--wn/--wp/--ln/--lp/--mn/--mp`` may repeat the recorded sizes; a different value is refused, since
    a circuit simulated at other sizes than its model was calibrated at disagrees with it.
    """
    from memspice.validate.api import describe_sizing, network_sizing, recorded_sizing

    recorded = recorded_sizing(network.calibration)
    if recorded is None:
        return sizing_from_args(args)
    for name in SIZE_OPTIONS:
        given = getattr(args, name, None)
        value = getattr(recorded, f"{name}_m")
        if given is not None and abs(given * 1e-6 - value) > 1e-9 * value:
            raise ConfigError(f"--{name} {given:g} µm differs from the sizing the network's calibration was made at "
                              f"({describe_sizing(recorded)}); drop --{name}, or calibrate and train again at "
                              "the new size")
    for name in ("mn", "mp"):
        given = getattr(args, name, None)
        if given is not None and given != getattr(recorded, name):
            raise ConfigError(f"--{name} {given} differs from the sizing the network's calibration was made at "
                              f"({describe_sizing(recorded)}); drop --{name}, or calibrate and train again at "
                              "the new size")
    return network_sizing(network)


def check_devices(tech: Any, network: Any) -> None:
    """Refuse to simulate with other MOSFET models than the network's calibration was made with.

    Corner and temperature may differ (validating at another corner is a robustness study);
    the model family and devices may not: the circuit would not be the one that was trained.
    """
    recorded = network.calibration.source
    given = tech.describe()
    for key, option in (("technology", "--tech"), ("nmos", "--flavor/--nmos"), ("pmos", "--flavor/--pmos")):
        if key in recorded and recorded[key] != given[key]:
            raise ConfigError(f"the network's calibration was made with {key} {recorded[key]!r}, not {given[key]!r}; "
                              f"pass the same {option} (or calibrate and train again with these devices)")


def network_dir(args: argparse.Namespace) -> Path:
    """The network folder: the positional argument or ``--network`` (exactly one).

    Raises:
        ConfigError: neither or both given.
    """
    given = [d for d in (args.network, getattr(args, "network_dir", None)) if d is not None]
    if len(given) != 1:
        raise ConfigError(("give the network folder once: as the first argument or with --network DIR"
                           if given else "no network folder: give it as the first argument or with --network DIR")
                          + " (see memspice validate --help)")
    return Path(given[0])


def load_any_network(directory: Path, calibration: Any = None) -> Any:
    """A dense :class:`TrainedNetwork`, or a :class:`TrainedCrossbarNetwork` with conv, pooling or
    masks, from network files of any version (dense files read as they always were)."""
    from memspice.train.conv_io import load_layered_network
    from memspice.train.network_io import JSON_NAME, load_network

    try:
        import json

        meta = json.loads((Path(directory) / JSON_NAME).read_text(encoding="utf-8"))
        layered = isinstance(meta, dict) and "topology" in meta and meta["topology"] is None
    except (OSError, ValueError):
        layered = False  # the dense reader names the problem
    if not layered:
        return load_network(directory, calibration)
    from memspice.validate.api import as_validated

    return as_validated(load_layered_network(directory, calibration))


_DENSE_ONLY = (("variation", 0.0, "--variation"), ("wire_ohm", 0.0, "--wire-ohm"), ("draws", 1, "--draws"))


def _layered_faults(args: argparse.Namespace, network: Any, directory: Path) -> Any:
    """The known per-device map SPICE builds: ``--fault-map``, else the network's own (recorded in
    a per-device network file, or the folder's ``fault_map.npz``), or None; says on stderr which.

    Raises:
        ConfigError: a map that does not fit the network (naming the layer), or a network whose
            training summary records a map that is missing from its folder.
    """
    from memspice.train.fault_map import FAULT_MAP_NAME, describe_fault_map, load_device_fault_map

    own = Path(directory) / FAULT_MAP_NAME
    if getattr(args, "fault_map", None) is not None:
        faults = load_device_fault_map(args.fault_map, network.spec)
        replaced = " (instead of the network's own)" if network.faults is not None or own.is_file() else ""
        print(f"memspice: fault map {args.fault_map}{replaced}: {describe_fault_map(faults)}", file=sys.stderr)
        return faults
    if network.faults is not None:
        faults = network.faults
    elif own.is_file():
        faults = load_device_fault_map(own, network.spec)
    elif isinstance(network.metadata.get("fault_map"), dict):
        raise ConfigError(f"the network in {directory} was trained with a fault map, but {own} is missing")
    else:
        return None
    print(f"memspice: fault map {own} (the network's own): {describe_fault_map(faults)}", file=sys.stderr)
    return faults


def _stuck_devices(args: argparse.Namespace, network: Any, faults: Any) -> Any:
    """The network's devices (per device, as programmed) with ``faults`` and the devices
    ``--fault-rate`` draws stuck, or None when no device is stuck."""
    from memspice.network.wiring import network_wiring
    from memspice.train.conv_io import stuck_devices
    from memspice.train.hardware import FaultMap
    from memspice.train.layered_devices import DeviceSettings, draw_devices

    if faults is None and args.fault_rate == 0:
        return None
    if args.fault_rate > 0:
        draw = draw_devices(network, DeviceSettings(fault_rate=args.fault_rate, seed=args.seed), faults)
        faults = FaultMap(draw.stuck_high, draw.stuck_low)
    return stuck_devices(network_wiring(network.spec), network.device_conductances(), faults, network.window)


def _layered_devices(args: argparse.Namespace, network: Any, directory: Path) -> Any:
    """Per-device conductances with the stuck devices of ``--fault-map`` (or the network's own
    map) and of ``--fault-rate``, or None when no device is stuck; says on stderr which map
    SPICE builds.

    Raises:
        ConfigError: see :func:`_layered_faults`.
    """
    return _stuck_devices(args, network, _layered_faults(args, network, directory))


def _run_layered(args: argparse.Namespace, network: Any, directory: Path) -> Any:
    """``memspice validate`` of a conv, pooled or masked network."""
    from memspice.validate.api import RunSettings, validate_network
    from memspice.validate.decks import TransientSpec
    from memspice.validate.layered import check_memory
    from memspice.validate.progress import batch_bars

    for name, default, option in _DENSE_ONLY:
        if getattr(args, name, default) != default:
            raise ConfigError(f"{option} is not available for conv, pooled or masked networks yet "
                              "(validate_network takes drawn per-device conductances)")
    import dataclasses

    faults = _layered_faults(args, network, directory)
    devices = _stuck_devices(args, network, faults)
    if faults is not None and not network.spec.is_dense:  # the summary records the map SPICE builds
        network = dataclasses.replace(network, faults=faults)
    cal = network.calibration
    tech, sizing = technology_from_args(args, rails=cal.rails), sizing_of(args, network)
    check_devices(tech, network)
    x, labels = _samples(args, cal.rails.vdd, cal.rails.vss)
    check_memory(network.spec, len(x), args.batch_size)
    settings = RunSettings(batch_size=args.batch_size, workers=args.workers, scheduler=args.scheduler,
                           timeout_s=args.timeout, transient_samples=args.transient,
                           transient=TransientSpec(args.period * 1e-9, args.rise * 1e-9, args.points_per_period),
                           resume=args.resume, force=args.force, ngspice=args.ngspice)
    with batch_bars(disable=True if args.quiet else None) as progress:
        return validate_network(network, tech, x, labels, args.out, sizing=sizing, settings=settings,
                                evaluator=args.evaluator, progress=progress, device_conductances=devices)


def run_validation(args: argparse.Namespace) -> Any:
    """Do the work of ``memspice validate`` and return the :class:`ValidationReport`."""
    from memspice.fit.calibration import load_calibration
    from memspice.train.network_io import TrainedNetwork
    from memspice.validate.api import RunSettings, validate_network
    from memspice.validate.decks import TransientSpec
    from memspice.validate.nonideal import NonIdeality
    from memspice.validate.progress import batch_bars

    from memspice.budget import check_validation

    calibration = load_calibration(args.calibration) if args.calibration is not None else None
    directory = network_dir(args)
    network = load_any_network(directory, calibration)
    if not isinstance(network, TrainedNetwork):
        return _run_layered(args, network, directory)
    network = _with_fault_map(network, directory, getattr(args, "fault_map", None))
    cal = network.calibration
    tech, sizing = technology_from_args(args, rails=cal.rails), sizing_of(args, network)
    check_devices(tech, network)
    x, labels = _samples(args, cal.rails.vdd, cal.rails.vss)
    check_validation(network.topology, len(x), args.batch_size)
    nonideal = NonIdeality(args.variation, args.fault_rate, args.wire_ohm, args.seed,
                           cal.device.g_min_siemens, cal.device.g_max_siemens)
    settings = RunSettings(batch_size=args.batch_size, workers=args.workers, scheduler=args.scheduler,
                           timeout_s=args.timeout, transient_samples=args.transient,
                           transient=TransientSpec(args.period * 1e-9, args.rise * 1e-9, args.points_per_period),
                           resume=args.resume, force=args.force, ngspice=args.ngspice)
    with batch_bars(disable=True if args.quiet else None) as progress:  # on stderr, shown only on a terminal
        if args.draws != 1:
            from memspice.validate.montecarlo import validate_draws

            return validate_draws(network, tech, x, labels, args.out, nonideal, args.draws, settings,
                                  sizing=sizing, evaluator=args.evaluator, progress=progress)
        return validate_network(network, tech, x, labels, args.out, sizing=sizing, nonideal=nonideal,
                                settings=settings, evaluator=args.evaluator, progress=progress)


def _with_fault_map(network: Any, directory: Path, fault_map: Path | None) -> Any:
    """``network`` carrying ``--fault-map`` (or its own map); says on stderr which map SPICE builds."""
    import dataclasses

    from memspice.train.fault_map import FAULT_MAP_NAME, describe_fault_map, load_fault_map

    if fault_map is not None:
        faults = load_fault_map(fault_map, network.topology)
        replaced = " (instead of the network's own)" if network.faults is not None else ""
        print(f"memspice: fault map {fault_map}{replaced}: {describe_fault_map(faults)}", file=sys.stderr)
        return dataclasses.replace(network, faults=faults)
    if network.faults is not None:
        own = Path(directory) / FAULT_MAP_NAME
        source = own if own.is_file() else Path(directory) / "network.npz"
        print(f"memspice: fault map {source} (the network's own): {describe_fault_map(network.faults)}",
              file=sys.stderr)
    return network


def run_command(args: argparse.Namespace) -> int:
    """Entry point: print the summary; exit 0 when complete, 1 when a batch failed."""
    if args.draws != 1:
        return _draws_command(args)
    report = run_validation(args)
    summary = report.summary
    if args.json:
        print(dumps_strict(summary, sort_keys=True, default=float))
    else:
        print(f"validation {summary['status']}: {summary.get('n_samples', 0)} samples, "
              f"SPICE accuracy {_scaled(summary.get('spice_accuracy'), 100, '.2f')} %, "
              f"model accuracy {_scaled(summary.get('model_accuracy'), 100, '.2f')} %, "
              f"agreement {_scaled(summary.get('agreement'), 100, '.2f')} %")
        if summary.get("fault_map"):
            from memspice.validate.report import fault_map_lines

            print("  " + fault_map_lines(summary["fault_map"])[0])
        for row in summary.get("layer_errors", []):
            print(f"  layer {row['layer']} {row['output']}: RMS {_scaled(row['rms_v'], 1e3, '.3f')} mV, "
                  f"max {_scaled(row['max_v'], 1e3, '.3f')} mV")
        print(f"  report: {report.files.get('report', args.out)}")
    for failure in report.failures:
        print(f"memspice: batch {failure.index} failed: {failure.message}", file=sys.stderr)
    if report.failures:
        print(f"memspice: run directory kept: {args.out} (re-run with --resume to redo only the failed batches)",
              file=sys.stderr)
        return 1
    return 0


def _scaled(value: Any, factor: float, spec: str) -> str:
    """``value * factor`` formatted, or ``n/a`` for a missing figure (null in the summary)."""
    return "n/a" if value is None else format(factor * value, spec)


def _draws_command(args: argparse.Namespace) -> int:
    """``--draws N``: print the spread over the draws; exit 1 when a batch of any draw failed."""
    run = run_validation(args)
    s = run.summary
    if args.json:
        print(dumps_strict(s, sort_keys=True, default=float))
    else:
        spice, drawn = s["spice_accuracy"], s["drawn_model_accuracy"]
        print(f"{s['draws']} device draws {s['nonideal']}: SPICE accuracy "
              f"{100 * spice['mean']:.2f} ± {100 * spice['std']:.2f} % (min {100 * spice['min']:.2f}, "
              f"max {100 * spice['max']:.2f}); model on the same draws {100 * drawn['mean']:.2f} ± "
              f"{100 * drawn['std']:.2f} %, agreeing with SPICE on {100 * s['drawn_model_agreement']['mean']:.2f} % "
              f"of samples; trained model (ideal devices) {100 * s['model_accuracy_ideal']:.2f} %")
        print(f"  table: {run.files.get('draws_csv', args.out)}")
    failed = [(row.seed, f) for row, report in zip(run.table.itertuples(), run.reports) for f in report.failures]
    for seed, failure in failed:
        print(f"memspice: draw with seed {seed}: batch {failure.index} failed: {failure.message}", file=sys.stderr)
    if failed:
        print(f"memspice: run directories kept under {args.out} (re-run with --resume to redo only the failed "
              "batches)", file=sys.stderr)
        return 1
    return 0


#: ``cli.py`` calls ``args.func``; the name ``run`` is the documented entry point.
run = run_command
