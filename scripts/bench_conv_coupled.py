"""Benchmark: the coupled evaluator of a CNN against the static one, and against ngspice.

MNIST 14×14 (the first 8,000 images of the 10k set train, as in the other benchmarks),
``conv 4 k3 → pool 2 → conv 8 k3 → pool 2 → dense 10`` on the built-in card calibrated in
SPICE. Trains the network a few batches with the coupled evaluator (so its neurons are where
training puts them), then:

- times one training step (``loss_and_grad`` on a batch) of each evaluator in the same
  process, interleaved, median over batches, and the epoch time that implies (8,000 images):
  static, coupled (sparse conv loads, the default) and coupled with every load held dense
  (the baseline of the sparse loads);
- simulates a handful of training images in ngspice through one flat batch deck
  (``.options reltol=1e-6 vntol=1e-9``) and reports each evaluator's RMS and max error per
  layer, model against SPICE node voltages, on the same conductances.

Usage: ``python scripts/bench_conv_coupled.py --mnist DIR [--quick]`` (``DIR`` holds
``t10k-images-idx3-ubyte.gz``; or set ``MEMSPICE_MNIST_DIR``). Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

TRAIN_IMAGES = 8000


def spec():
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 14, 14), (Conv2d(4, 3), AvgPool2d(2), Conv2d(8, 3), AvgPool2d(2),
                                     Flatten(), Dense(10)))


def step_seconds(models, params, x, y, loss, batch, batches):
    """Median wall time (s) of one ``loss_and_grad`` on ``batch`` images, per model (the
    models take turns on each batch, so load on the machine hits them alike)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for index in range(batches):
        chunk = slice(index * batch, (index + 1) * batch)
        for name, model in models.items():
            t0 = time.perf_counter()
            model.loss_and_grad(params, x[chunk], y[chunk], loss)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def spice_errors(cal, network_spec, sigma, x):
    """Per layer and evaluator: RMS and max |model − SPICE| over outn and outp (V)."""
    from memspice.circuit.builders import PRECISE_OPTIONS, InverterSizing
    from memspice.circuit.wiring import output_node
    from memspice.sim import simulate
    from memspice.tech import builtin
    from memspice.train.conv_circuit import batch_deck
    from memspice.train.conv_io import TrainedCrossbarNetwork
    from memspice.train.conv_model import CrossbarNetwork

    network = TrainedCrossbarNetwork(network_spec, tuple(sigma), cal)
    deck = replace(batch_deck(network, builtin(), InverterSizing(), x, columns=False),
                   options=PRECISE_OPTIONS)
    t0 = time.perf_counter()
    plot = simulate(deck).plot(0)
    spice_s = time.perf_counter() - t0
    out: dict[str, object] = {"spice_s": spice_s, "images": len(x)}
    for mode in ("static", "coupled"):
        trace = CrossbarNetwork(cal, network_spec, evaluator=mode).forward(list(sigma), x)
        layers = []
        for index, (state, plan) in enumerate(zip(trace.layers, network_spec.plans)):
            diffs = []
            for pol, model in (("n", state.outn), ("p", state.outp)):
                spice = np.stack([np.atleast_1d(np.asarray(plot[output_node(index, m, pol)]))
                                  for m in range(plan.n_columns)], axis=1)
                diffs.append(np.ravel(model - spice))
            d = np.concatenate(diffs)
            layers.append({"rms_v": float(np.sqrt(np.mean(d * d))),
                           "max_v": float(np.abs(d).max())})
        out[mode] = layers
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=os.environ.get("MEMSPICE_MNIST_DIR"),
                        help="folder with the MNIST t10k IDX files (or $MEMSPICE_MNIST_DIR)")
    parser.add_argument("--quick", action="store_true", help="fewer batches and images (< 1 min)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mnist is None:
        parser.error("give --mnist DIR or set MEMSPICE_MNIST_DIR")

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import features_to_voltages, load_mnist
    from memspice.tech import builtin
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.losses import Loss
    from memspice.train.mapping import theta_to_conductance
    from memspice.train.optim import Adam

    train_batches, timed_batches, images = (3, 3, 3) if args.quick else (20, 7, 10)
    cal = calibrate(builtin(), InverterSizing())
    data = load_mnist(args.mnist, "t10k")
    x = features_to_voltages(data.features[:TRAIN_IMAGES], cal.rails.vdd, cal.rails.vss)
    y = data.labels[:TRAIN_IMAGES]
    network_spec = spec()
    coupled = CrossbarNetwork(cal, network_spec, evaluator="coupled", init_mean=-1.0)
    static = CrossbarNetwork(cal, network_spec, init_mean=-1.0)
    dense_loads = CrossbarNetwork(cal, network_spec, evaluator="coupled", init_mean=-1.0)
    dense_loads._coupled.sparse_loads = False  # every load a dense Load: the baseline
    loss = Loss("bce", link="logit")
    rng = np.random.default_rng(args.seed)
    params = coupled.init_params(rng)
    optimizer = Adam(lr=0.05)
    order = rng.permutation(len(x))
    for index in range(train_batches):
        chunk = order[index * args.batch : (index + 1) * args.batch]
        _, grads = coupled.loss_and_grad(params, x[chunk], y[chunk], loss)
        optimizer.step(params, grads)  # in place
    timed = x[order][-timed_batches * args.batch :], y[order][-timed_batches * args.batch :]
    models = {"static": static, "coupled": coupled, "coupled_dense_loads": dense_loads}
    seconds = step_seconds(models, params, *timed, loss, args.batch, timed_batches)
    steps = TRAIN_IMAGES / args.batch
    sigma = [theta_to_conductance(t, coupled.window) for t in params]
    errors = spice_errors(cal, network_spec, sigma, x[order[:images]])
    print(f"MNIST 14x14 conv4-pool-conv8-pool-dense10, batch {args.batch}, after "
          f"{train_batches} coupled training steps")
    for name in models:
        print(f"  {name:19s} step {seconds[name] * 1e3:8.1f} ms  epoch ≈ "
              f"{seconds[name] * steps:7.1f} s")
    ratio = seconds["coupled"] / seconds["static"]
    dense_ratio = seconds["coupled_dense_loads"] / seconds["static"]
    speedup = seconds["coupled_dense_loads"] / seconds["coupled"]
    print(f"  coupled / static epoch time: {ratio:.1f}x (dense loads {dense_ratio:.1f}x; "
          f"sparse loads {speedup:.2f}x faster)")
    print(f"  ngspice: {errors['images']} images in {errors['spice_s']:.1f} s")
    for mode in ("static", "coupled"):
        for index, layer in enumerate(errors[mode]):  # type: ignore[arg-type]
            print(f"  {mode:8s} layer {index}: rms {layer['rms_v'] * 1e6:9.2f} µV   max "
                  f"{layer['max_v'] * 1e6:9.2f} µV")
    print(json.dumps({"step_s": seconds, "epoch_s": {k: v * steps for k, v in seconds.items()},
                      "epoch_ratio_coupled_to_static": ratio,
                      "epoch_ratio_dense_loads_to_static": dense_ratio,
                      "sparse_load_speedup": speedup, "spice": errors,
                      "train_batches": train_batches, "batch": args.batch}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
