"""Benchmark: hybrid training of a small memristor CNN, every accuracy measured in ngspice.

The memristor-CNN procedure (Yao et al., Nature 2020) on MNIST 14×14: a small CNN
``conv 4 k3 → pool 2 → dense 10`` is trained ex situ (static model, then the coupled model),
transferred to hardware (8 levels per device, i.e. 15 signed levels per differential pair,
10 % lognormal programming variation, every physical device drawn on its own), 10 % of the
training images are simulated through that circuit and only the last dense layer is
retrained on its simulated inputs, then programmed again. Reports, per programming seed,
the SPICE accuracies of the ideal circuit (software), after transfer and after hybrid
training on the same test images, and the recovered fraction
``(hybrid − transfer)/(software − transfer)``; the baseline is the transfer in the same run.

Data: the first 8,000 images of the MNIST 10k set train, the last 2,000 test (``--mnist DIR``
or ``$MEMSPICE_MNIST_DIR``). ``--quick`` runs scikit-learn's digits on a tiny CNN instead
(< 1 min). The trained network is kept in ``--out`` and reused by later runs. Ends with one
line of JSON.
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

TRAIN_IMAGES = 8000


def mnist_spec():
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 14, 14), (Conv2d(4, 3), AvgPool2d(2), Flatten(), Dense(10)))


def digits_spec():
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))


def train_network(cal, spec, x, y, static_epochs, coupled_epochs):
    """Static pre-training, then coupled fine-tuning (so the circuit is what the model saw)."""
    from memspice.train.conv_io import TrainedCrossbarNetwork
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.mapping import theta_to_conductance
    from memspice.train.trainer import TrainConfig, train

    static = CrossbarNetwork(cal, spec, init_mean=-1.0)
    params = train(static, x, y, TrainConfig(epochs=static_epochs, lr=0.05, loss_link="logit",
                                             val_fraction=0.0, progress=False, seed=0)).params
    evaluator = "static"
    if coupled_epochs:
        evaluator = "coupled"
        coupled = CrossbarNetwork(cal, spec, evaluator="coupled")
        params = train(coupled, x, y, TrainConfig(epochs=coupled_epochs, lr=0.02, lr_decay=0.7,
                                                  loss_link="logit", val_fraction=0.0,
                                                  progress=False, seed=1),
                       initial_params=params).params
    g = tuple(theta_to_conductance(t, static.window) for t in params)
    return TrainedCrossbarNetwork(spec, g, cal, evaluator=evaluator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=os.environ.get("MEMSPICE_MNIST_DIR"),
                        help="folder with the MNIST t10k IDX files (or $MEMSPICE_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true", help="digits, a tiny CNN, few images (< 1 min)")
    parser.add_argument("--out", type=Path, default=Path("bench_hybrid_cnn_run"),
                        help="run directory (the trained network is reused from here)")
    parser.add_argument("--seeds", default="0", help="comma-separated programming seeds (default: 0)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images simulated (default: 2000)")
    parser.add_argument("--levels", type=int, default=8, help="levels per device (default: 8)")
    parser.add_argument("--variation", type=float, default=0.1, help="lognormal sigma (default: 0.1)")
    parser.add_argument("--data-fraction", type=float, default=0.1, help="share of training images (default: 0.1)")
    parser.add_argument("--workers", type=int, default=None, help="parallel ngspice processes")
    args = parser.parse_args(argv)

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import features_to_voltages, load_digits, load_mnist
    from memspice.loop.hybrid import hybrid_train_layered
    from memspice.tech import builtin
    from memspice.train.conv_io import load_layered_network, save_layered_network
    from memspice.train.layered_devices import DeviceSettings

    t0 = time.perf_counter()
    cal = calibrate(builtin(), InverterSizing())
    if args.quick:
        data, spec, epochs = load_digits(), digits_spec(), (3, 1)
        n_train, n_test = 1000, 100
        features, labels = data.features, data.labels
        train_slice, test_slice = slice(0, n_train), slice(1400, 1400 + n_test)
    else:
        if args.mnist is None:
            parser.error("give --mnist DIR or set MEMSPICE_MNIST_DIR (or use --quick)")
        data, spec, epochs = load_mnist(args.mnist, "t10k"), mnist_spec(), (4, 3)
        features, labels = data.features, data.labels
        train_slice = slice(0, TRAIN_IMAGES)
        test_slice = slice(len(labels) - 2000, len(labels) - 2000 + args.test_images)
    x = features_to_voltages(features, cal.rails.vdd, cal.rails.vss)
    x_train, y_train = x[train_slice], labels[train_slice]
    x_test, y_test = x[test_slice], labels[test_slice]
    net_dir = args.out / ("network_quick" if args.quick else "network")
    if (net_dir / "network.json").exists():
        network = load_layered_network(net_dir, cal)
    else:
        network = train_network(cal, spec, x_train, y_train, *epochs)
        save_layered_network(network, net_dir)
    train_s = time.perf_counter() - t0
    rows: list[dict] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        settings = DeviceSettings(levels=args.levels, variation_sigma=args.variation, seed=seed)
        result = hybrid_train_layered(network, builtin(), x_train, y_train, x_test, y_test, devices=settings,
                                      data_fraction=args.data_fraction, workers=args.workers,
                                      out_dir=args.out / f"seed{seed}",
                                      # the ideal circuit does not depend on the seed: simulated once
                                      software_accuracy=rows[0]["software"] if rows else None)
        rows.append({"seed": seed, **{k: result.summary()[k] for k in (
            "software", "software_model", "transfer", "hybrid", "recovered_fraction", "data_fraction",
            "train_samples", "test_samples", "spice_samples", "seconds")}})
        r = rows[-1]
        print(f"seed {seed}: software {100 * r['software']:.2f} %, transfer {100 * r['transfer']:.2f} %, "
              f"hybrid {100 * r['hybrid']:.2f} %, recovered {r['recovered_fraction']}, "
              f"{r['train_samples']} training images ({100 * r['data_fraction']:.1f} %), "
              f"{r['test_samples']} test images, {r['seconds']:.0f} s", flush=True)
    recovered = [r["recovered_fraction"] for r in rows if r["recovered_fraction"] is not None]
    summary = {"benchmark": "hybrid_cnn", "quick": args.quick, "network": spec.to_dict(),
               "levels": args.levels, "variation_sigma": args.variation, "rows": rows,
               "mean_recovered_fraction": float(np.mean(recovered)) if recovered else None,
               "train_seconds": train_s}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
