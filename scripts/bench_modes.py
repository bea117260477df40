"""Calibration-mode benchmark: how well does each mode predict its circuit, at what cost?

For digits 64-32-10 on the built-in card, and MNIST 196-100-10 when the MNIST test set is given
(``--mnist-dir DIR`` or the ``MEMSPICE_MNIST_DIR`` environment variable: the IDX files
``t10k-images-idx3-ubyte[.gz]``/``t10k-labels-idx1-ubyte[.gz]`` from
http://yann.lecun.com/exdb/mnist/; first 8000 images for training, last 2000 for testing):
calibrate from SPICE, train one network per mode (``static``, ``load-aware``, ``coupled``),
simulate every trained network in ngspice on the test set, and evaluate each mode's model on
the SAME conductances. Reports per (network, mode): RMS and max error of the output voltages
(``outp`` of the last layer) and of every neuron output, classification agreement model vs
SPICE, SPICE accuracy; the static/coupled error ratio; the training epoch time of each mode
against ``static`` trained in the same process (median over epochs, so the coupled model's
first epoch, which has no warm starts yet, counts as one sample; the first-epoch ratio is
reported too); and the coupled error against the current-table step (``--grid``), which
separates interpolation error from the rest. The coupled solver's compiled kernels are loaded
before any timing and their one-off cost reported as ``coupled_kernel.first_use_s``.

Ends with one line of JSON holding every figure (``<network>.epoch_ratio_to_static.coupled``).
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

MODES = ("static", "load-aware", "coupled")
MNIST_ENV = "MEMSPICE_MNIST_DIR"
#: Load grid (Ω) and polynomial degree of the load-aware fit. Hidden outputs of these networks
#: see ~2–30 µS, beyond the default grid's 10 µS; the default cubic in ln G turns c4 negative
#: when the grid reaches 40 µS, so 0.5–20 µS with a quartic (heavier loads are clamped).
LOADS_OHM = tuple(float(v) for v in np.geomspace(5e4, 2e6, 11))
LOAD_DEGREE = 4


def spice_voltages(tech, sizing, conductances, x, batch=250):
    """``[(outn, outp) per layer]`` (V) from ngspice, ``batch`` samples per deck, decks in parallel."""
    from memspice.circuit.builders import indexed_input_sources, network_deck, network_output_saves
    from memspice.circuit.deck import Dc, Sweep
    from memspice.circuit.wiring import output_node
    from memspice.sim import simulate_many

    decks = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        decks.append(network_deck(tech, sizing, conductances, indexed_input_sources(chunk),
                                  [Dc(Sweep("idx", 0, len(chunk) - 1, 1))], network_output_saves(conductances)))
    results = simulate_many(decks)
    layers = []
    for index, g in enumerate(conductances):
        parts = {"n": [], "p": []}
        for result in results:
            if isinstance(result, Exception):
                raise result
            plot = result.plots[0]
            for pol in ("n", "p"):
                parts[pol].append(np.stack([np.asarray(plot[output_node(index, j, pol)]) for j in range(g.shape[0])], 1))
        layers.append((np.concatenate(parts["n"]), np.concatenate(parts["p"])))
    return layers


def compare(cal, mode, conductances, x, spice):
    """Errors (V) of one mode's model against SPICE voltages on the same conductances."""
    from memspice.train.forward import make_evaluator

    evaluator = make_evaluator(mode, cal)
    t0 = time.perf_counter()
    layers = evaluator.forward(conductances, x).layers
    seconds = time.perf_counter() - t0
    out_err = layers[-1].outp - spice[-1][1]
    every = np.concatenate([np.ravel(s.outn - sn) for s, (sn, _) in zip(layers, spice)]
                           + [np.ravel(s.outp - sp) for s, (_, sp) in zip(layers, spice)])
    return {
        "output_rms_v": float(np.sqrt(np.mean(out_err ** 2))),
        "output_max_v": float(np.max(np.abs(out_err))),
        "all_rms_v": float(np.sqrt(np.mean(every ** 2))),
        "all_max_v": float(np.max(np.abs(every))),
        "agreement": float(np.mean(layers[-1].outp.argmax(1) == spice[-1][1].argmax(1))),
        "forward_s": seconds,
    }


def epoch_times(cal, topology, x, labels, epochs, seed, batch_size=16, lr=0.01):
    """Training-epoch seconds of ``static`` and ``coupled``, trained side by side.

    Each mode trains its own network as the trainer does (Adam, BCE, a seeded shuffle per
    epoch, then the end-of-epoch evaluation of the whole training set, which also refreshes the
    coupled model's warm starts), but the two alternate epoch by epoch, so a change of the
    machine's load hits both alike. Returns per mode the wall-clock and CPU seconds of every
    epoch's steps (what the trainer's ``seconds`` column holds) and the wall-clock seconds of
    its evaluation.
    """
    from memspice.train.losses import Loss
    from memspice.train.model import PhaxNetwork
    from memspice.train.optim import make_optimizer

    loss = Loss("bce")
    runs = {}
    for mode in ("static", "coupled"):
        model = PhaxNetwork(cal, topology, evaluator=mode, init_mean=-3.0)
        runs[mode] = (model, model.init_params(np.random.default_rng([seed, 2])), make_optimizer("adam", lr))
    times = {mode: {"wall_s": [], "cpu_s": [], "evaluation_s": []} for mode in runs}
    for epoch in range(epochs):
        order = np.random.default_rng([seed, 3, epoch]).permutation(len(x))
        for mode, (model, params, optimizer) in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                _, grads = model.loss_and_grad(params, x[batch], labels[batch], loss)
                optimizer.step(params, grads)
            times[mode]["wall_s"].append(time.perf_counter() - wall)
            times[mode]["cpu_s"].append(time.process_time() - cpu)
            wall = time.perf_counter()
            model.predict(params, x)
            times[mode]["evaluation_s"].append(time.perf_counter() - wall)
    return times


def warm_up_kernels(cal) -> dict:
    """Load the coupled solver's compiled kernels (numba) once, outside the timed epochs.

    A process's first coupled solve imports numba and compiles its kernels, or loads them from
    numba's disk cache; this one-off cost is reported on its own (``first_use_s``) instead of
    inflating the first training epoch. Returns the backend (``numba X.Y`` or ``numpy``) too.
    """
    from memspice.train import coupled_kernel
    from memspice.train.coupled import CoupledEvaluator

    t0 = time.perf_counter()
    backend = "numpy"
    if coupled_kernel.compiled() is not None:
        import numba

        backend = f"numba {numba.__version__}"
        rng = np.random.default_rng(0)
        g = [np.full((3, 6), 1e-6), np.full((2, 8), 1e-6)]
        evaluator = CoupledEvaluator(cal)
        trace = evaluator.forward(g, rng.uniform(-0.1, 0.1, (2, 2)))
        evaluator.backward(trace, np.ones((2, 2)))
    return {"backend": backend, "first_use_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 1 min)")
    parser.add_argument("--mnist", action="store_true",
                        help=f"also MNIST 196-100-10 (from --mnist-dir, ${MNIST_ENV} or the cache `memspice data mnist` fills)")
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help=f"directory of the MNIST test-set IDX files (default: ${MNIST_ENV}); "
                             "giving it adds MNIST 196-100-10")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per mode (default: 4 quick, 20 digits, 8 MNIST)")
    parser.add_argument("--grid", type=float, nargs="*", default=None,
                        help="current-sweep steps (V) for the grid study (table step is twice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-only", action="store_true",
                        help="only the epoch-time comparison (no SPICE, no accuracy tables)")
    args = parser.parse_args(argv)
    mnist_dir = args.mnist_dir or (Path(os.environ[MNIST_ENV]) if os.environ.get(MNIST_ENV) else None)
    if args.mnist and mnist_dir is None:
        from memspice.data_cache import resolve_mnist_dir

        mnist_dir = resolve_mnist_dir()  # the cache `memspice data mnist` fills, or a clear error
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import benchmark_split, features_to_voltages, load_digits, load_mnist, train_test_split
    from memspice.tech import builtin
    from memspice.train.model import PhaxNetwork
    from memspice.train.trainer import TrainConfig, train

    tech, sizing = builtin(), InverterSizing()
    t0 = time.perf_counter()
    cal = calibrate(tech, sizing, loads_ohm=LOADS_OHM, degree=LOAD_DEGREE)
    print(f"calibration: {time.perf_counter() - t0:.1f} s; current table {len(cal.inverter_current.v_in)} points "
          f"per axis, interpolation rms {cal.inverter_current.interp_rms_a:.3g} A, "
          f"max {cal.inverter_current.interp_max_a:.3g} A", flush=True)

    tasks = [("digits", (64, 32, 10))]
    if mnist_dir is not None:
        tasks.append(("mnist", (196, 100, 10)))
    summary: dict = {"calibration": {"table_points": len(cal.inverter_current.v_in),
                                     "interp_rms_a": cal.inverter_current.interp_rms_a,
                                     "interp_max_a": cal.inverter_current.interp_max_a}}
    summary["coupled_kernel"] = warm_up_kernels(cal)
    print(f"coupled solver: {summary['coupled_kernel']['backend']}, first use "
          f"{summary['coupled_kernel']['first_use_s']:.2f} s (import, compile or load from cache)", flush=True)
    for task, topology in tasks:
        data = load_digits() if task == "digits" else load_mnist(mnist_dir)
        train_set, test_set = benchmark_split(data, 0.2, args.seed)
        x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
        x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
        y_train, y_test = train_set.labels, test_set.labels
        if args.quick:  # MNIST's SPICE runs cost ~20× digits' per sample
            x_train, y_train = x_train[:600], y_train[:600]
            n_test = 150 if task == "digits" else 20
            x_test, y_test = x_test[:n_test], y_test[:n_test]
        epochs = args.epochs or (4 if args.quick else (8 if task == "mnist" else 20))
        train_modes = ("static", "coupled") if args.quick else MODES
        block: dict = {"topology": list(topology), "epochs": epochs, "n_test": int(len(x_test)), "networks": {}}
        epoch_s = {}
        for trained_in in ([] if args.timing_only else train_modes):
            model = PhaxNetwork(cal, topology, evaluator=trained_in, init_mean=-3.0)
            config = TrainConfig(epochs=epochs, batch_size=16, lr=0.01, lr_decay=0.93, loss="bce",
                                 seed=args.seed, val_fraction=0.0, progress=False)
            result = train(model, x_train, y_train, config)
            epoch_s[trained_in] = float(np.median(result.history["seconds"]))
            conductances, _ = model.conductances(result.params)
            t1 = time.perf_counter()
            spice = spice_voltages(tech, sizing, conductances, x_test)
            spice_s = time.perf_counter() - t1
            spice_acc = float(np.mean(spice[-1][1].argmax(1) == y_test))
            rows = {mode: compare(cal, mode, conductances, x_test, spice) for mode in MODES}
            ratio = rows["static"]["output_rms_v"] / rows["coupled"]["output_rms_v"]
            block["networks"][trained_in] = {"spice_accuracy": spice_acc, "spice_s": spice_s,
                                             "static_over_coupled_rms": ratio, "modes": rows}
            print(f"\n[{task} {'-'.join(map(str, topology))}] trained {trained_in}: SPICE accuracy "
                  f"{spice_acc:.4f} ({len(x_test)} samples, SPICE {spice_s:.1f} s)")
            print(f"  {'model':<11}{'out rms mV':>11}{'out max mV':>11}{'all rms mV':>11}"
                  f"{'all max mV':>11}{'agree %':>9}")
            for mode, row in rows.items():
                print(f"  {mode:<11}{1e3 * row['output_rms_v']:>11.4f}{1e3 * row['output_max_v']:>11.3f}"
                      f"{1e3 * row['all_rms_v']:>11.4f}{1e3 * row['all_max_v']:>11.3f}"
                      f"{100 * row['agreement']:>9.2f}")
            print(f"  static/coupled output RMS ratio: {ratio:.0f}x; "
                  f"static/load-aware: {rows['static']['output_rms_v'] / rows['load-aware']['output_rms_v']:.1f}x")
        times = epoch_times(cal, topology, x_train, y_train, epochs, args.seed)
        median = {m: {k: float(np.median(v)) for k, v in t.items()} for m, t in times.items()}
        block["epoch_seconds"] = {m: v["wall_s"] for m, v in median.items()}
        block["epoch_cpu_seconds"] = {m: v["cpu_s"] for m, v in median.items()}
        block["epoch_seconds_each"] = times
        block["epoch_ratio_to_static"] = {m: v["wall_s"] / median["static"]["wall_s"] for m, v in median.items()}
        block["epoch_cpu_ratio_to_static"] = {m: v["cpu_s"] / median["static"]["cpu_s"] for m, v in median.items()}
        block["first_epoch_ratio_to_static"] = {
            m: t["wall_s"][0] / times["static"]["wall_s"][0] for m, t in times.items()}
        block["evaluation_ratio_to_static"] = {
            m: float(np.median(t["evaluation_s"]) / np.median(times["static"]["evaluation_s"])) for m, t in times.items()}
        if epoch_s:
            block["trainer_epoch_seconds"] = epoch_s
        block["load_average"] = os.getloadavg()[0]
        print(f"\n[{task} {'-'.join(map(str, topology))}] training epoch ({len(x_train)} samples, "
              f"median of {epochs}, modes alternating): "
              + ", ".join(f"{m} {v['wall_s']:.3f} s" for m, v in median.items())
              + f"; coupled/static {block['epoch_ratio_to_static']['coupled']:.2f}x wall, "
              + f"{block['epoch_cpu_ratio_to_static']['coupled']:.2f}x CPU, "
              + f"first epoch {block['first_epoch_ratio_to_static']['coupled']:.2f}x; end-of-epoch "
              + f"evaluation {block['evaluation_ratio_to_static']['coupled']:.2f}x; "
              + f"load average {block['load_average']:.1f}")
        summary[task] = block

    steps = args.grid if args.grid is not None else ([] if args.quick or args.timing_only else [0.00625, 0.003125])
    if steps:
        # Same digits network (trained static), coupled model from finer current tables.
        task_block = summary["digits"]
        first = next(iter(task_block["networks"]))
        base = task_block["networks"][first]["modes"]["coupled"]
        grid_rows = [{"table_step_v": 2 * 0.0125, "output_rms_v": base["output_rms_v"],
                      "output_max_v": base["output_max_v"], "all_rms_v": base["all_rms_v"],
                      "interp_max_a": cal.inverter_current.interp_max_a}]
        train_set, test_set = train_test_split(load_digits(), 0.2, args.seed)
        x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
        x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
        model = PhaxNetwork(cal, (64, 32, 10), evaluator=first, init_mean=-3.0)
        config = TrainConfig(epochs=task_block["epochs"], batch_size=16, lr=0.01, lr_decay=0.93, loss="bce",
                             seed=args.seed, val_fraction=0.0, progress=False)
        conductances, _ = model.conductances(train(model, x_train, train_set.labels, config).params)
        spice = spice_voltages(tech, sizing, conductances, x_test)
        for step in steps:
            fine = calibrate(tech, sizing, loads_ohm=LOADS_OHM, degree=LOAD_DEGREE, current_step_v=step)
            row = compare(fine, "coupled", conductances, x_test, spice)
            grid_rows.append({"table_step_v": 2 * step, "output_rms_v": row["output_rms_v"],
                              "output_max_v": row["output_max_v"], "all_rms_v": row["all_rms_v"],
                              "interp_max_a": fine.inverter_current.interp_max_a})
        print("\ncoupled error vs current-table step (digits network trained "
              f"{first}):\n  {'step mV':>8}{'out rms mV':>11}{'out max mV':>11}{'all rms mV':>11}{'interp max nA':>14}")
        for row in grid_rows:
            print(f"  {1e3 * row['table_step_v']:>8.2f}{1e3 * row['output_rms_v']:>11.4f}"
                  f"{1e3 * row['output_max_v']:>11.3f}{1e3 * row['all_rms_v']:>11.4f}{1e9 * row['interp_max_a']:>14.3f}")
        summary["grid_study"] = grid_rows
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
