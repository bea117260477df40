"""``memspice train``: train a hardware-constrained PHAX network from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

from memspice.cli_options import bounded, levels_int, nonnegative_int, seed_int
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict
from memspice.fit.calibration import Calibration
from memspice.pipeline.config import TrainingConfig, training_defaults
from memspice.train.schedule import ScheduleName

#: The training defaults of `memspice run` (one source of truth for both commands).
DEFAULTS = TrainingConfig()
#: ``--per-replica``'s per-device stage: chosen on the validation split of the MNIST CNN of
#: scripts/bench_faults.py with its 20 % map (docs/faults.md).
REPLICA_EPOCHS = 3
REPLICA_LR = 0.2

DESCRIPTION = """\
Train an inverter-based memristive network (PHAX mapping: sigma = g_min + (g_max - g_min) *
sigmoid(theta), w = sigma / sum_column sigma) with exact gradients, then write the conductances
per crossbar (network.npz + network.json), the training history (history.csv, history.png) and
a checkpoint (checkpoint.npz, used by --resume) into --out.

Features are scaled to [0, 1] and mapped to input voltages in [vss, vdd]. Digits, iris and
breast cancer use a stratified 80/20 train/test split (seeded); MNIST reads IDX files from
--mnist-dir (t10k set when present: first 80 % train, last 20 % test), pooled to 14x14.

Hardware options: --levels quantizes conductances (straight-through estimator), --variation
adds multiplicative lognormal device variation during training and in the Monte Carlo test,
--fault-rate draws stuck-at faults (half at g_max, half at g_min; seeded by --fault-seed) or
--fault-map reads a known map; with --fault-aware the network is trained knowing the fault map,
otherwise it is trained ideal and tested faulty. The map is written to --out/fault_map.npz and
`memspice validate` builds exactly those devices stuck. With --network the map is per physical
device (a conv kernel's replicas at different positions are stuck independently; docs/faults.md);
--per-replica then programs every replica on its own after the shared-θ epochs (--replica-epochs
at --replica-lr), so the replicas next to a stuck device compensate it: the network file
(format version 3) holds every device's conductance and the map, and `memspice validate`
builds exactly those.

Convolutional networks: --network FILE reads a TOML file holding a [network] table (conv2d,
avgpool2d, flatten and dense layers; the same table as in `memspice run`, docs/cnn.md) instead
of --topology; the input shape is the dataset's (digits 1x8x8, mnist 1x14x14). --mode static or
coupled trains the PHAX-constrained network and writes network files version 2 with the layer
description, kernels.png (the first conv layer's kernels as device conductances in uS) and
report.md; --mode float trains the float tanh baseline of the same layers (float_network.npz,
no conductances). `memspice netlist trained --network OUT` writes its SPICE deck.
"""


def _topology(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"topology must be comma-separated integers like 64,32,10, got {text!r}"
        ) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"topology needs at least two layer sizes, each at least 1, like 64,32,10, got {text!r}")
    return sizes


def add_schedule_options(parser: argparse.ArgumentParser, *, default: str | None = None,
                         exponential: str = f"x{DEFAULTS.lr_decay:g} per epoch") -> None:
    """``--schedule``, ``--warmup-epochs`` and ``--lr-floor-fraction`` (:mod:`memspice.train.schedule`).

    ``exponential`` says what the exponential schedule does where the option is used; ``default``
    ``None`` leaves ``--schedule`` unset, for :func:`resolved_schedule` to fill in.
    """
    shown = default or f"{DEFAULTS.schedule}; exponential with lbfgs or cg"
    parser.add_argument("--schedule", choices=list(get_args(ScheduleName)), default=default,
                        help=f"learning-rate decay: {exponential}, or half a cosine down to "
                             f"--lr-floor-fraction of the learning rate (default: {shown})")
    parser.add_argument("--warmup-epochs", type=nonnegative_int, default=DEFAULTS.warmup_epochs,
                        help=f"epochs of linear learning-rate warm-up before the decay (default: {DEFAULTS.warmup_epochs})")
    parser.add_argument("--lr-floor-fraction", type=bounded(float, 0, 1, hi_open=True), default=DEFAULTS.lr_floor_fraction,
                        help="where the cosine schedule ends, as a fraction of the learning rate "
                             f"(default: {DEFAULTS.lr_floor_fraction:g})")


def _run_defaults(args: argparse.Namespace) -> TrainingConfig:
    """``memspice run``'s ``[training]`` for the optimizer, schedule and noise given here: the
    same dependent defaults (:func:`~memspice.pipeline.config.training_defaults`)."""
    given = {"optimizer": args.optimizer}
    if args.schedule is not None:
        given["schedule"] = args.schedule
    if args.input_noise_std is not None:
        given["input_noise_std"] = args.input_noise_std
    return TrainingConfig(**training_defaults(given))


def resolved_schedule(args: argparse.Namespace) -> str:
    """``--schedule``, else ``memspice run``'s default (exponential with a full-batch optimizer)."""
    return _run_defaults(args).schedule


def resolved_input_noise(args: argparse.Namespace, mode: str) -> float:
    """``--input-noise-std``, else ``memspice run``'s default for a circuit network (0 for the
    float baseline, which trains on clean inputs, and with lbfgs/cg)."""
    if mode == "float" and args.input_noise_std is None:
        return 0.0
    return float(_run_defaults(args).input_noise_std)


def train_settings(args: argparse.Namespace, mode: str) -> Any:
    """The trainer's :class:`~memspice.train.trainer.TrainConfig` for these options and ``mode``."""
    from memspice.train.trainer import TrainConfig

    schedule = resolved_schedule(args)
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=learning_rate(args.lr, mode),
                       optimizer=args.optimizer, loss=args.loss, seed=args.seed,
                       progress=not args.quiet, loss_link=args.loss_link,
                       lr_decay=DEFAULTS.lr_decay if schedule == "exponential" else 1.0,
                       schedule=schedule, warmup_epochs=args.warmup_epochs,  # type: ignore[arg-type]
                       lr_floor_fraction=args.lr_floor_fraction, grad_clip_norm=args.grad_clip_norm,
                       logit_temperature=args.logit_temperature, average_decay=args.average_decay,
                       input_noise_std=resolved_input_noise(args, mode))


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "train", help="train a hardware-constrained network", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--calibration", type=Path, default=None,
                   help="calibration JSON from `memspice calibrate` (default: PHAX's published "
                        "reference calibration, which does not predict memspice's circuits; a warning says so)")
    p.add_argument("--dataset", choices=["digits", "iris", "breast_cancer", "mnist"],
                   default="digits", help="dataset (default: digits)")
    p.add_argument("--mnist-dir", type=Path, default=None,
                   help="folder with MNIST IDX files (default: $MEMSPICE_MNIST_DIR, else the cache "
                        "`memspice data mnist` fills)")
    p.add_argument("--topology", type=_topology, default=None,
                   help="layer sizes incl. input and output, e.g. 64,32,10 "
                        f"(default: n_features,{','.join(map(str, DEFAULTS.hidden))},n_classes)")
    p.add_argument("--epochs", type=bounded(int, 1, 100000), default=DEFAULTS.epochs,
                   help=f"epochs (default: {DEFAULTS.epochs})")
    p.add_argument("--batch-size", type=bounded(int, 1, 1000000), default=DEFAULTS.batch_size,
                   help=f"mini-batch size (default: {DEFAULTS.batch_size})")
    p.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=None,
                   help=f"learning rate (default: {DEFAULTS.learning_rate:g}; "
                        f"{DEFAULTS.float_learning_rate:g} with --mode float)")
    p.add_argument("--optimizer", choices=["adam", "sgd", "lbfgs", "cg"], default=DEFAULTS.optimizer,
                   help=f"adam/sgd mini-batch, lbfgs/cg full-batch (default: {DEFAULTS.optimizer})")
    p.add_argument("--network", type=Path, default=None, metavar="FILE",
                   help="a TOML file with a [network] table (conv2d, avgpool2d, flatten, dense layers; "
                        "docs/cnn.md) instead of --topology")
    p.add_argument("--mode", choices=["auto", "static", "load-aware", "coupled", "float"], default="auto",
                   help="calibration mode of the model: static (PHAX: one tanh per inverter), load-aware "
                        "(tanh parameters as functions of each neuron's load; dense networks only) or coupled "
                        "(solves the same DC equations as SPICE; needs a calibration with an inverter current "
                        "table, e.g. from `memspice calibrate`); float (with --network): the float tanh "
                        "baseline of the same layers. Default auto: coupled when the calibration has the "
                        "current table, else static")
    p.add_argument("--loss", choices=["bce", "mse", "softmax_ce"], default=DEFAULTS.loss,
                   help=f"loss on outputs rescaled to [0,1] (default: {DEFAULTS.loss})")
    p.add_argument("--loss-link", choices=["output", "logit"], default=DEFAULTS.loss_link,
                   help="what the loss sees: the rescaled outputs (PHAX) or the output neurons' "
                        f"logits, which keeps a saturated output neuron trainable (default: {DEFAULTS.loss_link})")
    p.add_argument("--logit-temperature", type=bounded(float, 0, 100, lo_open=True), default=DEFAULTS.logit_temperature,
                   help="divides the logits before the loss, with --loss-link logit (default: 1)")
    p.add_argument("--average-decay", type=bounded(float, 0, 1, hi_open=True), default=DEFAULTS.average_decay,
                   help="return a moving average of the parameters over steps with this decay, "
                        "e.g. 0.999 (default: 0 = off)")
    add_schedule_options(p)
    p.add_argument("--input-noise-std", type=bounded(float, 0, 1), default=None, metavar="V",
                   help="standard deviation of Gaussian noise added afresh to every mini-batch's input "
                        f"voltages, a regularizer (default: {DEFAULTS.input_noise_std:g} V as in `memspice run`; "
                        "0 with --mode float or lbfgs/cg)")
    p.add_argument("--grad-clip-norm", type=bounded(float, 0, 1e6), default=DEFAULTS.grad_clip_norm,
                   help="clip each mini-batch gradient to this joint L2 norm (default: 0 = off)")
    p.add_argument("--levels", type=levels_int, default=None,
                   help="conductance levels, 0 = continuous (default: the calibration's)")
    p.add_argument("--fault-rate", type=bounded(float, 0, 1, hi_open=True), default=0.0,
                   help="fraction of devices stuck, in [0, 1) (half high, half low; default: 0)")
    p.add_argument("--fault-seed", type=seed_int, default=None,
                   help="seed of the fault map drawn for --fault-rate (default: --seed)")
    p.add_argument("--fault-map", type=Path, default=None, metavar="FILE",
                   help="a known fault map (fault_map.npz) instead of drawing one")
    p.add_argument("--fault-aware", action="store_true",
                   help="train against the fault map (drawn or given); either way the map is written "
                        "to --out/fault_map.npz and `memspice validate` builds it in SPICE")
    p.add_argument("--per-replica", action="store_true",
                   help="with --network and --fault-aware: after the shared-θ epochs, program every physical "
                        "device of a replicated kernel on its own (--replica-epochs more epochs), so the "
                        "replicas next to a stuck device compensate it; writes network format version 3 "
                        "(docs/faults.md)")
    p.add_argument("--replica-epochs", type=bounded(int, 1, 100000), default=REPLICA_EPOCHS,
                   help=f"epochs of the per-device stage of --per-replica (default: {REPLICA_EPOCHS})")
    p.add_argument("--replica-lr", type=bounded(float, 0, 10, lo_open=True), default=REPLICA_LR,
                   help=f"learning rate of the per-device stage of --per-replica (default: {REPLICA_LR:g})")
    p.add_argument("--variation", type=bounded(float, 0, 10), default=0.0,
                   help="relative lognormal device variation, e.g. 0.05 (default: 0)")
    p.add_argument("--mc-trials", type=bounded(int, 1, 100000), default=20,
                   help="Monte Carlo trials for the variation test (default: 20)")
    p.add_argument("--seed", type=seed_int, default=DEFAULTS.seed, help=f"random seed (default: {DEFAULTS.seed})")
    p.add_argument("--out", type=Path, default=Path("train_run"),
                   help="output directory (default: ./train_run)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def learning_rate(given: float | None, mode: str) -> float:
    """``--lr``, else the run configuration's default for ``mode`` (the float baseline has its own)."""
    if given is not None:
        return given
    return DEFAULTS.float_learning_rate if mode == "float" else DEFAULTS.learning_rate


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    """Do the work of ``memspice train`` and return the summary (library entry point)."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.fit.calibration import load_calibration, phax_reference_calibration
    from memspice.train.evaluate import monte_carlo_accuracy, network_from_params
    from memspice.train.fault_map import load_fault_map, seeded_fault_map
    from memspice.train.hardware import HardwareConfig
    from memspice.train.losses import accuracy
    from memspice.train.model import PhaxNetwork
    from memspice.train.network_io import save_network
    from memspice.train.trainer import train

    from memspice.budget import check_training
    from memspice.safe_io import check_output_dir
    from memspice.train.network_io import verify_checkpoint
    from memspice.train.trainer import CHECKPOINT_NAME

    if args.warmup_epochs >= args.epochs:
        raise ConfigError(f"--warmup-epochs ({args.warmup_epochs}) must be below --epochs ({args.epochs})")
    if getattr(args, "network", None) is not None:
        return run_layered_training(args)
    if getattr(args, "per_replica", False):
        raise ConfigError("--per-replica programs the replicas of conv kernels on their own; a --topology "
                          "network is dense (one device per θ already, and --fault-aware trains each): "
                          "drop --per-replica, or give a --network with conv or pooling layers")
    if getattr(args, "mode", "auto") == "float":
        raise ConfigError("--mode float trains the float baseline of a --network description; dense float "
                          "baselines come with `memspice run`")
    cal = (phax_reference_calibration() if args.calibration is None
           else load_calibration(args.calibration))
    data = load_dataset(args.dataset, args.mnist_dir)
    train_set, test_set = benchmark_split(data, 0.2, args.seed)
    topology = args.topology or (data.n_features, *DEFAULTS.hidden, data.n_classes)
    if topology[0] != data.n_features or topology[-1] != data.n_classes:
        raise ConfigError(f"topology {topology} must start with {data.n_features} inputs and "
                          f"end with {data.n_classes} outputs for {args.dataset}")
    if not 0 <= args.fault_rate <= 1:
        raise ConfigError(f"--fault-rate must be in [0, 1], got {args.fault_rate}")
    check_output_dir(args.out, "--out")
    if args.resume:
        verify_checkpoint(args.out / CHECKPOINT_NAME)
    mode = resolve_mode(args.mode, cal)
    levels = cal.device.levels if args.levels is None else args.levels
    hardware = HardwareConfig(levels=levels, variation_sigma=args.variation)
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    check_training(topology, len(train_set.labels), args.batch_size, coupled=mode == "coupled")
    # Warnings only once every input is known to be usable (a mistake stays one error line).
    if args.calibration is None:
        print("memspice: warning: no --calibration: training against PHAX's published reference "
              "calibration, which does not describe memspice's circuits (digits with the defaults: model "
              "76 %, its circuit in SPICE 20 %); run `memspice calibrate --out cal.json` and pass "
              "--calibration cal.json", file=sys.stderr)
    elif mode == "static":
        print("memspice: warning: --mode static: the PHAX model ignores how the crossbar loads each "
              "inverter, so the trained network's SPICE circuit can disagree with it on most samples; "
              "the default (coupled, with a calibration from `memspice calibrate`) predicts it",
              file=sys.stderr)
    faults = None
    fault_seed = args.seed if getattr(args, "fault_seed", None) is None else args.fault_seed
    if getattr(args, "fault_map", None) is not None:
        if args.fault_rate > 0:
            raise ConfigError("give --fault-rate (draw a map) or --fault-map (a known map), not both")
        faults = load_fault_map(args.fault_map, topology)
    elif args.fault_rate > 0:
        faults = seeded_fault_map(topology, args.fault_rate, fault_seed)
    if args.fault_aware and faults is None:
        raise ConfigError("--fault-aware needs a fault map: give --fault-rate or --fault-map")
    model = PhaxNetwork(cal, topology, hardware, faults if args.fault_aware else None,
                        evaluator=mode, init_mean=DEFAULTS.init_theta_mean)
    config = train_settings(args, mode)
    result = train(model, x_train, train_set.labels, config, args.out, args.resume)
    test_acc = accuracy(model.predict(result.params, x_test, faults=faults), test_set.labels)
    summary: dict[str, Any] = {
        "dataset": args.dataset, "topology": list(topology), "mode": mode, "optimizer": args.optimizer,
        "loss": args.loss, "loss_link": args.loss_link, "epochs_run": int(len(result.history)),
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "levels": levels, "fault_rate": args.fault_rate, "fault_aware": bool(args.fault_aware),
        "fault_seed": None if faults is None else faults.seed,
        "variation": args.variation,
        "train_accuracy": float(result.history["train_accuracy"].iloc[-1]),
        "test_accuracy": test_acc,
        "calibration_digest": cal.digest(), "out": str(args.out),
    }
    if args.variation > 0:
        mc = monte_carlo_accuracy(model, result.params, x_test, test_set.labels, hardware,
                                  args.mc_trials, args.seed)
        summary["mc_accuracy_mean"], summary["mc_accuracy_std"] = mc.mean, mc.std
    network = network_from_params(model, result.params, summary)
    if faults is not None and not args.fault_aware:
        network = type(network)(network.topology, network.conductances, cal,
                                network.evaluator, faults, summary)
    save_network(network, args.out)
    return summary


def read_network_file(path: Path, dataset: str, batch_size: int) -> Any:
    """The :class:`~memspice.network.NetworkSpec` of a TOML file holding a ``[network]`` table,
    on ``dataset``'s input shape, checked against its classes and memory.

    Raises:
        ConfigError: unreadable or not TOML, no ``[network]`` or other sections, or a network
            that cannot be built (naming the layer).
    """
    from memspice.pipeline.config import tomllib
    from memspice.pipeline.network_config import dataset_network
    from memspice.safe_io import read_document

    try:
        document = tomllib.loads(read_document(Path(path), "network file"))
    except FileNotFoundError:
        raise ConfigError(f"network file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"network file {path} is a directory, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"network file {path} is not text (not UTF-8); is it a TOML file?") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"network file {path} is not valid TOML: {exc}") from None
    if "network" not in document:
        raise ConfigError(f"network file {path} has no [network] table")
    others = sorted(set(document) - {"network"})
    if others:
        raise ConfigError(f"network file {path} holds [{others[0]}]; it should hold only a [network] table "
                          "(training settings are options of memspice train)")
    return dataset_network(document["network"], dataset, batch_size)


def run_layered_training(args: argparse.Namespace) -> dict[str, Any]:
    """``memspice train --network FILE``: a network with conv / pooling layers (or any layers)."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.fit.calibration import load_calibration, phax_reference_calibration
    from memspice.pipeline import layered_train
    from memspice.safe_io import check_output_dir
    from memspice.train.conv_io import save_layered_network
    from memspice.train.losses import accuracy
    from memspice.train.network_io import verify_checkpoint
    from memspice.train.trainer import CHECKPOINT_NAME

    if args.topology is not None:
        raise ConfigError("give --topology (a dense network) or --network (a layer description), not both")
    if args.variation > 0:
        raise ConfigError("--variation is not available with --network yet (variation is per device, and conv "
                          "kernels share their θ across devices)")
    if args.mode == "load-aware":
        raise ConfigError("--mode load-aware takes dense networks only; use static or coupled with --network")
    spec = read_network_file(args.network, args.dataset, args.batch_size)
    cal = phax_reference_calibration() if args.calibration is None else load_calibration(args.calibration)
    mode = resolve_mode(args.mode, cal)
    faults = layered_fault_map(args, spec, mode)
    levels = cal.device.levels if args.levels is None else args.levels
    check_per_replica(args, spec, levels)
    if mode == "coupled" and cal.inverter_current is None:
        raise ConfigError("--mode coupled needs a calibration with an inverter current table "
                          "(`memspice calibrate`); pass --calibration")
    data = load_dataset(args.dataset, args.mnist_dir)
    train_set, test_set = benchmark_split(data, 0.2, args.seed)
    check_output_dir(args.out, "--out")
    if args.resume:
        verify_checkpoint(args.out / CHECKPOINT_NAME)
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    if args.calibration is None and mode != "float":
        print("memspice: warning: no --calibration: training against PHAX's published reference "
              "calibration, which does not describe memspice's circuits; run `memspice calibrate --out cal.json` "
              "and pass --calibration cal.json", file=sys.stderr)
    config = train_settings(args, mode)
    summary: dict[str, Any] = {
        "dataset": args.dataset, "topology": layered_train.describe_layers(spec), "mode": mode,
        "optimizer": args.optimizer, "loss": args.loss, "loss_link": args.loss_link,
    }
    if mode == "float":
        model, result = layered_train.train_float(spec, cal.rails.vss, cal.rails.vdd, x_train, train_set.labels,
                                                  config, args.out, args.resume)
        test_acc = accuracy(layered_train.predict(model, result.params, x_test), test_set.labels)
    else:
        model = layered_train.constrained_model(cal, spec, mode, levels, DEFAULTS.init_theta_mean, args.batch_size)
        tested = model
        if faults is not None:
            from memspice.train.conv_faults import FaultAwareCrossbarNetwork
            from memspice.train.hardware import HardwareConfig

            tested = FaultAwareCrossbarNetwork(cal, spec, faults, HardwareConfig(levels=levels), mode,
                                               init_mean=DEFAULTS.init_theta_mean, batch_size=args.batch_size)
            model = tested if args.fault_aware else model
        network, result = layered_train.train_constrained(model, x_train, train_set.labels, config, args.out,
                                                          args.resume, {})
        test_acc = accuracy(layered_train.predict(tested, result.params, x_test), test_set.labels)
        if getattr(args, "per_replica", False):
            shared_test_acc, shared_result = test_acc, result
            replica, replica_params, result = train_replicas(args, cal, spec, faults, mode, network.conductances,
                                                             x_train, train_set.labels, config)
            test_acc = accuracy(layered_train.predict(replica, replica_params, x_test), test_set.labels)
            summary.update({"per_replica": True, "replica_epochs": args.replica_epochs, "replica_lr": args.replica_lr,
                            "shared_epochs_run": int(len(shared_result.history)),
                            "shared_test_accuracy": shared_test_acc})
    estimate = spec.estimate(args.batch_size)
    summary.update({
        "epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "levels": levels,
        "devices": estimate.devices, "columns": estimate.columns, "thetas": estimate.thetas,
        "train_accuracy": float(result.history["train_accuracy"].iloc[-1]),
        "test_accuracy": test_acc,
        "calibration_digest": cal.digest(), "out": str(args.out),
    })
    if faults is not None:
        from memspice.train.fault_map import fault_map_summary

        summary.update({"fault_rate": args.fault_rate, "fault_aware": bool(args.fault_aware),
                        "fault_seed": faults.seed, "fault_map": fault_map_summary(faults)})
    figures = {"history.png": "Training curves"}
    if mode == "float":
        layered_train.save_float_network(spec, result.params, args.out, summary)
    else:
        if getattr(args, "per_replica", False):
            network = replica.trained_network(replica_params, network.conductances, summary)
            save_layered_network(network, args.out)  # version 3, with the map it was trained against
        else:
            network = type(network)(network.spec, network.conductances, network.calibration, network.evaluator,
                                    None, summary)
            save_layered_network(network, args.out)
            save_layered_fault_map(faults, spec, args.out)
        if layered_train.plot_kernels(network, args.out / layered_train.KERNELS_PNG) is not None:
            figures[layered_train.KERNELS_PNG] = ("First conv layer: the conductance of every kernel device, "
                                                  "positive (ip row) and negative (in row) of each differential pair, µS")
    layered_train.write_train_report(args.out, summary, spec.summary(), figures)
    return summary


def check_per_replica(args: argparse.Namespace, spec: Any, levels: int) -> None:
    """Refuse ``--per-replica`` where it means nothing, before anything is trained or written.

    Raises:
        ConfigError: without ``--fault-aware``, with ``--mode float``, ``--resume`` or device levels,
            or on a network whose every θ is one device (no conv or pooling layer).
    """
    if not getattr(args, "per_replica", False):
        return
    from memspice.train.conv_io import has_replicas

    if not args.fault_aware:
        raise ConfigError("--per-replica trains the devices around a known fault map: add --fault-aware "
                          "(with --fault-rate or --fault-map)")
    if args.mode == "float":
        raise ConfigError("--per-replica programs devices; --mode float trains the float baseline, which has none")
    if args.resume:
        raise ConfigError("--resume is not available with --per-replica (the per-device stage keeps no checkpoint)")
    if levels:
        raise ConfigError(f"--per-replica programs continuous conductances; the network would use {levels} levels "
                          "(pass --levels 0)")
    if not has_replicas(spec):
        raise ConfigError("--per-replica: every θ of this network is one physical device (no conv or pooling "
                          "layer replicates it), so --fault-aware already trains every device on its own; "
                          "drop --per-replica")


def train_replicas(args: argparse.Namespace, cal: Calibration, spec: Any, faults: Any, mode: str,
                   start: Any, x_train: Any, y_train: Any, config: Any) -> tuple[Any, Any, Any]:
    """``--per-replica``'s stage: every physical device its own θ, from the shared network's σ
    ``start`` (S), ``--replica-epochs`` at ``--replica-lr`` with the map's devices stuck.

    Returns:
        ``(model, per-device θ, TrainResult)``.
    """
    import dataclasses

    from memspice.network.wiring import network_wiring
    from memspice.pipeline.layered_train import ChunkedPredictions
    from memspice.train.conv_faults import ReplicaFaultAwareNetwork, replica_thetas
    from memspice.train.trainer import train

    replica = ReplicaFaultAwareNetwork(cal, spec, faults, mode, init_mean=DEFAULTS.init_theta_mean,
                                       batch_size=args.batch_size)
    settings = dataclasses.replace(config, epochs=args.replica_epochs, lr=args.replica_lr,
                                   warmup_epochs=min(config.warmup_epochs, args.replica_epochs - 1))
    result = train(ChunkedPredictions(replica), x_train, y_train, settings,
                   initial_params=replica_thetas(network_wiring(spec), start, replica.window))
    return replica, result.params, result


def layered_fault_map(args: argparse.Namespace, spec: Any, mode: str) -> Any:
    """The per-device fault map of ``--fault-rate`` / ``--fault-map`` for a ``--network`` (or None),
    checked against the layers before anything is trained or written.

    Raises:
        ConfigError: both options, ``--fault-aware`` without a map, a map with ``--mode float``, or a
            map that does not fit the network (naming the layer).
    """
    from memspice.train.fault_map import load_device_fault_map
    from memspice.train.layered_devices import seeded_device_faults

    if args.fault_map is not None and args.fault_rate > 0:
        raise ConfigError("give --fault-rate (draw a map) or --fault-map (a known map), not both")
    if args.fault_map is not None:
        faults = load_device_fault_map(args.fault_map, spec)
    elif args.fault_rate > 0:
        seed = args.seed if args.fault_seed is None else args.fault_seed
        faults = seeded_device_faults(spec, args.fault_rate, seed)
    else:
        faults = None
    if args.fault_aware and faults is None:
        raise ConfigError("--fault-aware needs a fault map: give --fault-rate or --fault-map")
    if faults is not None and mode == "float":
        raise ConfigError("--mode float trains the float baseline, which has no devices to be stuck; "
                          "drop --fault-rate / --fault-map")
    return faults


def save_layered_fault_map(faults: Any, spec: Any, directory: Path) -> None:
    """Write ``faults`` as ``directory/fault_map.npz`` (per device), or remove a stale one."""
    from memspice.train.fault_map import FAULT_MAP_NAME, save_device_fault_map

    path = Path(directory) / FAULT_MAP_NAME
    if faults is not None:
        save_device_fault_map(faults, path, spec)
    elif path.is_file():
        path.unlink()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``memspice train``: prints a table (or JSON) and returns the exit code."""
    summary = run_training(args)
    if args.json:
        print(dumps_strict(summary, sort_keys=True))
    else:
        width = max(len(k) for k in summary)
        for key, value in summary.items():
            shown = f"{100 * value:.2f} %" if "accuracy" in key and isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


def resolve_mode(mode: str, calibration: Calibration) -> str:
    """``auto`` → ``coupled`` when the calibration holds an inverter current table, else ``static``."""
    if mode != "auto":
        return mode
    return "coupled" if calibration.inverter_current is not None else "static"
