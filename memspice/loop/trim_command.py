"""``memspice trim``: re-program a chip's bias rows for its process corner."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from memspice.cli_options import add_technology_options, bounded, positive_int, seed_int
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict

TRIM_DESCRIPTION = """\
A per-chip trim after fabrication: calibrate the neuron at the chip's corner (--tech sky130
--corner fs, or --temp for the built-in card), then train only the bias-row devices (the VDD and
VSS rows of every column) against that corner's model on --trim-samples labelled images of the
training split; every weight device keeps its conductance. Writes the trimmed network into --out
(never over the input) and prints the bias devices re-programmed and the model's accuracy on the
calibration images before and after. Simulate it with `memspice validate OUT --corner …`.
"""


def layer_list(text: str) -> tuple[int, ...]:
    """argparse ``type=`` of ``--layers``: comma-separated layer indices (may be empty: refused later)."""
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated layer indices, e.g. 0,1; got {text!r}") from None


def register(subparsers: Any) -> None:
    """Add ``trim`` to an argparse subparsers object."""
    p = subparsers.add_parser("trim", help="re-program only the bias rows of a network for one process corner",
                              description=TRIM_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", type=Path, help="folder with network.json + network.npz")
    add_technology_options(p, rails=False)
    data = p.add_argument_group("calibration images (the training split)")
    data.add_argument("--dataset", choices=["digits", "iris", "breast_cancer", "mnist"], default="digits",
                      help="dataset (default: digits; mnist trains on the first 8000 images)")
    data.add_argument("--mnist-dir", type=Path, default=None, help="folder with MNIST IDX files")
    data.add_argument("--trim-samples", type=positive_int, default=500,
                      help="training images the trim sees (default: 500)")
    data.add_argument("--seed", type=seed_int, default=0, help="seed of the split and the trim (default: 0)")
    t = p.add_argument_group("trim")
    t.add_argument("--layers", type=layer_list, default=None, help="layers to trim, e.g. 0,1 (default: all)")
    t.add_argument("--constant-inputs", action="store_true",
                   help="also re-program the first layer's devices on input rows whose voltage is the same on every "
                        "training image (e.g. border pixels): they act as extra bias rows")
    t.add_argument("--mode", choices=["static", "load-aware", "coupled"], default="coupled",
                   help="model the trim trains in (default: coupled)")
    t.add_argument("--epochs", type=bounded(int, 1, 100000), default=20, help="trim epochs (default: 20)")
    t.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=0.05, help="learning rate (default: 0.05)")
    p.add_argument("--out", type=Path, required=True, help="folder for the trimmed network")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=run_trim)


def run_trim(args: argparse.Namespace) -> int:
    """Entry point of ``memspice trim``."""
    from memspice.characterize.calibrate import calibrate
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.loop.command import network_sizing_of, technology_of
    from memspice.loop.trim import check_trim, constant_input_rows, trim_bias
    from memspice.safe_io import check_output_dir
    from memspice.train.network_io import load_network, save_network
    from memspice.train.trainer import TrainConfig

    network = load_network(args.network)
    rows, _ = check_trim(network, args.layers)
    layers = tuple(rows)
    if args.out.resolve() == args.network.resolve():
        raise ConfigError("--out must differ from the input network's folder (the input is never overwritten)")
    check_output_dir(args.out, "--out")
    rails = network.calibration.rails
    tech = technology_of(args, args.corner, rails)
    sizing = network_sizing_of(args, network)
    train, _ = benchmark_split(load_dataset(args.dataset, args.mnist_dir), 0.2, args.seed)
    if train.n_features != network.topology[0]:
        raise ConfigError(f"the network takes {network.topology[0]} inputs, {args.dataset} has {train.n_features}")
    input_rows = ()
    if args.constant_inputs:
        input_rows = constant_input_rows(features_to_voltages(train.features, rails.vdd, rails.vss))
        check_trim(network, layers, input_rows)
    train = train.subset(slice(0, args.trim_samples))
    x = features_to_voltages(train.features, rails.vdd, rails.vss)
    calibration = calibrate(tech, sizing, device=network.calibration.device)
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, loss="bce", loss_link="logit", seed=args.seed,
                         val_fraction=0.0, progress=False)
    result = trim_bias(network, calibration, x, train.labels, layers=layers, input_rows=input_rows, mode=args.mode,
                       config=config)
    save_network(result.network, args.out)
    summary = {"devices_reprogrammed": result.devices_reprogrammed, "layers": list(layers),
               "constant_input_rows": len(input_rows),
               "calibration_images": len(x), "accuracy_before": result.accuracy_before,
               "accuracy_after": result.accuracy_after, "corner": args.corner, "out": str(args.out)}
    if args.json:
        print(dumps_strict(summary))
    else:
        print(f"trimmed {result.devices_reprogrammed} bias devices (layers {list(layers)}) at {args.corner}: "
              f"{args.corner} model accuracy on {len(x)} calibration images {100 * result.accuracy_before:.2f} % → "
              f"{100 * result.accuracy_after:.2f} %; network in {args.out}")
    return 0
