"""Benchmark: the coupled evaluator of a CNN against the static one, and against ngspice.

MNIST 14×14 (the benchmark split's 8,000 training images), ``conv 4 k3 → pool 2 → conv 8 k3 →
pool 2 → dense 10`` (``--wide``: conv 8 → conv 16) on the built-in card calibrated in SPICE.
Trains the network a few batches with the coupled evaluator (so its neurons are where training
puts them), then:

- times one training step (``loss_and_grad`` on a batch) of each evaluator in the same
  process, interleaved, median over batches (wall-clock and CPU time), and the epoch time that
  implies: static, coupled (the elimination solver, the default) and, unless
  ``--no-baseline``, coupled with the layer-Newton solver (block-Jacobi warm start, then Newton
  on the outputs: the previous solver, the baseline);
- simulates a handful of training images in ngspice through one flat batch deck
  (``.options reltol=1e-6 vntol=1e-9``) and reports each evaluator's RMS and max error per
  layer, model against SPICE node voltages, on the same conductances.

Usage: ``python scripts/bench_conv_coupled.py --mnist DIR [--quick] [--wide]`` (``DIR`` holds
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


def spec(wide: bool = False):
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    first, second = (8, 16) if wide else (4, 8)
    return NetworkSpec((1, 14, 14), (Conv2d(first, 3), AvgPool2d(2), Conv2d(second, 3),
                                     AvgPool2d(2), Flatten(), Dense(10)))


def step_seconds(models, params, x, y, loss, batch, batches):
    """Median wall-clock and CPU time (s) of one ``loss_and_grad`` on ``batch`` images, per
    model (the models take turns on each batch, so load on the machine hits them alike)."""
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for index in range(batches):
        chunk = slice(index * batch, (index + 1) * batch)
        for name, model in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            model.loss_and_grad(params, x[chunk], y[chunk], loss)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return ({name: statistics.median(t) for name, t in wall.items()},
            {name: statistics.median(t) for name, t in cpu.items()})


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
    parser.add_argument("--wide", action="store_true", help="conv 8 → conv 16 instead of 4 → 8")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the layer-Newton solver (slow: about 1 s per step)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mnist is None:
        parser.error("give --mnist DIR or set MEMSPICE_MNIST_DIR")

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import benchmark_split, features_to_voltages, load_mnist
    from memspice.tech import builtin
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.losses import Loss
    from memspice.train.mapping import theta_to_conductance
    from memspice.train.optim import Adam

    train_batches, timed_batches, images = (3, 3, 3) if args.quick else (20, 9, 10)
    cal = calibrate(builtin(), InverterSizing())
    train_set, _ = benchmark_split(load_mnist(args.mnist, "t10k"))
    x = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    y = train_set.labels
    network_spec = spec(args.wide)
    coupled = CrossbarNetwork(cal, network_spec, evaluator="coupled", init_mean=-1.0)
    models = {"static": CrossbarNetwork(cal, network_spec, init_mean=-1.0), "coupled": coupled}
    if not args.no_baseline:
        newton = CrossbarNetwork(cal, network_spec, evaluator="coupled", init_mean=-1.0)
        newton._coupled.solver = "newton"  # the previous solver: the baseline
        models["coupled_newton"] = newton
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
    wall, cpu = step_seconds(models, params, *timed, loss, args.batch, timed_batches)
    steps = len(x) / args.batch
    sigma = [theta_to_conductance(t, coupled.window) for t in params]
    errors = spice_errors(cal, network_spec, sigma, x[order[:images]])
    first, second = network_spec.plans[0].channels, network_spec.plans[1].channels
    print(f"MNIST 14x14 conv{first}-pool-conv{second}-pool-dense10, batch {args.batch}, after "
          f"{train_batches} coupled training steps; median of {timed_batches} steps")
    for name in models:
        print(f"  {name:15s} step {wall[name] * 1e3:8.1f} ms (CPU {cpu[name] * 1e3:8.1f} ms)  "
              f"epoch ≈ {wall[name] * steps:7.1f} s")
    ratio = wall["coupled"] / wall["static"]
    cpu_ratio = cpu["coupled"] / cpu["static"]
    print(f"  coupled / static step time: {ratio:.1f}x (CPU {cpu_ratio:.1f}x)")
    result = {"step_ms": {k: v * 1e3 for k, v in wall.items()},
              "step_cpu_ms": {k: v * 1e3 for k, v in cpu.items()},
              "epoch_s": {k: v * steps for k, v in wall.items()},
              "epoch_ratio_coupled_to_static": ratio, "cpu_ratio_coupled_to_static": cpu_ratio}
    if "coupled_newton" in models:
        old_ratio = wall["coupled_newton"] / wall["static"]
        speedup = wall["coupled_newton"] / wall["coupled"]
        cpu_speedup = cpu["coupled_newton"] / cpu["coupled"]
        print(f"  layer-Newton solver / static: {old_ratio:.1f}x; elimination is {speedup:.1f}x "
              f"faster (CPU {cpu_speedup:.1f}x)")
        result.update(epoch_ratio_newton_to_static=old_ratio, speedup_over_newton=speedup,
                      cpu_speedup_over_newton=cpu_speedup)
    print(f"  ngspice: {errors['images']} images in {errors['spice_s']:.1f} s")
    for mode in ("static", "coupled"):
        for index, layer in enumerate(errors[mode]):  # type: ignore[arg-type]
            print(f"  {mode:8s} layer {index}: rms {layer['rms_v'] * 1e6:9.2f} µV   max "
                  f"{layer['max_v'] * 1e6:9.2f} µV")
    fallbacks = coupled._coupled.fallbacks
    if fallbacks:
        print(f"  the elimination solver failed on {fallbacks} layer solves (the layer Newton "
              f"solved them)")
    result.update(spice=errors, train_batches=train_batches, timed_batches=timed_batches,
                  elimination_fallbacks=fallbacks,
                  batch=args.batch, network=f"conv{first}-conv{second}",
                  load_average=os.getloadavg()[0])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
