"""Benchmark: calibration modes, closed loop, hybrid training and process corners side by side.

Digits 64-32-10 on the built-in card (80/20 split, all 360 test samples simulated):

1. one network per mode (static, load-aware, coupled), each trained in that mode; SPICE on the
   test set; per network the output-voltage RMS/max error of every model against SPICE, the
   agreement, SPICE accuracy against a float tanh-MLP baseline, epoch time relative to static;
2. closed loop from the static-trained network (coupled mode, and static mode for contrast);
3. hybrid: the static-trained network's output layer fine-tuned on SPICE hidden outputs;
4. corners: sky130 LVT (preset sizing) tt/ss/ff/sf/fs, trained at tt vs against all corners
   (skip with ``--no-corners``).

``--mnist`` repeats step 1 for MNIST 196-100-10 (first 8000 train, last 2000 test; simulate
``--mnist-test`` of them) on the built-in card, ``--mnist-sky130`` on sky130 tt LVT
(``--mnist-sky130-test`` samples).
``--quick`` is a < 1 min smoke run. Ends with ONE JSON line holding every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from memspice.io import json_ready  # noqa: E402

MODES = ("static", "load-aware", "coupled")
#: Load grid (Ω) and degree of the load-aware fit: hidden outputs here see ~2–30 µS, beyond the
#: default 0.1–2 MΩ grid (same choice as scripts/bench_modes.py).
LOADS_OHM = tuple(float(v) for v in np.geomspace(5e4, 2e6, 11))
LOAD_DEGREE = 4


def output_errors(model_layers, spice_layers):
    """RMS and max error (V) of the network output (last ``outp``) and the agreement."""
    err = model_layers[-1].outp - spice_layers[-1].outp
    return {"rms_v": float(np.sqrt(np.mean(err**2))), "max_v": float(np.max(np.abs(err))),
            "agreement": float(np.mean(model_layers[-1].outp.argmax(1) == spice_layers[-1].outp.argmax(1)))}


def compare_modes(cal, tech, sizing, x_train, y_train, x_test, y_test, topology, epochs, modes, out, settings, tag):
    """Train one network per mode, simulate each, compare every model with SPICE."""
    from memspice.train.evaluate import network_from_params
    from memspice.train.model import PhaxNetwork, TanhMLP
    from memspice.train.trainer import TrainConfig, train
    from memspice.train.losses import accuracy
    from memspice.validate.api import validate_network

    config = TrainConfig(epochs=epochs, batch_size=16, lr=0.01, lr_decay=0.95, loss="bce", val_fraction=0.0,
                         progress=False)
    mlp = TanhMLP(topology, cal.rails.vss, cal.rails.vdd)
    baseline = accuracy(mlp.predict(train(mlp, x_train, y_train, config).params, x_test), y_test)
    block = {"topology": list(topology), "epochs": epochs, "n_test": int(len(x_test)), "float_accuracy": baseline,
             "networks": {}, "epoch_s": {}}
    networks = {}
    for mode in modes:
        model = PhaxNetwork(cal, topology, evaluator=mode, init_mean=-3.0)
        result = train(model, x_train, y_train, config)
        block["epoch_s"][mode] = float(result.history["seconds"].mean())
        network = network_from_params(model, result.params, {"mode": mode})
        networks[mode] = network
        t0 = time.perf_counter()
        report = validate_network(network, tech, x_test, y_test, Path(out) / f"{tag}_{mode}", sizing=sizing,
                                  settings=settings, evaluator=mode, write_files=False)
        spice_s = time.perf_counter() - t0
        x_sorted = x_test[report.sample_index]
        rows = {m: output_errors(network.layer_voltages(x_sorted, m), report.spice) for m in MODES}
        acc = float(report.comparison.spice_accuracy)
        block["networks"][mode] = {"spice_accuracy": acc, "model_accuracy": float(report.comparison.model_accuracy),
                                   "gap_to_float_points": 100 * (baseline - acc), "spice_s": spice_s, "models": rows}
        print(f"[{tag}] trained {mode}: SPICE acc {100 * acc:.2f} % (float {100 * baseline:.2f} %), "
              f"own-model RMS {1e3 * rows[mode]['rms_v']:.4g} mV, max {1e3 * rows[mode]['max_v']:.4g} mV, "
              f"agreement {100 * rows[mode]['agreement']:.2f} %, SPICE {spice_s:.1f} s", flush=True)
    print(f"\n[{tag}] output error of each model (rows) on each trained network (columns), RMS mV / agree %")
    print(f"  {'model':<11}" + "".join(f"{m:>22}" for m in modes))
    for m in MODES:
        print(f"  {m:<11}" + "".join(f"{1e3 * block['networks'][n]['models'][m]['rms_v']:>13.4g}"
                                    f"{100 * block['networks'][n]['models'][m]['agreement']:>9.2f}" for n in modes))
    if "static" in modes and "coupled" in modes:
        own = block["networks"]["static"]["models"]["static"]["rms_v"] / block["networks"]["coupled"]["models"]["coupled"]["rms_v"]
        same = {n: block["networks"][n]["models"]["static"]["rms_v"] / block["networks"][n]["models"]["coupled"]["rms_v"]
                for n in modes}
        block["static_over_coupled_rms_own"] = own
        block["static_over_coupled_rms_same_network"] = same
        print(f"  static/coupled RMS ratio, each on its own network: {own:.0f}x; on the same network: "
              + ", ".join(f"{n} {r:.0f}x" for n, r in same.items()))
    block["epoch_ratio_to_static"] = {m: s / block["epoch_s"]["static"] for m, s in block["epoch_s"].items()}
    print("  epoch time: " + ", ".join(f"{m} {s:.3g} s ({block['epoch_ratio_to_static'][m]:.0f}x)"
                                       for m, s in block["epoch_s"].items()), flush=True)
    return block, networks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 1 min)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_loop"), help="run directory")
    parser.add_argument("--epochs", type=int, default=40, help="digits training epochs per mode (default: 40)")
    parser.add_argument("--loop-tolerance-mv", type=float, default=0.1,
                        help="closed-loop worst-layer RMS target in mV (default: 0.1, below round 0's error, so the "
                             "rounds show)")
    parser.add_argument("--no-corners", action="store_true", help="skip the sky130 corner study")
    parser.add_argument("--corner-epochs", type=int, default=20, help="corner-study epochs (default: 20)")
    parser.add_argument("--corner-test", type=int, default=200, help="test samples per corner (default: 200)")
    parser.add_argument("--mnist", action="store_true", help="MNIST 196-100-10 on the built-in card")
    parser.add_argument("--mnist-sky130", action="store_true", help="MNIST 196-100-10 on sky130 tt LVT")
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help="folder of MNIST IDX files (default: $MEMSPICE_MNIST_DIR, else the cache `memspice data mnist` fills)")
    parser.add_argument("--mnist-test", type=int, default=2000, help="MNIST test samples simulated (default: 2000)")
    parser.add_argument("--mnist-sky130-test", type=int, default=500,
                        help="MNIST test samples simulated on sky130 (default: 500)")
    parser.add_argument("--mnist-epochs", type=int, default=6, help="MNIST training epochs per mode (default: 6)")
    args = parser.parse_args(argv)

    from memspice.characterize.calibrate import calibrate
    from memspice.characterize.presets import BUILTIN_SIZING, SKY130_LVT_SIZING
    from memspice.data_cache import resolve_mnist_dir
    from memspice.datasets import benchmark_split, features_to_voltages, load_digits, load_mnist, train_test_split
    from memspice.loop.closed_loop import closed_loop
    from memspice.loop.corners import SKY130_CORNERS, corner_study
    from memspice.loop.hybrid import hybrid_train
    from memspice.tech import builtin, sky130
    from memspice.train.trainer import TrainConfig
    from memspice.validate.api import RunSettings

    started = time.perf_counter()
    settings = RunSettings(batch_size=60 if args.quick else 180, force=True)
    tech, sizing = builtin(), BUILTIN_SIZING
    cal = calibrate(tech, sizing, loads_ohm=LOADS_OHM, degree=LOAD_DEGREE)
    train_set, test_set = train_test_split(load_digits(), 0.2, 0)
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    y_train, y_test = train_set.labels, test_set.labels
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:300], y_train[:300], x_test[:60], y_test[:60]
    epochs = 2 if args.quick else args.epochs
    modes = ("static", "coupled") if args.quick else MODES
    summary: dict = {"quick": args.quick}
    summary["digits"], networks = compare_modes(cal, tech, sizing, x_train, y_train, x_test, y_test, (64, 32, 10),
                                                epochs, modes, args.out, settings, "digits")

    fine = TrainConfig(epochs=1 if args.quick else 2, batch_size=16, lr=0.003, lr_decay=0.9, val_fraction=0.0,
                       progress=False)
    loops = {}
    for mode in ("coupled",) if args.quick else ("coupled", "static"):
        print(f"\n[digits] closed loop from the static-trained network, mode {mode}")
        result = closed_loop(networks["static"], tech, x_train, y_train, x_test, y_test, args.out / f"loop_{mode}",
                             calibration=cal, sizing=sizing, mode=mode, max_rounds=1 if args.quick else 3,
                             tolerance_v=args.loop_tolerance_mv * 1e-3, refine_step_v=0.00625 if args.quick else 0.003125,
                             fine_tune=fine, settings=RunSettings(batch_size=settings.batch_size), force=True,
                             log=print)
        loops[mode] = {"converged": result.converged, "rounds": result.rounds.to_dict(orient="records")}
    summary["closed_loop"] = loops

    n_hybrid = 60 if args.quick else 600
    print(f"\n[digits] hybrid: output layer of the static-trained network on SPICE hidden outputs ({n_hybrid} samples)")
    hybrid = hybrid_train(networks["static"], tech, x_train[:n_hybrid], y_train[:n_hybrid], x_test, y_test,
                          args.out / "hybrid", sizing=sizing, iterations=1 if args.quick else 3,
                          settings=RunSettings(batch_size=settings.batch_size), log=print)
    print(f"  SPICE accuracy {100 * hybrid.accuracy_before:.2f} % → {100 * hybrid.accuracy_after:.2f} %, "
          f"{hybrid.spice_samples} samples simulated, {hybrid.seconds:.0f} s")
    summary["hybrid"] = {"accuracy_before": hybrid.accuracy_before, "accuracy_after": hybrid.accuracy_after,
                         "spice_samples": hybrid.spice_samples, "seconds": hybrid.seconds,
                         "iterations": hybrid.iterations.to_dict(orient="records")}

    if not args.quick and not args.no_corners:
        print("\n[digits] sky130 LVT corners: trained at tt vs against all five corners (coupled)")
        config = TrainConfig(epochs=args.corner_epochs, batch_size=16, lr=0.01, lr_decay=0.93, val_fraction=0.0,
                             progress=False)
        study = corner_study(lambda c: sky130(c), x_train, y_train, x_test[: args.corner_test],
                             y_test[: args.corner_test], args.out / "corners", sizing=SKY130_LVT_SIZING,
                             corners=SKY130_CORNERS, topology=(64, 32, 10), config=config,
                             settings=RunSettings(batch_size=100), log=print)
        print(study.pivot().to_string(float_format=lambda v: f"{100 * v:.2f}"))
        summary["corners"] = {"table": study.table.to_dict(orient="records"), "train_seconds": study.train_seconds}

    for flag, name, make, size, n_test in (
            (args.mnist, "mnist_builtin", builtin, BUILTIN_SIZING, args.mnist_test),
            (args.mnist_sky130, "mnist_sky130_tt", lambda: sky130("tt"), SKY130_LVT_SIZING, args.mnist_sky130_test)):
        if not flag:
            continue
        m_tech = make()
        m_cal = cal if name == "mnist_builtin" else calibrate(m_tech, size, loads_ohm=LOADS_OHM, degree=LOAD_DEGREE)
        tr, te = benchmark_split(load_mnist(resolve_mnist_dir(args.mnist_dir)))
        te = te.subset(slice(0, n_test))
        xm_train = features_to_voltages(tr.features, m_cal.rails.vdd, m_cal.rails.vss)
        xm_test = features_to_voltages(te.features, m_cal.rails.vdd, m_cal.rails.vss)
        summary[name], _ = compare_modes(m_cal, m_tech, size, xm_train, tr.labels, xm_test, te.labels,
                                         (196, 100, 10), args.mnist_epochs, MODES, args.out,
                                         RunSettings(batch_size=250, force=True), name)
    summary["seconds"] = time.perf_counter() - started
    print(json.dumps(json_ready(summary), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
