"""``memspice prune``: prune a trained network (or one it trains), retrain it, report, simulate."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memspice.cli_options import (
    add_technology_options,
    bounded,
    levels_int,
    seed_int,
    sizing_from_args,
    technology_from_args,
)
from memspice.errors import ConfigError

DESCRIPTION = """\
Prune a trained network with structured sparsity, retrain it with the structure fixed, and
report what it costs against the dense network: devices, tiles built, crossbar area saved,
compression, model accuracy and, with --spice (through the validation of `memspice validate`),
SPICE accuracy, static power of the rails and the input drivers, and the transient energy of one
1 µs inference period (rails and input drivers, on the first --transient-samples images).
Dense and layered (conv, pooled) networks; devices count every memristor built, so a conv
kernel counts once per output position.

Methods:
  csrram  block-diagonal clusters in the first layer (CSrram): --density D makes round(1/D)
          clusters of inputs and neurons, cluster b of neurons reads only cluster b of inputs
          (inputs interleaved by default: input i in cluster i mod B).
          The clusters are fixed before training: the pruned network is trained from scratch.
  admm    ADMM structured pruning (Yuan et al.) from the dense network: ADMM-regularized
          training towards the targets, masked mapping, masked retraining.

Targets (admm), one per crossbar layer, comma-separated, each STRUCTURE:AMOUNT[:RxC]:
  STRUCTURE  row (an input of the layer: its driver or the previous neuron's load goes),
             column (a neuron, with its rows in the next layer), tile (a RxC tile of the
             crossbar: physical rows ip_0,in_0,ip_1,…,bias_p,bias_n by columns; on a conv layer
             the unrolled crossbar of one position, columns = output channels), kernel /
             kernel_row (conv).
  AMOUNT     a density in (0, 1] (0.15) or a compression ratio (10x); 'none' = not pruned;
             'budget' = the layer shares --device-compression's device budget (or
             --weight-compression's weight budget) with the others.
  Example:   --targets row:0.15,row:0.5   (15 % of the pixels, half the hidden neurons)
Masked devices are absent from the netlist; dead neurons and conv channels are removed.

Outputs in --out: network.json + network.npz (the pruned network, format version 2 with its
masks), dense/ (the dense network, when trained here), prune_report.md, prune_report.csv and
pareto.png (accuracy against compression and energy per inference).

Examples:
  memspice prune --network net/ --dataset mnist --mnist-dir DIR --method admm \\
      --targets row:0.15,row:0.5 --levels 32 --spice --out pruned/
  memspice prune --calibration cal.json --dataset mnist --topology 196,100,10 \\
      --method csrram --density 0.25 --spice --out csrram/
  # a CNN trained by `memspice train --network cnn.toml`: 2x1 tiles of every layer's crossbar
  memspice prune --network cnn_net/ --dataset mnist --method admm --levels 32 \\
      --targets tile:0.3:2x1,tile:0.05:2x1,tile:0.1:2x1 --spice --out cnn_pruned/
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``prune``."""
    p = subparsers.add_parser("prune", help="structured pruning (ADMM, CSrram clusters), measured in SPICE",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("the dense network")
    src.add_argument("--network", type=Path, default=None, metavar="DIR|FILE",
                     help="a trained network folder without masks (dense or layered, e.g. from `memspice "
                          "train --network`), or a TOML file with a [network] table (conv2d, avgpool2d, "
                          "flatten, dense; docs/cnn.md) to train here with --calibration")
    src.add_argument("--calibration", type=Path, default=None, help="calibration JSON to train against")
    src.add_argument("--topology", default=None, help="sizes to train, e.g. 196,100,10 (default: 196,100,10 "
                     "for MNIST, inputs,32,classes otherwise)")
    src.add_argument("--dataset", choices=["digits", "mnist"], default="digits", help="data (default digits)")
    src.add_argument("--mnist-dir", type=Path, default=None, help="MNIST IDX folder (default: $MEMSPICE_MNIST_DIR)")
    pr = p.add_argument_group("pruning")
    pr.add_argument("--method", choices=["admm", "csrram"], required=True, help="admm or csrram")
    pr.add_argument("--targets", default=None, help="admm: STRUCTURE:AMOUNT[:RxC] per crossbar layer (see above)")
    pr.add_argument("--density", default=None,
                    help="csrram: first-layer density (0.25 = 4 clusters); admm: densities per layer, "
                         "comma-separated, of --structure")
    pr.add_argument("--cluster-order", choices=["interleaved", "contiguous"], default="interleaved",
                    help="csrram: inputs in cluster i mod B (interleaved, default: each cluster sees the whole "
                         "image at lower resolution) or in B contiguous runs (bands of an image)")
    pr.add_argument("--compression", default=None,
                    help="admm: compression ratios per layer, comma-separated (instead of --density)")
    pr.add_argument("--structure", default="row", help="admm with --density/--compression: structure per layer "
                    "(one for all, or comma-separated; default row)")
    pr.add_argument("--tile", default=None, metavar="RxC",
                    help="tile size: the tile structure's, and tiles built in the report")
    pr.add_argument("--fault-map", type=Path, default=None, metavar="FILE",
                    help="stuck devices of the dense chip (memspice fault-map file): the report adds the dense and "
                         "pruned networks on that chip (no retraining)")
    pr.add_argument("--levels", type=levels_int, default=0, help="conductance levels of the result (default 0: continuous)")
    pr.add_argument("--rounds", type=bounded(int, 1, 1000), default=4, help="admm rounds (default 4)")
    pr.add_argument("--rho", type=bounded(float, 0, 1e6, lo_open=True), default=0.1, help="initial admm ρ (default 0.1)")
    pr.add_argument("--device-compression", default=None, metavar="R",
                    help="admm: keep 1/R of the dense network's devices (e.g. 10 or 10x) over the layers whose "
                         "target amount is 'budget' (a conv weight costs one device per output position, so "
                         "cheaper weights are kept first)")
    pr.add_argument("--weight-compression", default=None, metavar="R",
                    help="admm: keep 1/R of the dense network's weights (θ; a conv θ counts once, however many "
                         "positions build it) over the layers whose target amount is 'budget'; instead of "
                         "--device-compression")
    pr.add_argument("--no-quantized-rounds", dest="quantize_rounds", action="store_false",
                    help="admm with --levels: run the ADMM rounds on continuous conductances (default: on the "
                         "level grid, straight-through, like the masked retraining)")
    tr = p.add_argument_group("training (coupled mode when the calibration has a current model)")
    tr.add_argument("--epochs", type=bounded(int, 1, 100000), default=None,
                    help="epochs of the dense and csrram training (default 10; a layered network: 1 coupled "
                         "epoch after --pretrain-epochs)")
    tr.add_argument("--pretrain-epochs", type=bounded(int, 0, 100000), default=8,
                    help="layered network trained here: load-aware epochs before the coupled ones (default 8)")
    tr.add_argument("--admm-mode", choices=["auto", "static", "load-aware", "coupled"], default="auto",
                    help="evaluator of the ADMM rounds and the masked retraining (default auto: the network's; "
                         "load-aware on a layered network, then --tune-epochs coupled epochs of the masked "
                         "network when the calibration has the current model)")
    tr.add_argument("--tune-epochs", type=bounded(int, 1, 100000), default=1,
                    help="coupled epochs after load-aware ADMM retraining (default 1)")
    tr.add_argument("--round-epochs", type=bounded(int, 1, 1000), default=2, help="admm epochs per round (default 2)")
    tr.add_argument("--retrain-epochs", type=bounded(int, 1, 100000), default=5, help="masked retraining epochs (default 5)")
    tr.add_argument("--lr", type=bounded(float, 0, 10, lo_open=True), default=0.005, help="Adam learning rate (default 0.005)")
    tr.add_argument("--seed", type=seed_int, default=0, help="seed of the split and training (default 0)")
    sp = p.add_argument_group("SPICE")
    sp.add_argument("--spice", action="store_true", help="simulate the dense and pruned networks on the test images")
    sp.add_argument("--spice-samples", type=bounded(int, 2, 10**7), default=None,
                    help="test images to simulate (default: all)")
    sp.add_argument("--workers", type=bounded(int, 1, 256), default=2, help="ngspice processes (default 2)")
    sp.add_argument("--transient-samples", type=bounded(int, 0, 10**7), default=20,
                    help="test images also simulated in transient mode for the energy per inference (default 20)")
    sp.add_argument("--ngspice", default=None, help="ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice)")
    add_technology_options(p, rails=False)
    p.add_argument("--out", type=Path, default=Path("prune_run"), help="output folder (default prune_run)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
    return p


def _split(text: str | None, n: int, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if len(items) == 1:
        return items * n
    if len(items) != n:
        raise ConfigError(f"{what}: {len(items)} values for {n} crossbar layers")
    return items


def _targets(args: argparse.Namespace, n_layers: int) -> list[Any]:
    from memspice.prune.targets import parse_targets, parse_tile

    if args.targets is not None:
        if args.density is not None or args.compression is not None:
            raise ConfigError("give --targets, or --density / --compression with --structure, not both")
        return parse_targets(args.targets, n_layers)
    if (args.density is None) == (args.compression is None):
        raise ConfigError("admm needs --targets, --density or --compression")
    amounts = (_split(args.density, n_layers, "--density") if args.density is not None else
               [a if a.lower() in ("none", "1") else a + "x" for a in
                _split(args.compression, n_layers, "--compression")])
    structures = _split(args.structure, n_layers, "--structure")
    tile = None if args.tile is None else parse_tile(args.tile)
    text = ",".join("none" if a.lower() == "none" else
                    f"{s}:{a}" + (f":{tile[0]}x{tile[1]}" if s == "tile" and tile else "")
                    for s, a in zip(structures, amounts))
    return parse_targets(text, n_layers)


def _budget(device: str | None, weight: str | None, targets: Sequence[Any], spec: Any
            ) -> tuple[float | None, float | None]:
    """``(--device-compression, --weight-compression)`` as ratios: one of them (≥ 1; a weight
    compression at most the network's θ count), given exactly when a target is ``budget``."""
    from memspice.train.device_budget import check_compression, check_weight_compression

    budgeted = any(t.budgeted for t in targets)
    if device is not None and weight is not None:
        raise ConfigError("--device-compression and --weight-compression are two budgets; give one")
    text = device if device is not None else weight
    option = "--device-compression" if device is not None else "--weight-compression"
    if text is None:
        if budgeted:
            raise ConfigError("a 'budget' target needs --device-compression or --weight-compression")
        return None, None
    if not budgeted:
        raise ConfigError(f"{option} needs targets whose amount is 'budget', e.g. tile:budget:2x1")
    text = text.strip()
    text = text[:-1] if text.lower().endswith("x") else text
    if device is not None:
        return check_compression(text), None
    return None, check_weight_compression(text, spec)


def run_prune(args: argparse.Namespace) -> dict[str, Any]:
    """Do the work of ``memspice prune`` and return the summary (library entry point)."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.fit.calibration import load_calibration
    from memspice.io import write_many_atomic
    from memspice.network import NetworkSpec
    from memspice.prune.flow import admm, csrram, train_dense
    from memspice.prune.measure import hardware_counts, predicted_outputs, spice_measure
    from memspice.prune.report import report_writers
    from memspice.prune.targets import parse_amount, parse_tile
    from memspice.safe_io import check_output_dir
    from memspice.train.admm import AdmmConfig, make_model
    from memspice.train.conv_io import load_layered_network, save_layered_network
    from memspice.train.losses import accuracy
    from memspice.train.mapping import conductance_to_theta
    from memspice.train.trainer import TrainConfig

    # ---- every input checked before anything runs or is written -----------------------
    network_file = args.network is not None and not args.network.is_dir()
    if args.network is None and args.calibration is None:
        raise ConfigError("give --network (a trained network folder, or a network file with --calibration) "
                          "or --calibration (to train a dense network)")
    if args.network is not None and args.network.is_dir() and args.calibration is not None:
        raise ConfigError("--calibration trains a network; a trained --network folder has its own")
    if network_file and args.calibration is None:
        raise ConfigError(f"--network {args.network} is a network file: give --calibration to train it")
    dense_net = None
    if args.network is not None and not network_file:
        dense_net = load_layered_network(args.network)
        if any(m is not None for m in dense_net.spec.masks):
            raise ConfigError(f"{args.network}: pruning starts from a network without masks")
        if dense_net.faults is not None:
            raise ConfigError(f"{args.network}: the network carries a fault map; prune a fault-free network")
        cal = dense_net.calibration
    else:
        cal = load_calibration(args.calibration)
    evaluator = "coupled" if cal.inverter_current is not None else "static"
    if dense_net is not None and dense_net.evaluator in ("static", "coupled"):
        evaluator = dense_net.evaluator
    data = load_dataset(args.dataset, args.mnist_dir)
    train_set, test_set = benchmark_split(data, 0.2, args.seed)
    if dense_net is not None:
        spec = dense_net.spec
        if args.topology is not None and tuple(int(t) for t in args.topology.split(",")) != spec.topology:
            raise ConfigError(f"--topology {args.topology} differs from the network's {spec.topology or 'layers'}")
    elif network_file:
        from memspice.train.command import read_network_file

        if args.topology is not None:
            raise ConfigError("give --topology or a --network file, not both")
        spec = read_network_file(args.network, args.dataset, 64)
    else:
        try:
            sizes = (tuple(int(t) for t in args.topology.split(",")) if args.topology else
                     (data.n_features, 100 if args.dataset == "mnist" else 32, data.n_classes))
        except ValueError:
            raise ConfigError(f"--topology must be sizes like 196,100,10, got {args.topology!r}") from None
        spec = NetworkSpec.dense(sizes)
    if spec.n_inputs != data.n_features or spec.n_outputs != data.n_classes:
        raise ConfigError(f"the network ({spec.topology}) does not fit {args.dataset} "
                          f"({data.n_features} inputs, {data.n_classes} classes)")
    tile = None if args.tile is None else parse_tile(args.tile)
    layered = not spec.is_dense
    if args.method == "csrram":
        if layered:
            raise ConfigError("csrram clusters need a dense network; use admm for a layered one")
        if args.targets is not None or args.compression is not None:
            raise ConfigError("csrram takes --density (of the first layer), not --targets or --compression")
        if args.device_compression is not None or args.weight_compression is not None:
            raise ConfigError("csrram takes --density, not --device-compression or --weight-compression")
        density = parse_amount(args.density if args.density is not None else "0.25")
        from memspice.train.sparsity import block_diagonal_mask

        block_diagonal_mask(spec.plans[0], density, args.cluster_order)  # refuses what cannot be built
        targets = None
    else:
        targets = _targets(args, len(spec.plans))
        from memspice.train.admm import layer_groups

        layer_groups(spec, targets)
        device_compression, weight_compression = _budget(
            args.device_compression, args.weight_compression, targets, spec)
    if tile is not None:
        from memspice.train.sparsity import check_tile

        for plan in spec.plans:
            check_tile(plan, tile)
    chip_faults = None
    if args.fault_map is not None:
        from memspice.train.fault_map import load_fault_map

        chip_faults = load_fault_map(args.fault_map, spec.topology)
    check_output_dir(args.out, "--out")
    tech = sizing = None
    if args.spice:
        from memspice.validate.api import recorded_sizing

        tech = technology_from_args(args, rails=cal.rails)
        sizing = recorded_sizing(cal) or sizing_from_args(args)

    # ---- the work ---------------------------------------------------------------------
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    y_train, y_test = train_set.labels, test_set.labels
    epochs = args.epochs or (1 if layered else 10)
    config = TrainConfig(epochs=epochs, batch_size=16, lr=args.lr, optimizer="adam", loss="bce",
                         loss_link="logit", lr_decay=0.97, seed=args.seed, val_fraction=0.1,
                         progress=sys.stderr.isatty())
    init_mean = -3.0 if layered else -1.5
    trained_here = dense_net is None
    if dense_net is None:
        if layered and args.pretrain_epochs and evaluator == "coupled":
            from memspice.train.trainer import train

            pre = make_model(cal, spec, evaluator="load-aware", init_mean=init_mean)
            first = train(pre, x_train, y_train, dataclasses.replace(config, epochs=args.pretrain_epochs))
            model, params, dense = train_dense(cal, spec, x_train, y_train, config, evaluator, init_mean,
                                               initial_params=first.params)
        else:
            model, params, dense = train_dense(cal, spec, x_train, y_train, config, evaluator, init_mean)
        dense_net = dense.network
    admm_mode = args.admm_mode if args.admm_mode != "auto" else (
        "load-aware" if layered and evaluator == "coupled" else evaluator)
    model = make_model(cal, spec, evaluator=admm_mode, init_mean=init_mean)
    params = [np.clip(conductance_to_theta(g, model.window), -40.0, 40.0) for g in dense_net.conductances]
    if args.method == "csrram":
        pruned = csrram(cal, spec, density, x_train, y_train, config, evaluator, levels=args.levels,
                        order=args.cluster_order)
    else:
        finish = admm_mode == "load-aware" and evaluator == "coupled"
        admm_config = AdmmConfig(rho=args.rho, rounds=args.rounds, epochs_per_round=args.round_epochs,
                                 levels=args.levels, train=config, retrain_epochs=args.retrain_epochs,
                                 finish_evaluator="coupled" if finish else None,
                                 finish=dataclasses.replace(config, epochs=args.tune_epochs) if finish else None,
                                 device_compression=device_compression,
                                 weight_compression=weight_compression,
                                 quantize_rounds=args.quantize_rounds)
        pruned = admm(model, params, x_train, y_train, targets, admm_config)

    rows = []
    n_spice = len(x_test) if args.spice_samples is None else min(args.spice_samples, len(x_test))
    arms = [("dense", dense_net, None), (f"{args.method}", pruned.network, pruned.kept_neurons)]
    if chip_faults is not None:
        from memspice.train.sparsity import cut_fault_map

        arms += [(f"{name} on the faulty chip", dataclasses.replace(
                     net, faults=cut_fault_map(chip_faults, net.spec, spec, kept)), kept)
                 for name, net, kept in arms]
    for name, net, kept in arms:
        counts = hardware_counts(net, spec, kept, tile)
        outputs = predicted_outputs(net, x_test)
        row: dict[str, Any] = {"network": name, "method": "dense" if name.startswith("dense") else args.method,
                               **counts.as_dict(), "model_accuracy": accuracy(outputs, y_test)}
        if args.spice:
            figures = spice_measure(net, tech, sizing, x_test[:n_spice], y_test[:n_spice],
                                    workers=args.workers, transient_samples=args.transient_samples,
                                    ngspice=args.ngspice)
            row.update(figures.as_dict())
        rows.append(row)
    notes = [f"dataset {args.dataset}: {len(x_train)} training images (10 % held out for every choice), "
             f"{len(x_test)} test images" + (f", {n_spice} simulated in ngspice" if args.spice else ""),
             f"evaluator {evaluator}; pruned network {pruned.network.spec.topology or 'layered'}",
             *_record_notes(pruned.record),
             "devices count every memristor built (a conv kernel once per output position)",
             f"energy per inference = transient energy of the rails and input drivers over one 1 µs "
             f"period, mean over the first {args.transient_samples} test images"]
    writers = report_writers(rows, args.out, f"Pruning report ({args.method})", notes)
    files = [p for p, _ in writers]
    write_many_atomic(writers)
    save_layered_network(dataclass_with_metadata(pruned.network, pruned.record), args.out)
    if trained_here:
        save_layered_network(dense_net, args.out / "dense")
    summary = {"method": args.method, "dense": rows[0], "pruned": rows[1], "faulty_chip": rows[2:],
               "files": [str(f) for f in files], "out": str(args.out)}
    return summary


def _record_notes(record: dict[str, Any]) -> list[str]:
    notes = []
    if record.get("targets"):
        notes.append("targets: " + ", ".join(
            "none" if t["structure"] is None else f"{t['structure']} at density {t['density']:.4g}"
            + (f" ({t['tile'][0]}x{t['tile'][1]} tiles)" if t.get("tile") else "")
            for t in record["targets"]))
    for r in record.get("rounds", []):
        notes.append(f"ADMM round {r['round']}: ρ = {r['rho']:.3g}, distance to the target "
                     f"structures ‖s − Π(s)‖ = {r['distance']:.3g}, validation accuracy "
                     f"{100 * r['val_accuracy']:.2f} %")
    if record.get("clusters"):
        notes.append(f"CSrram: {record['clusters']} block-diagonal clusters in the first layer "
                     f"(density {record['first_layer_density']:.4g})")
    if record.get("levels"):
        notes.append(f"{record['levels']} conductance levels")
    return notes


def dataclass_with_metadata(network: Any, record: dict[str, Any]) -> Any:
    """The network with the pruning record in its metadata."""
    import dataclasses

    from memspice.safe_io import json_safe

    return dataclasses.replace(network, metadata={**network.metadata, "pruning": json_safe(record)})


def run(args: argparse.Namespace) -> int:
    """Entry point of ``memspice prune``."""
    from memspice.safe_io import dumps_strict

    summary = run_prune(args)
    if args.json:
        print(dumps_strict(summary, sort_keys=True))
        return 0
    for row in (summary["dense"], summary["pruned"], *summary["faulty_chip"]):
        spice = (f", SPICE {100 * row['spice_accuracy']:.2f} %, static power "
                 f"{1e6 * row['static_power_w']:.1f} µW" if "spice_accuracy" in row else "")
        print(f"{row['network']:<28} {row['devices']:>8,} devices ({row['compression']:.2f}x, area saved "
              f"{100 * row['area_saved']:.1f} %), model {100 * row['model_accuracy']:.2f} %{spice}")
    print(f"report: {summary['out']}/prune_report.md")
    return 0
