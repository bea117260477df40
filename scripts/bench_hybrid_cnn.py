"""Benchmark: hybrid training of the two-conv MNIST CNN, every accuracy measured in ngspice.

The memristor-CNN procedure (Yao et al., Nature 2020) on MNIST 14×14 and the CNN of
``scripts/bench_cnn.py`` (``conv 4 k3 → pool 2 → conv 8 k3 → pool 2 → flatten → dense 10``):

1. the ex-situ network: trained here by bench_cnn's recipe (load-aware pre-training, coupled
   fine-tuning), or loaded with ``--network DIR`` (e.g. ``bench_cnn.py --work W`` saves
   ``W/network``);
2. optionally (``--qat-levels N``; default 0 = off) fine-tuned with a level grid (normally the
   transfer's) (:func:`memspice.loop.hybrid_layered.quantization_aware_finetune`),
   so the transfer no longer rounds its small conductances away;
3. per programming seed, :func:`memspice.loop.hybrid.hybrid_train_layered`: the test images
   through the ideal circuit ("software", simulated once), transferred to hardware (8 levels
   per device, i.e. 15 signed levels per differential pair, 10 % lognormal programming
   variation, every physical device drawn on its own; "transfer", the baseline), 10 % of the
   training images simulated through that circuit and only the last dense layer retrained on
   its simulated inputs, programmed again, in ``--iterations`` simulate → fit → program rounds
   (default 3, softmax cross-entropy, 30 epochs a round, Adam at lr 0.01, cosine) ("hybrid");
   the recovered fraction
   ``(hybrid − transfer)/(software − transfer)``.

Data: :func:`memspice.datasets.benchmark_split` (MNIST's first 8,000 images of the 10k set
train, the last 2,000 test; ``--mnist DIR`` or ``$MEMSPICE_MNIST_DIR``). ``--quick`` runs
scikit-learn's digits (300 training images) on a tiny two-conv CNN, one seed and 10 test
images (< 1 min). ``--software-accuracy F`` takes the ideal circuit's SPICE accuracy on the
same test images from an earlier run (e.g. bench_cnn's validation) instead of simulating it.
``--ngspice EXE``
(or ``$MEMSPICE_NGSPICE``) picks the simulator; a KLU build is strongly advised for the full
run. Prints per-seed and mean figures and ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

FIGURES = ("software", "transfer", "hybrid", "recovered_fraction", "data_fraction")


def bench_cnn() -> Any:
    """``scripts/bench_cnn.py`` as a module (its topology and training recipe)."""
    path = Path(__file__).with_name("bench_cnn.py")
    spec = importlib.util.spec_from_file_location("bench_cnn", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_spec() -> Any:
    """A tiny two-conv CNN for the 8×8 digits (the ``--quick`` run)."""
    from memspice.network import Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 8, 8), (Conv2d(2, 3), Conv2d(4, 3), Flatten(), Dense(10)))


def train_ex_situ(cal: Any, spec: Any, recipe: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """bench_cnn's recipe without its float reference: load-aware pre-training from θ mean
    ``init_mean``, then coupled fine-tuning; the validation split picks the epoch."""
    from memspice.train.conv_io import TrainedCrossbarNetwork
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.mapping import theta_to_conductance
    from memspice.train.trainer import TrainConfig, train

    base = dict(loss="softmax_ce", loss_link="logit", schedule="cosine", val_fraction=0.1, seed=0, progress=False)
    pre = CrossbarNetwork(cal, spec, evaluator=recipe.pre_evaluator, init_mean=recipe.init_mean)
    params = train(pre, x, y, TrainConfig(epochs=recipe.pre_epochs, batch_size=recipe.pre_batch,
                                          lr=recipe.pre_lr, **base)).params
    if recipe.tune_epochs:
        coupled = CrossbarNetwork(cal, spec, evaluator="coupled")
        params = train(coupled, x, y, TrainConfig(epochs=recipe.tune_epochs, batch_size=recipe.tune_batch,
                                                  lr=recipe.tune_lr, **base), initial_params=params).params
    sigma = tuple(theta_to_conductance(t, pre.window) for t in params)
    return TrainedCrossbarNetwork(spec, sigma, cal, "coupled", metadata={"recipe": recipe._asdict()})



def _fraction(value: float | None) -> str:
    """A recovered fraction for the console: two decimals, or "n/a" when the transfer lost nothing."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=os.environ.get("MEMSPICE_MNIST_DIR"),
                        help="folder with the MNIST t10k IDX files (or $MEMSPICE_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true", help="digits, a tiny two-conv CNN, few images (< 1 min)")
    parser.add_argument("--network", type=Path, default=None,
                        help="a saved layered network to start from (default: train one by bench_cnn's recipe)")
    parser.add_argument("--out", type=Path, default=Path("bench_hybrid_cnn_run"),
                        help="run directory (trained networks and per-seed results are written here)")
    parser.add_argument("--seeds", default=None, help="comma-separated programming seeds (default: 0,1; --quick: 0)")
    parser.add_argument("--test-images", type=int, default=None,
                        help="test images simulated (default: all of the split; --quick: 10)")
    parser.add_argument("--levels", type=int, default=8, help="levels per device (default: 8)")
    parser.add_argument("--variation", type=float, default=0.1, help="lognormal sigma (default: 0.1)")
    parser.add_argument("--data-fraction", type=float, default=0.1,
                        help="share of training images simulated for the retraining (default: 0.1)")
    parser.add_argument("--qat-levels", type=int, default=0,
                        help="quantization-aware fine-tuning on this level grid before the transfer, "
                             "normally --levels (default: 0 = none)")
    parser.add_argument("--qat-epochs", default="8,1",
                        help="load-aware,coupled epochs of the quantization-aware stage (default: 8,1)")
    parser.add_argument("--retrain-epochs", type=int, default=30, help="last-layer epochs per round (default: 30)")
    parser.add_argument("--retrain-lr", type=float, default=0.01,
                        help="last-layer learning rate, cosine schedule (default: 0.01)")
    parser.add_argument("--retrain-schedule", choices=["cosine", "exponential"], default="cosine",
                        help="learning-rate schedule of each round (default: cosine; exponential without "
                             "decay is a constant rate)")
    parser.add_argument("--iterations", type=int, default=3,
                        help="simulate → fit → program rounds of the last layer (default: 3)")
    parser.add_argument("--software-accuracy", type=float, default=None,
                        help="SPICE accuracy (fraction) of this network's ideal circuit on the same test images "
                             "from an earlier run (e.g. bench_cnn's validation), instead of simulating it")
    parser.add_argument("--retrain-loss", choices=["softmax_ce", "bce"], default="softmax_ce",
                        help="last-layer loss on the output logits (default: softmax_ce)")
    parser.add_argument("--simulator", choices=["spice", "model"], default="spice",
                        help="spice (default), or the coupled model standing in for SPICE in every step "
                             "(a fast check of the procedure)")
    parser.add_argument("--workers", type=int, default=2, help="parallel ngspice processes (default: 2)")
    parser.add_argument("--ngspice", default=os.environ.get("MEMSPICE_NGSPICE"),
                        help="ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",") if s.strip()]
        qat_epochs = tuple(int(s) for s in args.qat_epochs.split(","))
    except ValueError:
        parser.error("--seeds and --qat-epochs take comma-separated integers")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error("--seeds needs distinct seeds")
    if len(qat_epochs) != 2 or min(qat_epochs) < 0:
        parser.error("--qat-epochs takes two non-negative integers: load-aware,coupled")
    if args.workers < 1 or args.retrain_epochs < 1 or not args.retrain_lr > 0 or args.iterations < 1:
        parser.error("--workers, --retrain-epochs, --retrain-lr and --iterations must be positive")
    if args.software_accuracy is not None and not 0 <= args.software_accuracy <= 1:
        parser.error("--software-accuracy is a fraction in [0, 1]")
    qat_levels = args.qat_levels or 0

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import benchmark_split, features_to_voltages, load_digits, load_mnist
    from memspice.errors import MemspiceError
    from memspice.loop.hybrid import hybrid_train_layered
    from memspice.loop.hybrid_layered import QuantizationAwareSettings, quantization_aware_finetune
    from memspice.sim import SimOptions
    from memspice.tech import builtin
    from memspice.train.conv_io import load_layered_network, save_layered_network
    from memspice.train.layered_devices import DeviceSettings
    from memspice.train.trainer import TrainConfig

    t0 = time.perf_counter()
    bench = bench_cnn()
    try:
        if args.quick:
            data, spec = load_digits(), digits_spec()
            recipe = bench.Recipe(train_images=300, pre_epochs=8, tune_epochs=0)
            qat_epochs = (1, 0) if args.qat_epochs == "8,1" else qat_epochs
            test_images = args.test_images or 10
        else:
            if args.mnist is None:
                parser.error("give --mnist DIR or set MEMSPICE_MNIST_DIR (or use --quick)")
            data, spec, recipe = load_mnist(args.mnist, "t10k"), bench.cnn_spec(bench.Recipe()), bench.Recipe()
            test_images = args.test_images
        qat = None
        if qat_levels:
            qat = QuantizationAwareSettings(levels=qat_levels, load_aware_epochs=qat_epochs[0],
                                            coupled_epochs=qat_epochs[1])
        train_set, test_set = benchmark_split(data)
        if test_images is not None and not 1 <= test_images <= len(test_set.labels):
            parser.error(f"--test-images must be in [1, {len(test_set.labels)}]")
        network = load_layered_network(args.network) if args.network else None
        if network is not None:  # the figures describe the network given, not the recipe's
            spec = network.spec
        cal = network.calibration if network is not None else calibrate(builtin(), InverterSizing())
        x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)[:recipe.train_images]
        y_train = train_set.labels[:recipe.train_images]
        x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)[:test_images]
        y_test = test_set.labels[:test_images]
        args.out.mkdir(parents=True, exist_ok=True)
        if network is None:
            network = train_ex_situ(cal, spec, recipe, x_train, y_train)
            save_layered_network(network, args.out / "network")
        train_s = time.perf_counter() - t0
        if qat is not None:
            network = quantization_aware_finetune(network, x_train, y_train, qat,
                                                  log=lambda m: print(m, file=sys.stderr, flush=True))
            save_layered_network(network, args.out / "network_qat")
        qat_s = time.perf_counter() - t0 - train_s
        config = TrainConfig(epochs=args.retrain_epochs, batch_size=32, lr=args.retrain_lr, loss=args.retrain_loss,
                             schedule=args.retrain_schedule, loss_link="logit", val_fraction=0.0, progress=False)
        options = SimOptions(keep="never", ngspice=args.ngspice, timeout_s=3600)
        batch = max(1, -(-len(x_test) // (2 * args.workers)))
        rows: list[dict[str, Any]] = []
        for seed in seeds:
            settings = DeviceSettings(levels=args.levels, variation_sigma=args.variation, seed=seed)
            result = hybrid_train_layered(
                network, builtin(), x_train, y_train, x_test, y_test, devices=settings,
                data_fraction=args.data_fraction, config=config, iterations=args.iterations, batch_size=batch, workers=args.workers,
                sim_options=options, out_dir=args.out / f"seed{seed}",
                # the ideal circuit does not depend on the seed: simulated once
                software_accuracy=rows[0]["software"] if rows else args.software_accuracy, simulator=args.simulator,
                log=lambda m: print(m, file=sys.stderr, flush=True))
            s = result.summary()
            rows.append({"seed": seed, **{k: s[k] for k in (*FIGURES, "software_model", "train_samples",
                                                            "test_samples", "spice_samples", "seconds")}})
            r = rows[-1]
            print(f"seed {seed}: software {100 * r['software']:.2f} %, transfer {100 * r['transfer']:.2f} %, "
                  f"hybrid {100 * r['hybrid']:.2f} %, recovered {_fraction(r['recovered_fraction'])}, "
                  f"{r['train_samples']} training images ({100 * r['data_fraction']:.1f} %), "
                  f"{r['test_samples']} test images, {r['seconds']:.0f} s", flush=True)
    except MemspiceError as exc:
        print(f"memspice: error: {exc}", file=sys.stderr)
        return 2
    mean: dict[str, float | None] = {}
    for key in FIGURES:
        values = [r[key] for r in rows if r[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
    lost = mean["software"] - mean["transfer"]
    # the recovered fraction of the mean accuracies (less noisy than the mean of the fractions)
    mean["recovered_fraction_of_means"] = (mean["hybrid"] - mean["transfer"]) / lost if lost > 0 else None
    print(f"mean over {len(rows)} seeds: software {100 * mean['software']:.2f} %, transfer "
          f"{100 * mean['transfer']:.2f} %, hybrid {100 * mean['hybrid']:.2f} %, recovered "
          f"{_fraction(mean['recovered_fraction'])} (of the means: {_fraction(mean['recovered_fraction_of_means'])})")
    summary = {"benchmark": "hybrid_cnn", "quick": args.quick, "network": spec.summary(),
               "levels": args.levels, "variation_sigma": args.variation,
               "quantization_aware": None if qat is None else qat.as_dict(),
               "retrain": {"epochs": args.retrain_epochs, "lr": args.retrain_lr, "schedule": args.retrain_schedule,
                           "loss": args.retrain_loss, "iterations": args.iterations},
               "software_simulated": args.software_accuracy is None, "simulator": args.simulator,
               "hybrid": {"per_seed": rows, "mean": mean},
               "train_seconds": train_s, "qat_seconds": qat_s, "total_seconds": time.perf_counter() - t0}
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
