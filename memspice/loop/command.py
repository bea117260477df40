"""``memspice loop``, ``memspice hybrid`` and ``memspice corners``: the model meets its circuit."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from memspice.cli_options import (add_technology_options, bounded, positive_int, seed_int, sizings_from_args,
                                  technology_from_args, unit_interval)
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict

#: The hybrid procedure's bound on the simulated share of the training images (mirrors
#: ``memspice.loop.hybrid.MAX_DATA_FRACTION``; a test keeps them equal, and the CLI stays light).
MAX_DATA_FRACTION = 0.1
TRANSFER_OPTIONS = ("levels", "variation", "fault_rate", "data_fraction", "qat_epochs")

LOOP_DESCRIPTION = """\
Close the loop between a trained network and its SPICE circuit. Round 0 simulates the network
on the validation samples and compares it with the --mode model. Each further round
(1) recalibrates that model from the circuit's own operating points (coupled: re-sweeps the
inverter current on a finer grid and re-tabulates it finely where the circuit operates, and
reports the in-situ current residual before/after; static / load-aware: refits the tanh
parameters to the in-situ column → output pairs), (2) fine-tunes θ for --epochs epochs from
where it is, and (3) validates again. It stops when the worst layer's RMS error is within
--tolerance-mv and the classification agreement reaches --agreement, or after --max-rounds.

Writes rounds.csv and rounds.png (error and agreement per round) into --out, one folder per
round (network, calibration, SPICE batches). Re-running with the same inputs reuses finished
rounds; other inputs in the same --out need --force.
"""

HYBRID_DESCRIPTION = """\
Hybrid training, SPICE standing in for the chip: keep the hidden layers as trained ex situ,
simulate the training samples, and train only the output layer on the last hidden layer's
simulated outputs. Because the output crossbar also loads those outputs, the procedure
iterates simulate → fit (--iterations) and reports how far they moved, the accuracy before and
after on the validation samples and the number of samples simulated.

Networks with conv or pooling layers (and dense networks given any of --levels, --variation,
--fault-rate, --data-fraction, --qat-epochs) get the memristor-CNN procedure instead: transfer the network
to hardware (every physical device programmed on its own: --levels per device, default 8,
lognormal --variation, default 0.1, --fault-rate stuck devices; seeded by --seed), simulate
--data-fraction (at most 0.1, default 0.1) of the training images through that circuit,
retrain only the last dense layer on its simulated inputs, program it again (fresh variation)
and repeat simulate → fit → program --iterations times (default 3: the new layer loads the
hidden neurons, which moves their outputs), then simulate the test images before transfer,
after transfer and after hybrid training. Prints the three accuracies and the recovered
fraction; writes hybrid.json, hybrid.csv and the retrained
network into --out. --qat-epochs L,C first fine-tunes the network on the training images with
the transfer's level grid (L load-aware, then C coupled epochs; quantization-aware), so the
transfer does not round its conductances away; that network is then the "software" one.
"""

CORNERS_DESCRIPTION = """\
Robustness across process corners (sky130 LVT with its preset sizing, or the built-in card at
several temperatures with --tech builtin --corners T1,T2 in °C): calibrate every corner,
train one network at --train-corner and (unless --no-multi) one against all corners at once
(the loss of every mini-batch averaged over the corners' models), then simulate both at every
corner. Prints SPICE accuracy per corner, the worst corner and the spread.
"""


def _data_options(p: argparse.ArgumentParser, samples_default: int | None) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["digits", "iris", "breast_cancer", "mnist"], default="digits",
                      help="dataset (default: digits; mnist uses the first 8000 to train, the last 2000 to test)")
    data.add_argument("--mnist-dir", type=Path, default=None, help="folder with MNIST IDX files")
    data.add_argument("--samples", type=positive_int, default=samples_default,
                      help="validation samples simulated in SPICE (default: %(default)s = all test samples)")
    data.add_argument("--train-samples", type=positive_int, default=None, help="training samples used (default: all)")
    data.add_argument("--seed", type=seed_int, default=0, help="seed of the train/test split and training (default: 0)")


def _circuit_options(p: argparse.ArgumentParser, corner: bool = True) -> None:
    add_technology_options(p, rails=False, corner=corner, multi_sizes=True)


def _run_options(p: argparse.ArgumentParser, out: str) -> None:
    run = p.add_argument_group("execution")
    run.add_argument("--batch-size", type=bounded(int, 1, 100000), default=250, help="samples per ngspice deck (default: 250)")
    run.add_argument("--workers", type=bounded(int, 1, 4096), default=None, help="parallel ngspice processes (default: CPU count)")
    run.add_argument("--out", type=Path, default=Path(out), help=f"run directory (default: ./{out})")
    run.add_argument("--json", action="store_true", help="print the result as one JSON line")
    run.add_argument("-q", "--quiet", action="store_true", help="no line per round or step, only the result")


def register(subparsers: Any) -> None:
    """Add ``loop``, ``hybrid`` and ``corners`` to an argparse subparsers object."""
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("loop", help="recalibrate, fine-tune and re-validate until model and SPICE agree",
                              description=LOOP_DESCRIPTION, formatter_class=raw)
    p.add_argument("network", type=Path, help="folder with network.json + network.npz (from `memspice train`)")
    _data_options(p, None)
    _circuit_options(p)
    loop = p.add_argument_group("loop")
    loop.add_argument("--mode", choices=["static", "load-aware", "coupled"], default="coupled",
                      help="model recalibrated, fine-tuned in and compared (default: coupled)")
    loop.add_argument("--max-rounds", type=bounded(int, 0, 100), default=4, help="rounds after round 0 (default: 4)")
    loop.add_argument("--tolerance-mv", type=bounded(float, 0, lo_open=True, unit="mV"), default=1.0, help="worst-layer RMS target in mV (default: 1)")
    loop.add_argument("--agreement", type=bounded(float, 0, 1, lo_open=True), default=0.999, help="agreement target, fraction (default: 0.999)")
    loop.add_argument("--epochs", type=bounded(int, 1, 100000), default=2, help="fine-tuning epochs per round (default: 2)")
    loop.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=0.003, help="fine-tuning learning rate (default: 0.003)")
    loop.add_argument("--force", action="store_true", help="replace a loop of other inputs in --out")
    _run_options(p, "loop_run")
    p.set_defaults(func=run_loop)

    h = subparsers.add_parser("hybrid", help="fine-tune the output layer on SPICE's hidden-layer outputs",
                              description=HYBRID_DESCRIPTION, formatter_class=raw)
    h.add_argument("network", type=Path, help="folder with network.json + network.npz")
    _data_options(h, None)
    _circuit_options(h)
    hy = h.add_argument_group("hybrid")
    hy.add_argument("--mode", choices=["static", "load-aware", "coupled"], default="coupled",
                    help="model of the output layer (default: coupled)")
    hy.add_argument("--iterations", type=bounded(int, 1, 1000), default=None,
                    help="simulate → fit rounds (default: 3)")
    hy.add_argument("--epochs", type=bounded(int, 1, 100000), default=30, help="output-layer epochs per iteration (default: 30)")
    hy.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=None,
                    help="learning rate (default: 0.01; cosine schedule for the transfer procedure)")
    hy.add_argument("--loss", choices=["softmax_ce", "bce", "mse"], default=None,
                    help="output-layer loss (default: bce; softmax_ce on the logits for the transfer procedure)")
    tr = h.add_argument_group("transfer to hardware (conv / pooled networks, or any network given one of these)")
    tr.add_argument("--levels", type=bounded(int, 2, 4096), default=None,
                    help="conductance levels per device (default: 8, i.e. 15 signed levels per differential pair)")
    tr.add_argument("--variation", type=bounded(float, 0, 10), default=None,
                    help="lognormal sigma of per-device programming variation (default: 0.1)")
    tr.add_argument("--fault-rate", type=unit_interval, default=None, help="fraction of devices stuck (default: 0)")
    tr.add_argument("--data-fraction", type=bounded(float, 0, MAX_DATA_FRACTION, lo_open=True), default=None,
                    help=f"share of the training images simulated for retraining, in (0, {MAX_DATA_FRACTION:g}] "
                         f"(default: {MAX_DATA_FRACTION:g})")
    tr.add_argument("--qat-epochs", type=epoch_pair, default=None, metavar="L,C",
                    help="quantization-aware fine-tuning before the transfer: L load-aware and C coupled epochs "
                         "with the --levels grid, e.g. 8,1 (default: none)")
    _run_options(h, "hybrid_run")
    h.set_defaults(func=run_hybrid)

    c = subparsers.add_parser("corners", help="train at one or all process corners and validate at every corner",
                              description=CORNERS_DESCRIPTION, formatter_class=raw)
    _data_options(c, 300)
    _circuit_options(c, corner=False)
    co = c.add_argument_group("corners")
    co.add_argument("--corners", default="tt,ss,ff,sf,fs",
                    help="comma-separated corners (sky130) or temperatures in °C (builtin); default: all five")
    co.add_argument("--train-corner", default=None, help="corner of the single-corner network (default: the first)")
    co.add_argument("--no-multi", action="store_true", help="skip the network trained against all corners")
    co.add_argument("--mode", choices=["static", "load-aware", "coupled"], default="coupled",
                    help="model each corner is trained in (default: coupled)")
    co.add_argument("--hidden", type=bounded(int, 1, 100000), default=32, help="hidden neurons (default: 32)")
    co.add_argument("--epochs", type=bounded(int, 1, 100000), default=10, help="training epochs (default: 10)")
    co.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=0.01, help="learning rate (default: 0.01)")
    _run_options(c, "corners_run")
    c.set_defaults(func=run_corners)


def sizing_of(args: argparse.Namespace) -> Any:
    """The one inverter sizing of the options (``--sizes`` or ``--wn…``, else the preset)."""
    sizings = sizings_from_args(args)
    if len(sizings) != 1:
        raise ConfigError("this command takes exactly one sizing in --sizes")
    return sizings[0]


def network_sizing_of(args: argparse.Namespace, network: Any) -> Any:
    """The sizing to simulate a trained ``network`` at: the one its calibration records (options that
    contradict it are refused), else the options' (see :func:`memspice.validate.api.network_sizing`)."""
    from memspice.validate.api import network_sizing
    from memspice.validate.command import sizing_of as validate_sizing

    if getattr(args, "sizes", None):
        return network_sizing(network, sizing_of(args))
    return validate_sizing(args, network)


def technology_of(args: argparse.Namespace, corner: str, rails: Any = None) -> Any:
    """The technology of the options at ``corner`` (rails default to ±0.25 V)."""
    from memspice.circuit.wiring import Rails

    return technology_from_args(args, rails=rails or Rails(), corner=corner)


def split_data(args: argparse.Namespace, vdd: float, vss: float) -> tuple[Any, Any, Any, Any]:
    """``(x_train, y_train, x_test, y_test)``: voltages and labels, capped by the sample options."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset

    data = load_dataset(args.dataset, args.mnist_dir)
    train, test = benchmark_split(data, 0.2, args.seed)
    for name in ("samples", "train_samples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.train_samples:
        train = train.subset(slice(0, args.train_samples))
    if args.samples:
        test = test.subset(slice(0, args.samples))
    return (features_to_voltages(train.features, vdd, vss), train.labels,
            features_to_voltages(test.features, vdd, vss), test.labels)


def check_run(args: argparse.Namespace, topology: Any, n_train: int, n_test: int) -> None:
    """Before any simulation: ``--out`` must be writable, and training (fine-tuning) and the SPICE
    runs must fit in memory."""
    from memspice.budget import check_training, check_validation
    from memspice.safe_io import check_output_dir

    check_output_dir(args.out, "--out")
    check_training(topology, n_train, 32, coupled=getattr(args, "mode", "") == "coupled")
    check_validation(topology, max(n_train, n_test), args.batch_size)


def _settings(args: argparse.Namespace) -> Any:
    from memspice.validate.api import RunSettings

    return RunSettings(batch_size=args.batch_size, workers=args.workers)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_loop(args: argparse.Namespace) -> int:
    """Entry point of ``memspice loop``: print the round table; exit 0 when the targets were met."""
    from memspice.loop.closed_loop import closed_loop
    from memspice.train.network_io import load_network
    from memspice.train.trainer import TrainConfig

    network = load_network(args.network)
    cal = network.calibration
    x_train, y_train, x_test, y_test = split_data(args, cal.rails.vdd, cal.rails.vss)
    check_run(args, network.topology, len(x_train), len(x_test))
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, lr_decay=0.9, seed=args.seed,
                         val_fraction=0.0, progress=False)
    result = closed_loop(network, technology_of(args, args.corner, cal.rails), x_train, y_train, x_test, y_test,
                         args.out, sizing=network_sizing_of(args, network), mode=args.mode, tolerance_v=1e-3 * args.tolerance_mv,
                         agreement_target=args.agreement, max_rounds=args.max_rounds, fine_tune=config,
                         settings=_settings(args), force=args.force, log=None if args.json or args.quiet else print)
    if args.json:
        rows = [{k: _clean(v) for k, v in row.items()} for row in result.rounds.to_dict(orient="records")]
        print(dumps_strict({"converged": result.converged, "rounds": rows, "out": str(args.out)}, default=float))
    else:
        print(f"{'converged' if result.converged else 'not converged'} after {len(result.rounds) - 1} round(s); "
              f"table: {result.files['rounds_csv']}")
    return 0 if result.converged else 1


def epoch_pair(text: str) -> tuple[int, int]:
    """argparse ``type=`` of ``--qat-epochs``: two non-negative integers ``L,C``, not both 0."""
    parts = text.split(",")
    try:
        pair = tuple(int(p) for p in parts)
    except ValueError:
        pair = ()
    if len(pair) != 2 or min(pair) < 0 or max(pair) > 100000 or sum(pair) == 0:
        raise argparse.ArgumentTypeError(f"takes two non-negative epoch counts L,C (not both 0), got {text!r}")
    return pair[0], pair[1]


def run_hybrid(args: argparse.Namespace) -> int:
    """Entry point of ``memspice hybrid``."""
    from memspice.loop.hybrid import hybrid_train
    from memspice.train.conv_io import load_layered_network
    from memspice.train.network_io import load_network
    from memspice.train.trainer import TrainConfig

    layered = load_layered_network(args.network)
    plain_dense = layered.spec.is_dense and all(m is None for m in layered.spec.masks)
    if not plain_dense or any(getattr(args, name) is not None for name in TRANSFER_OPTIONS):
        return run_hybrid_layered(args, layered)
    network = load_network(args.network)
    cal = network.calibration
    x_train, y_train, x_test, y_test = split_data(args, cal.rails.vdd, cal.rails.vss)
    check_run(args, network.topology, len(x_train), len(x_test))
    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr or 0.01, loss=args.loss or "bce",
                         seed=args.seed, val_fraction=0.0, progress=False)
    result = hybrid_train(network, technology_of(args, args.corner, cal.rails), x_train, y_train, x_test, y_test,
                          args.out, sizing=network_sizing_of(args, network), mode=args.mode,
                          iterations=args.iterations or 3, config=config, settings=_settings(args),
                          log=None if args.json or args.quiet else print)
    summary = {"accuracy_before": result.accuracy_before, "accuracy_after": result.accuracy_after,
               "spice_samples": result.spice_samples, "seconds": result.seconds,
               "iterations": [{k: _clean(v) for k, v in r.items()} for r in result.iterations.to_dict(orient="records")]}
    if args.json:
        print(dumps_strict(summary, default=float))
    else:
        print(f"SPICE accuracy {100 * result.accuracy_before:.2f} % → {100 * result.accuracy_after:.2f} % "
              f"({result.spice_samples} samples simulated, {result.seconds:.0f} s)")
    return 0


def run_hybrid_layered(args: argparse.Namespace, network: Any) -> int:
    """``memspice hybrid`` with transfer to hardware (:func:`memspice.loop.hybrid.hybrid_train_layered`)."""
    from memspice.loop.hybrid import (
        DEFAULT_RETRAIN,
        DEFAULT_RETRAIN_ITERATIONS,
        DEFAULT_TRANSFER,
        check_hybrid_inputs,
        hybrid_train_layered,
    )
    from memspice.safe_io import check_output_dir
    from memspice.sim import SimOptions
    from memspice.train.layered_devices import DeviceSettings

    devices = DeviceSettings(
        levels=DEFAULT_TRANSFER.levels if args.levels is None else args.levels,
        variation_sigma=DEFAULT_TRANSFER.variation_sigma if args.variation is None else args.variation,
        fault_rate=DEFAULT_TRANSFER.fault_rate if args.fault_rate is None else args.fault_rate, seed=args.seed)
    fraction = MAX_DATA_FRACTION if args.data_fraction is None else args.data_fraction
    iterations = args.iterations or DEFAULT_RETRAIN_ITERATIONS
    check_hybrid_inputs(network, devices, fraction, iterations)
    check_output_dir(args.out, "--out")
    cal = network.calibration
    x_train, y_train, x_test, y_test = split_data(args, cal.rails.vdd, cal.rails.vss)
    config = dataclasses.replace(DEFAULT_RETRAIN, epochs=args.epochs, lr=args.lr or DEFAULT_RETRAIN.lr,
                                 loss=args.loss or DEFAULT_RETRAIN.loss, seed=args.seed)
    qat = None
    if args.qat_epochs is not None:
        from memspice.loop.hybrid_layered import QuantizationAwareSettings, quantization_aware_finetune

        qat = QuantizationAwareSettings(levels=devices.levels, load_aware_epochs=args.qat_epochs[0],
                                        coupled_epochs=args.qat_epochs[1], seed=args.seed)
        network = quantization_aware_finetune(network, x_train, y_train, qat,
                                              log=None if args.json or args.quiet else print)
    result = hybrid_train_layered(
        network, technology_of(args, args.corner, cal.rails), x_train, y_train, x_test, y_test, devices=devices,
        faults=network.faults, data_fraction=fraction, sizing=network_sizing_of(args, network), mode=args.mode,
        iterations=iterations, config=config, batch_size=args.batch_size, workers=args.workers,
        sim_options=SimOptions(), out_dir=args.out, log=None if args.json or args.quiet else print)
    if args.json:
        print(dumps_strict({**result.summary(), "quantization_aware": None if qat is None else qat.as_dict(),
                            "out": str(args.out)}, default=float))
    else:
        recovered = ("n/a (the transfer lost nothing)" if not math.isfinite(result.recovered_fraction)
                     else f"{100 * result.recovered_fraction:.0f} %")
        print(f"SPICE accuracy: software {100 * result.software:.2f} %, after transfer {100 * result.transfer:.2f} %, "
              f"after hybrid training {100 * result.hybrid:.2f} %; recovered {recovered} of the loss with "
              f"{100 * result.data_fraction:.1f} % of the training images ({result.spice_samples} samples "
              f"simulated, {result.seconds:.0f} s)")
    return 0


def run_corners(args: argparse.Namespace) -> int:
    """Entry point of ``memspice corners``."""
    from memspice.circuit.wiring import Rails
    from memspice.loop.corners import corner_study
    from memspice.train.trainer import TrainConfig

    corners = tuple(c.strip() for c in args.corners.split(",") if c.strip())
    if not corners:
        raise ConfigError("--corners needs at least one corner")
    if args.tech == "builtin":
        try:
            temps = {c: float(c) for c in corners}
        except ValueError:
            raise ConfigError("with --tech builtin, --corners takes temperatures in °C, e.g. 0,27,85") from None

        def make(corner: str) -> Any:
            from memspice.tech.technology import builtin

            return builtin(Rails(), temps[corner])
    else:
        def make(corner: str) -> Any:
            return technology_of(args, corner)
    rails = Rails()
    x_train, y_train, x_test, y_test = split_data(args, rails.vdd, rails.vss)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    check_run(args, (x_train.shape[1], args.hidden, n_classes), len(x_train), len(x_test))
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, lr_decay=0.93, seed=args.seed,
                         val_fraction=0.0, progress=False)
    study = corner_study(make, x_train, y_train, x_test, y_test, args.out, sizing=sizing_of(args), corners=corners,
                         train_corner=args.train_corner or corners[0], multi=not args.no_multi,
                         topology=(x_train.shape[1], args.hidden, n_classes), mode=args.mode, config=config,
                         settings=_settings(args), log=None if args.json or args.quiet else print)
    if args.json:
        print(dumps_strict({"table": study.table.to_dict(orient="records"), "train_seconds": study.train_seconds},
                         default=float))
    else:
        print(study.pivot().to_string(float_format=lambda v: f"{100 * v:.2f}"))
    return 0
