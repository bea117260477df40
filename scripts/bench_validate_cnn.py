"""Benchmark: SPICE validation of a small MNIST CNN, images/s with the stock ngspice and a second build.

MNIST 14×14 (2×2-pooled; the first 8,000 images of the 10k set train, the last 2,000 test),
``conv 4 k3 → pool 2 → conv 8 k3 → pool 2 → flatten → dense 10`` on the built-in card
calibrated in SPICE (with its inverter current table, so validation compares SPICE with the
coupled model). Without ``--network`` a static model is trained for ``--epochs`` (``--quick``:
one epoch on the first 2,000 images), optionally fine-tuned with the coupled evaluator for
``--coupled-epochs`` (a statically trained CNN does not work in the circuit: its conv neurons
drive tens of devices, which the static model ignores), and saved in
the work folder (pass it back with ``--network`` to skip training next time).

For each simulator, in the same run (the stock ``ngspice`` on PATH first, then ``--alt-ngspice``
or ``$MEMSPICE_NGSPICE`` when given): ``validate_network`` on ``--samples`` test images with
``--workers`` ngspice processes, reporting images/s, ngspice CPU ms per image
(``getrusage(RUSAGE_CHILDREN)``), peak program size per worker (ngspice's own report), SPICE
accuracy, agreement with the model and per-layer RMS errors; then one batch deck run alone with
ngspice's accounting on (``set acct``): deck size (lines, MB), netlist loading and parsing
time, setup time before the analysis, analysis time, equations and Newton iterations per image.
Prints the figures and the ratios of the second build to the stock one, then ONE JSON line.

Usage: ``python scripts/bench_validate_cnn.py --mnist-dir DIR [--quick] [--workers 2]
[--samples 500] [--alt-ngspice EXE] [--network DIR] [--work DIR]`` (``DIR`` holds
``t10k-images-idx3-ubyte.gz``; or set ``MEMSPICE_MNIST_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

def cnn_spec() -> Any:
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 14, 14), (Conv2d(4, 3), AvgPool2d(2), Conv2d(8, 3), AvgPool2d(2),
                                     Flatten(), Dense(10)))


def mnist_voltages(directory: Path, vdd: float, vss: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pooled MNIST 10k set's benchmark split as input voltages: ``(x_train, y_train, x_test, y_test)``."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_mnist

    train, test = benchmark_split(load_mnist(directory, "t10k"))
    return (features_to_voltages(train.features, vdd, vss), train.labels,
            features_to_voltages(test.features, vdd, vss), test.labels)


def trained_network(args: argparse.Namespace, work: Path) -> tuple[Any, dict]:
    """The CNN: ``--network`` as saved, or a static model trained here for ``--epochs``."""
    from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network

    if args.network is not None:
        return load_layered_network(args.network), {"trained_here": False}
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.mapping import theta_to_conductance
    from memspice.train.trainer import TrainConfig, train

    cal = calibrate(builtin(), InverterSizing())
    x, y, x_test, y_test = mnist_voltages(args.mnist_dir, cal.rails.vdd, cal.rails.vss)
    model = CrossbarNetwork(cal, cnn_spec(), init_mean=-1.0)
    start = time.perf_counter()
    images = args.train_images or (2000 if args.quick else len(y))
    result = train(model, x[:images], y[:images],
                   TrainConfig(epochs=args.epochs, lr=0.05, loss="bce", loss_link="logit", seed=0, patience=0))
    seconds = time.perf_counter() - start
    model_accuracy = float(np.mean(model.predict(result.params, x_test).argmax(axis=1) == y_test))
    info = {"trained_here": True, "epochs": args.epochs, "train_s": seconds,
            "static_model_test_accuracy": model_accuracy}
    params, evaluator = result.params, "static"
    if args.coupled_epochs:
        # the static model misses the conv neurons' load by far: fine-tune with the coupled one
        coupled = CrossbarNetwork(cal, cnn_spec(), evaluator="coupled")
        start = time.perf_counter()
        result = train(coupled, x[:images], y[:images],
                       TrainConfig(epochs=args.coupled_epochs, lr=0.02, loss="bce", loss_link="logit", seed=1,
                                   patience=0), initial_params=params)
        params, evaluator = result.params, "coupled"
        info.update(coupled_epochs=args.coupled_epochs, coupled_train_s=time.perf_counter() - start)
    sigma = tuple(theta_to_conductance(t, model.window) for t in params)
    network = TrainedCrossbarNetwork(cnn_spec(), sigma, cal, evaluator,
                                     metadata={"dataset": "mnist", **info})
    save_layered_network(network, work / "network")
    return network, {**info, "saved": str(work / "network")}


_STAT = re.compile(r"^(Total iterations|Circuit Equations|Total analysis time \(seconds\)|Total elapsed time \(seconds\)|"
                   r"Netlist loading time|Netlist parsing time)\s*=\s*([0-9.eE+-]+)", re.MULTILINE)


#: Images in the deck run with ngspice's accounting on (its load, parse and setup times do not
#: depend on them; its analysis time grows with them).
PROBE_IMAGES = 10


def probe(circuit: Any, x: np.ndarray, ngspice: str) -> dict:
    """The size of a batch deck of ``x``, and one deck of its first images alone with ngspice's
    accounting on: where ngspice's time goes."""
    from memspice.netlist.emit import emit
    from memspice.sim import SimOptions, simulate_text

    start = time.perf_counter()
    text = emit(circuit.dc_deck(x))
    build_s = time.perf_counter() - start
    batch = {"batch_images": len(x), "deck_lines": text.count("\n"), "deck_mb": len(text.encode()) / 1e6,
             "deck_build_s": build_s}
    x = x[:PROBE_IMAGES]
    deck = circuit.dc_deck(x)
    text = emit(deck)
    start = time.perf_counter()
    result = simulate_text(text, deck.model_roots, (*deck.settings, ("acct", "")),
                           SimOptions(keep="never", ngspice=ngspice, timeout_s=3600))
    wall = time.perf_counter() - start
    stats = {name: float(value) for name, value in _STAT.findall(result.output)}
    total, analysis = stats.get("Total elapsed time (seconds)"), stats.get("Total analysis time (seconds)")
    size = re.search(r"Maximum ngspice program size\s*=\s*([0-9.]+)\s*MB", result.output)
    return {**batch, "images": len(x), "wall_s": wall, "equations": stats.get("Circuit Equations"),
            "netlist_load_s": stats.get("Netlist loading time"), "netlist_parse_s": stats.get("Netlist parsing time"),
            "setup_s": None if total is None or analysis is None else total - analysis,
            "analysis_s": analysis, "ngspice_elapsed_s": total,
            "newton_iterations_per_image": stats["Total iterations"] / len(x) if "Total iterations" in stats else None,
            "program_mb": float(size.group(1)) if size else None}


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(network: Any, x: np.ndarray, labels: np.ndarray, work: Path, name: str, ngspice: str,
            workers: int, batch_size: int) -> dict:
    """``validate_network`` with ``ngspice``, then the accounting probe on one batch."""
    from memspice.tech import builtin
    from memspice.validate.api import RunSettings, validate_network

    cpu = _children_cpu_s()
    start = time.perf_counter()
    report = validate_network(network, builtin(), x, labels, work / f"run_{name}", write_files=False,
                              settings=RunSettings(batch_size=batch_size, workers=workers, ngspice=ngspice,
                                                   force=True))
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu
    s = report.summary
    if not report.complete:
        raise SystemExit(f"{name}: failed batches {s['failed_batches']}")
    from memspice.validate.api import network_sizing
    from memspice.validate.layered import layered_circuit

    circuit = layered_circuit(network, builtin(), network_sizing(network))
    batch = x[: min(batch_size, len(x))]
    return {"ngspice": ngspice, "images": len(x), "batches": s["batches_total"], "batch_size": batch_size,
            "images_per_s": s["samples_per_s"], "dc_elapsed_s": s["dc_elapsed_s"],
            "validate_wall_s": wall, "ngspice_cpu_ms_per_image": 1e3 * cpu / len(x),
            "peak_program_mb_per_worker": s["ngspice_program_mb_max"],
            "spice_accuracy": s["spice_accuracy"], "model_accuracy": s["model_accuracy"],
            "agreement": s["agreement"], "model_evaluator": s["model_evaluator"],
            "layer_rms_mv": {f"{r['layer']}{r['output']}": 1e3 * r["rms_v"] for r in s["layer_errors"]},
            "simulator": (s.get("simulator") or {}).get("version"),
            "probe": probe(circuit, batch, ngspice)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-dir", type=Path, default=os.environ.get("MEMSPICE_MNIST_DIR"),
                        help="folder with the MNIST t10k IDX files (default: $MEMSPICE_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true",
                        help="40 images, 1 training epoch on 2,000 images (about a minute)")
    parser.add_argument("--samples", type=int, default=None, help="test images to validate (default: 500)")
    parser.add_argument("--workers", type=int, default=2, help="ngspice processes at once (default: 2)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per deck (default: the images split into 2 batches per worker)")
    parser.add_argument("--epochs", type=int, default=None, help="static training epochs (default: 5)")
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N images (default: 8,000; --quick: 2,000)")
    parser.add_argument("--stock-ngspice", default="ngspice", metavar="EXE",
                        help="the baseline ngspice (default: ngspice on PATH)")
    parser.add_argument("--coupled-epochs", type=int, default=0,
                        help="then fine-tune this many epochs with the coupled evaluator (default: 0)")
    parser.add_argument("--network", type=Path, default=None, help="a saved CNN (skips training)")
    parser.add_argument("--alt-ngspice", default=os.environ.get("MEMSPICE_NGSPICE"), metavar="EXE",
                        help="second ngspice build to compare (default: $MEMSPICE_NGSPICE)")
    parser.add_argument("--no-alt", action="store_true", help="only the stock ngspice")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.mnist_dir is None:
        parser.error("give --mnist-dir DIR or set MEMSPICE_MNIST_DIR")
    args.mnist_dir = Path(args.mnist_dir)
    samples = args.samples or (40 if args.quick else 500)
    args.epochs = args.epochs or (1 if args.quick else 5)
    batch_size = args.batch_size or -(-samples // (2 * args.workers))
    simulators = {"stock": args.stock_ngspice}
    if args.alt_ngspice and not args.no_alt:
        simulators["alt"] = args.alt_ngspice
    with tempfile.TemporaryDirectory(prefix="bench_validate_cnn_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        network, training = trained_network(args, work)
        _, _, x, y = mnist_voltages(args.mnist_dir, network.calibration.rails.vdd, network.calibration.rails.vss)
        x, y = x[:samples], y[:samples]
        from memspice.validate.layered import model_states

        start = time.perf_counter()
        model_states(network, network.device_conductances(), x, "coupled")
        model_s = time.perf_counter() - start
        runs = {name: measure(network, x, y, work, name, exe, args.workers, batch_size)
                for name, exe in simulators.items()}
    spec = network.spec
    est = spec.estimate(1)
    print(f"MNIST 14x14 conv4 k3-pool2-conv8 k3-pool2-dense10: {est.devices:,} devices, {est.columns} neurons; "
          f"{samples} test images, {args.workers} workers, batches of {batch_size}")
    if training.get("trained_here"):
        print(f"  trained here: {args.epochs} static epochs in {training['train_s']:.1f} s, static model "
              f"test accuracy {100 * training['static_model_test_accuracy']:.2f} %"
              + (f"; then {args.coupled_epochs} coupled epochs in {training['coupled_train_s']:.1f} s"
                 if args.coupled_epochs else ""))
    print(f"  coupled model on {samples} images: {model_s:.2f} s ({samples / model_s:.0f} images/s)")
    for name, r in runs.items():
        p = r["probe"]
        print(f"  {name:5s} {r['simulator']}: {r['images_per_s']:.2f} images/s, {r['ngspice_cpu_ms_per_image']:.1f} "
              f"ms CPU/image, peak {r['peak_program_mb_per_worker']} MB/worker; SPICE accuracy "
              f"{100 * r['spice_accuracy']:.2f} %, model ({r['model_evaluator']}) {100 * r['model_accuracy']:.2f} %, "
              f"agreement {100 * r['agreement']:.2f} %")
        print("        layer RMS errors (mV): " + ", ".join(f"{k} {v:.3f}" for k, v in r["layer_rms_mv"].items()))
        print(f"        a deck of {p['batch_images']} images: {p['deck_lines']:,} lines, {p['deck_mb']:.1f} MB, built "
              f"in {p['deck_build_s']:.2f} s; {p['images']} images with ngspice's accounting: load "
              f"{p['netlist_load_s']} s, parse {p['netlist_parse_s']} s, setup {_s(p['setup_s'])} s, analysis "
              f"{p['analysis_s']} s, {p['equations']:.0f} equations, {p['newton_iterations_per_image']:.2f} Newton "
              f"iterations/image")
    ratios = {}
    if "alt" in runs:
        ratios = {"images_per_s_alt_over_stock": runs["alt"]["images_per_s"] / runs["stock"]["images_per_s"],
                  "cpu_per_image_stock_over_alt": runs["stock"]["ngspice_cpu_ms_per_image"]
                  / runs["alt"]["ngspice_cpu_ms_per_image"]}
        print(f"  alt / stock: {ratios['images_per_s_alt_over_stock']:.2f}x images/s, "
              f"{ratios['cpu_per_image_stock_over_alt']:.2f}x less CPU per image")
    print(json.dumps({"benchmark": "validate_cnn", "samples": samples, "workers": args.workers, "batch_size": batch_size,
                      "devices": est.devices, "neurons": est.columns, "training": training,
                      "coupled_model_s": model_s, "runs": runs, "ratios": ratios}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
