"""Benchmark: structured pruning, CSrram clusters and stuck-at faults, measured in SPICE.

On one network description (``NetworkSpec.dense``) and one calibration of the built-in card made
in the same run, every network is trained in coupled mode with the same recipe (Adam, batch 16,
BCE on the output logits, learning rate ×0.97 per epoch, 10 % of the training images held out
for every choice: the best epoch) and simulated on the same test images in ngspice (through
``validate_network``: one resistor per present device):

- ``prune`` (the MLP): ``dense``, the unpruned baseline; ``csrram``, block-diagonal clusters in
  the first layer, fixed before training, at each density of ``--densities`` (25 % is CSrram's
  setting; the sweep goes down to where accuracy breaks); ``admm``, ADMM structured pruning from
  the dense network (``--admm-targets``, one target per layer, :mod:`memspice.prune.targets`),
  masked retraining, optionally on ``--levels`` levels;
- ``faults`` (``--fault-rates``): the dense network with a seeded stuck-at map, fault-oblivious
  and retrained against the map (fault-aware), in SPICE with the same map
  (``scripts/bench_faults.py``'s recipe, on the dense validation path);
- ``cnn``: ``scripts/bench_cnn.py``'s CNN (``conv 4 k3 → pool 2 → conv 8 k3 → pool 2 → dense
  10``) trained with its recipe's load-aware stage (θ mean −3, 8 epochs; ``--cnn-tune-images``
  adds a coupled epoch), and its ADMM prunings (``--cnn-targets``: ADMM rounds and masked
  retraining with the load-aware evaluator on the targets' levels, straight-through, a device
  budget shared by the layers targeted ``budget``; the same optional coupled epoch).
  ``--cnn-preset lenet`` puts a LeNet-like CNN there instead (``conv 4 k3 stride 2 → conv 8 k3
  → dense 32 → dense 10``, 93 % of its weights in the dense layers, as LeNet-5's), trained
  load-aware then 4 coupled epochs, and pruned with coupled ADMM rounds and retraining under a
  weight budget (``@…W17.7``: θ counted once, however many positions build them).

Figures per network: devices (every memristor built: a conv kernel counts once per output
position, each position's column holding its own copy), density and compression against the
dense network, crossbar area saved, SPICE and model accuracy, agreement, static power of the
rails and the input drivers, and the energy of one inference: the transient energy of the rails
and the input drivers over one 1 µs period, mean over the first ``--transient-samples`` test
images. ``--quick`` (< 1 min): digits, 64-16-10 and a one-conv CNN on 8×8 images, 400 training /
100 test images, short training. Full: MNIST 14×14, the first 8,000 images of the 10k set for
training and the last 2,000 for testing (``--mnist-dir`` or ``$MEMSPICE_MNIST_DIR``). Networks
and figures are kept in ``--out``; a re-run reuses them.

Ends with one line of JSON: ``{"dataset", "topology", "dense": {...}, "networks": [{"network",
"method", "density", "compression", "devices", "area_saved", "spice_accuracy",
"dense_spice_accuracy", "static_power_w", "dense_static_power_w", "energy_per_inference_j",
...}], "faults": [{"rate", "oblivious", "aware", "fault_free"}], "cnn": [rows like
"networks"]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cnn  # noqa: E402  (the CNN's topology and training recipe)
import bench_faults  # noqa: E402  (the same data split, recipe and fault-rescue helpers)
from bench_faults import load_split, train_config  # noqa: E402

DENSITIES = (0.25, 0.125, 0.0625, 0.03125)
ADMM_TARGETS = "tile:0.05:2x1,none@8"
QUICK_ADMM_TARGETS = "tile:0.25:2x1,none"
FAULT_RATES = (0.05, 0.10, 0.20)
INIT_THETA_MEAN = -1.5
ENERGY_NOTE = ("energy per inference = transient energy of the rails and the input drivers over one "
               "1 µs inference period, mean over the first transient test images")


def cached(directory: Path, make):
    """The network saved in ``directory`` (with its record), else ``make()`` and save it."""
    from memspice.prune.flow import Pruned
    from memspice.train.conv_io import load_layered_network, save_layered_network

    record_path = directory / "prune_record.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        kept = record.pop("kept_neurons", None)
        return Pruned(load_layered_network(directory), None if kept is None else
                      [np.array(k) for k in kept], record), 0.0
    t0 = time.perf_counter()
    pruned = make()
    seconds = time.perf_counter() - t0
    save_layered_network(pruned.network, directory)
    record = dict(pruned.record, train_s=seconds,
                  kept_neurons=None if pruned.kept_neurons is None else
                  [k.tolist() for k in pruned.kept_neurons])
    record_path.write_text(json.dumps(record, default=float))
    return pruned, seconds


def measured(directory: Path, pruned, dense_spec, tech, sizing, x, y, workers: int,
             batch: int, tile=None, ngspice=None, transient: int = 20) -> dict:
    """Hardware counts and SPICE figures (``validate_network``; cached in
    ``directory/figures.json``): ``transient`` test images also run in transient mode for the
    energy per inference."""
    from memspice.prune.measure import hardware_counts, spice_measure

    path = directory / "figures.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    counts = hardware_counts(pruned.network, dense_spec, pruned.kept_neurons, tile)
    spice = spice_measure(pruned.network, tech, sizing, x, y, batch, workers,
                          transient_samples=transient, ngspice=ngspice)
    figures = {**counts.as_dict(), **spice.as_dict(), "spice_s": time.perf_counter() - t0,
               "topology": list(pruned.network.spec.topology or ())}
    path.write_text(json.dumps(figures, default=float))
    return figures


def _row(network: str, method: str, figures: dict, base: dict, record: dict) -> dict:
    """One benchmark row: the network's figures against the dense ones (``base``), printed."""
    energy, dense_energy = figures.get("energy_per_inference_j"), base.get("energy_per_inference_j")
    r = {"network": network, "method": method, **figures,
         "dense_spice_accuracy": base["spice_accuracy"],
         "dense_static_power_w": base["static_power_w"],
         "dense_energy_per_inference_j": dense_energy,
         "power_ratio": base["static_power_w"] / figures["static_power_w"],
         "energy_ratio": dense_energy / energy if energy and dense_energy else None,
         "accuracy_change_points": 100 * (figures["spice_accuracy"] - base["spice_accuracy"]),
         "val_accuracy": record.get("val_accuracy")}
    energy_text = "" if energy is None else f", energy/inference {1e12 * energy:.1f} pJ"
    weights = ("" if figures.get("weights") is None else
               f", {figures['weights']:,} θ ({figures['weight_compression']:.2f}x in weights)")
    print(f"  {network:<26} {figures['devices']:>7,} devices ({figures['compression']:5.2f}x, "
          f"area saved {100 * figures['area_saved']:5.1f} %{weights}): SPICE {100 * figures['spice_accuracy']:.2f} % "
          f"({r['accuracy_change_points']:+.2f} points), model {100 * figures['model_accuracy']:.2f} %, "
          f"agreement {100 * figures['agreement']:.2f} %, static power {1e6 * figures['static_power_w']:.1f} µW "
          f"({r['power_ratio']:.2f}x lower; rails {1e6 * figures['rail_power_w']:.1f}, inputs "
          f"{1e6 * figures['input_power_w']:.1f} µW){energy_text}", flush=True)
    return r


def faults_section(out: Path, cal, topology, x_train, y_train, x_test, y_test, rates, epochs,
                   aware_epochs, lr, seed, workers, batch, tech) -> list[dict]:
    """Fault-free, fault-oblivious and fault-aware SPICE accuracies per rate, with
    ``scripts/bench_faults.py``'s functions (dense networks, dense validation)."""
    from memspice.train.fault_map import FAULT_MAP_NAME, save_fault_map, seeded_fault_map
    from memspice.train.model import PhaxNetwork

    config = bench_faults.train_config(epochs, lr, seed)
    aware_config = bench_faults.train_config(aware_epochs, lr, seed)
    free, _ = bench_faults.trained(out / "fault_free", lambda: PhaxNetwork(
        cal, topology, evaluator="coupled", init_mean=INIT_THETA_MEAN), x_train, y_train, config)
    free_params = [np.clip(t, -40.0, 40.0) for t in free.thetas()]
    baseline = bench_faults.spice(free, tech, x_test, y_test, out / "fault_free" / "validate",
                                  workers, batch)
    rows = []
    for k, rate in enumerate(rates):
        tag = out / f"rate_{int(round(100 * rate)):02d}"
        faults = seeded_fault_map(topology, rate, seed + k)
        save_fault_map(faults, tag / FAULT_MAP_NAME, topology)
        oblivious = bench_faults.spice(dataclasses.replace(free, faults=faults), tech, x_test,
                                       y_test, tag / "oblivious_validate", workers, batch)
        aware_net, _ = bench_faults.trained(tag / "aware", lambda f=faults: PhaxNetwork(
            cal, topology, faults=f, evaluator="coupled", init_mean=INIT_THETA_MEAN),
            x_train, y_train, aware_config, initial=free_params)
        aware = bench_faults.spice(aware_net, tech, x_test, y_test, tag / "aware_validate",
                                   workers, batch)
        row = {"rate": rate, "oblivious": oblivious["spice"], "aware": aware["spice"],
               "fault_free": baseline["spice"], "stuck_devices": aware["stuck"],
               "aware_minus_fault_free_points": 100 * (aware["spice"] - baseline["spice"]),
               "aware_agreement": aware["agreement"], "fault_seed": seed + k}
        rows.append(row)
        print(f"  faults {100 * rate:4.0f} % ({row['stuck_devices']} devices): SPICE fault-free "
              f"{100 * baseline['spice']:.2f} %, oblivious {100 * oblivious['spice']:.2f} %, aware "
              f"{100 * aware['spice']:.2f} % ({row['aware_minus_fault_free_points']:+.2f} points)",
              flush=True)
    return rows



# ---- the CNN -------------------------------------------------------------------------------

#: ADMM targets of the CNN, one per crossbar layer (conv 1, conv 2, dense): 2×1 tiles of the
#: unrolled crossbar of a conv position (the ip/in pair of one kernel tap, or the bias pair,
#: of one output channel; shared by every position) under one device budget for the three
#: layers (a conv-1 tile costs 288 devices, a conv-2 tile 128, a dense one 8), 2 epochs of
#: masked retraining, 32 levels: 1.5×, 3× and the 17.7× of the target.
_BUDGET = "tile:budget:2x1,tile:budget:2x1,tile:budget:2x1@2L32B"
CNN_ADMM_TARGETS = f"{_BUDGET}1.5;{_BUDGET}3;{_BUDGET}17.7"
QUICK_CNN_ADMM_TARGETS = "tile:budget:2x1,tile:budget:2x1@L32B2"

#: ADMM targets of the LeNet-like CNN (``--cnn-preset lenet``: conv, conv, dense 32, dense 10):
#: 2×1 tiles (single weights) of all four layers under one weight budget of 17.7× (θ counted
#: once, Yuan et al.'s measure; the conv layers' 672 θ alone exceed 17.7× of the 9,588, so they
#: are in the budget too), 32 levels, 3 rounds (``LENET_ADMM_ROUNDS``). Quick: conv, dense 32,
#: dense 10 on digits.
LENET_ADMM_TARGETS = ("tile:budget:2x1,tile:budget:2x1,tile:budget:2x1,tile:budget:2x1"
                      "@2L32W17.7")
LENET_ADMM_ROUNDS = 3
QUICK_LENET_ADMM_TARGETS = "none,tile:budget:2x1,tile:budget:2x1@L32W4"


def default_cnn_targets(args) -> str:
    """``--cnn-targets``, else the preset's default (quick or full)."""
    if args.cnn_targets:
        return args.cnn_targets
    if args.cnn_preset == "lenet":
        return QUICK_LENET_ADMM_TARGETS if args.quick else LENET_ADMM_TARGETS
    return QUICK_CNN_ADMM_TARGETS if args.quick else CNN_ADMM_TARGETS


def quick_cnn_spec():
    """The quick CNN on 8×8 digits: conv 4 k3 → pool 2 → flatten → dense 10."""
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    return NetworkSpec((1, 8, 8), (Conv2d(4, 3), AvgPool2d(2), Flatten(), Dense(10)))


def lenet_cnn_spec(quick: bool = False):
    """The LeNet-like CNN (``--cnn-preset lenet``): ``conv 4 k3 stride 2 → conv 8 k3 → flatten →
    dense 32 → dense 10`` on MNIST 14×14, 21,268 devices (on 8×8 digits: ``conv 4 k3 stride 2 →
    flatten → dense 32 → dense 10``). Like LeNet-5, its weights are in its dense layers (93 % of
    its 9,588 θ, LeNet-5's share), and a strided conv instead of a pool keeps the devices in
    check: a pool before a layer folds 4 devices into each of its taps. (A dense 84 hidden layer
    loads each conv-2 output with 84 columns: its coupled model reached 74 % on the validation
    split, against 86.75 % with 32.)"""
    from memspice.network import Conv2d, Dense, Flatten, NetworkSpec

    if quick:
        return NetworkSpec((1, 8, 8), (Conv2d(4, 3, stride=2), Flatten(), Dense(32), Dense(10)))
    return NetworkSpec((1, 14, 14), (Conv2d(4, 3, stride=2), Conv2d(8, 3), Flatten(), Dense(32),
                                     Dense(10)))


#: The CNNs of ``--cnn-preset``: ``scripts/bench_cnn.py``'s (``bench``) and the LeNet-like one.
CNN_PRESETS = ("bench", "lenet")


def cnn_spec(preset: str, quick: bool):
    """The network description of a ``--cnn-preset``."""
    if preset == "lenet":
        return lenet_cnn_spec(quick)
    return quick_cnn_spec() if quick else bench_cnn.cnn_spec(bench_cnn.Recipe())


def cnn_recipe(quick: bool, preset: str = "bench"):
    """``scripts/bench_cnn.py``'s recipe (θ mean −3, load-aware pre-training, coupled fine-tuning).

    The LeNet-like CNN transfers from the load-aware pre-training to the coupled model at
    chance (26 % on the validation split: its hidden layer loads every conv-2 output with 32
    columns), so it starts lighter (θ mean −4) and is fine-tuned longer: 4 coupled epochs at
    Adam 0.03 (a coupled epoch of it costs only ~10 load-aware ones)."""
    recipe = bench_cnn.Recipe()._replace(tune_epochs=1)  # a coupled epoch costs ~150 load-aware ones
    if preset == "lenet":
        recipe = recipe._replace(init_mean=-4.0, tune_epochs=4, tune_lr=0.03)
    if quick:
        recipe = recipe._replace(pre_epochs=2, tune_epochs=1, tune_batch=32)
    return recipe


#: Training images of every coupled epoch of the CNN section (the first of the training part,
#: never the validation split; ``--cnn-tune-images``). None: all of them (the recipe's coupled
#: epoch); 0: no coupled stage, the networks stay load-aware (much cheaper, but a load-aware CNN
#: transfers to the circuit far worse than a coupled one: ``docs/cnn-results.md``).
CNN_TUNE_IMAGES = None


def tune_part(n: int, images: int):
    """Indices of the first ``images`` images of the training part (the validation split,
    the trainer's 10 %, left out)."""
    from memspice.train.trainer import split_validation

    return split_validation(n, 0.1, 0)[0][:images]


def _accuracy_on_validation(model, params, x, y) -> float:
    from memspice.train.trainer import split_validation

    val = split_validation(len(x), 0.1, 0)[1]
    return float(np.mean(model.predict(params, x[val]).argmax(axis=1) == y[val]))


def train_cnn_dense(cal, spec, recipe, x, y, tune_images: int | None = None):
    """The dense CNN by ``scripts/bench_cnn.py``'s recipe: ``recipe.pre_epochs`` load-aware
    epochs, then ``recipe.tune_epochs`` coupled ones (on ``tune_images`` images of the training
    part when given, no holdout); the record holds the coupled model's validation accuracy."""
    from memspice.prune.flow import Pruned, trained_network
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.trainer import train

    pre = CrossbarNetwork(cal, spec, evaluator=recipe.pre_evaluator, init_mean=recipe.init_mean)
    first = train(pre, x, y, bench_cnn._config(epochs=recipe.pre_epochs, batch_size=recipe.pre_batch,
                                               lr=recipe.pre_lr))
    if tune_images == 0:
        record = {"method": "dense", "pre_val_accuracy": float(first.history.val_accuracy.max()),
                  "val_accuracy": _accuracy_on_validation(pre, first.params, x, y),
                  "tune_images": 0}
        return Pruned(trained_network(pre, first.params, record), None, record)
    coupled = CrossbarNetwork(cal, spec, evaluator="coupled", init_mean=recipe.init_mean)
    tune_x, tune_y, holdout = x, y, 0.1
    if tune_images:
        part = tune_part(len(x), tune_images)
        tune_x, tune_y, holdout = x[part], y[part], 0.0
    tuned = train(coupled, tune_x, tune_y, bench_cnn._config(
        epochs=recipe.tune_epochs, batch_size=recipe.tune_batch, lr=recipe.tune_lr,
        val_fraction=holdout), initial_params=first.params)
    record = {"method": "dense", "pre_val_accuracy": float(first.history.val_accuracy.max()),
              "val_accuracy": _accuracy_on_validation(coupled, tuned.params, x, y),
              "tune_images": tune_images}
    return Pruned(trained_network(coupled, tuned.params, record), None, record)



#: The CNN's ADMM schedule: rounds of one load-aware epoch, then the masked retraining's epochs.
CNN_ADMM_ROUNDS = 2
CNN_RETRAIN_EPOCHS = 2


def cnn_admm(dense, targets, recipe, x, y, rounds: int, retrain_epochs: int, levels: int,
             rho: float, lr: float, budget: tuple[str, float] | None = None,
             tune_images: int | None = None, coupled: bool = False):
    """ADMM on the dense CNN with its recipe's evaluators: ``rounds`` ADMM rounds of one epoch
    and ``retrain_epochs`` of masked retraining with the load-aware evaluator (batch
    ``recipe.pre_batch``, Adam at ``lr``, cosine), all on ``levels`` levels (straight-through),
    then ``recipe.tune_epochs`` coupled epochs of the masked network (batch
    ``recipe.tune_batch``, Adam at ``recipe.tune_lr``; on ``tune_images`` images of the training
    part when given). ``budget``: ``("devices" | "weights", r)``, the compression of the layers
    targeted ``budget`` (:func:`_admm_runs`). ``coupled``: the rounds and the retraining use the
    coupled evaluator (batch ``recipe.tune_batch``) and no stage follows (the LeNet-like CNN,
    whose load-aware model predicts its coupled one at chance)."""
    from memspice.prune.flow import admm
    from memspice.train.admm import AdmmConfig
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.hardware import HardwareConfig
    from memspice.train.mapping import conductance_to_theta

    cal = dense.network.calibration
    model = CrossbarNetwork(cal, dense.network.spec,
                            evaluator="coupled" if coupled else recipe.pre_evaluator,
                            init_mean=recipe.init_mean)
    finish = not coupled and tune_images != 0
    params = [np.clip(conductance_to_theta(g, model.window), -40.0, 40.0)
              for g in dense.network.conductances]
    config = AdmmConfig(rho=rho, rounds=rounds, epochs_per_round=1, levels=levels,
                        train=bench_cnn._config(
                            epochs=retrain_epochs, lr=lr,
                            batch_size=recipe.tune_batch if coupled else recipe.pre_batch),
                        retrain_epochs=retrain_epochs,
                        finish_evaluator="coupled" if finish else None,
                        finish=bench_cnn._config(epochs=recipe.tune_epochs, batch_size=recipe.tune_batch,
                                                 lr=recipe.tune_lr) if finish else None,
                        finish_samples=(tune_images or None) if finish else None,
                        **_budget_config(budget))
    pruned = admm(model, params, x, y, targets, config)
    pruned.record["val_accuracy"] = _accuracy_on_validation(
        CrossbarNetwork(cal, pruned.network.spec, HardwareConfig(levels=levels),
                        evaluator=pruned.network.evaluator),
        [np.clip(conductance_to_theta(g, model.window), -40.0, 40.0)
         for g in pruned.network.conductances], x, y)
    return pruned


def cnn_section(args, out, cal, tech, x_train, y_train, x_test, y_test, batch) -> list[dict]:
    """The dense CNN (``scripts/bench_cnn.py``'s topology and recipe) and its ADMM prunings
    (``--cnn-targets``), each simulated on the test images: one report row each."""
    spec = cnn_spec(args.cnn_preset, args.quick)
    recipe = cnn_recipe(args.quick, args.cnn_preset)
    tune_images = None if args.quick else args.cnn_tune_images
    dense, _ = cached(out / "dense", lambda: train_cnn_dense(cal, spec, recipe, x_train, y_train,
                                                             tune_images))
    text = default_cnn_targets(args)
    runs = _admm_runs(argparse.Namespace(admm_targets=text, retrain_epochs=args.retrain_epochs,
                                         levels=args.levels), dense.network.spec)
    pruned_runs = []
    for text, targets, tag, retrain, levels, budget, rho in runs:
        pruned, _ = cached(out / tag, lambda t=targets, r=retrain, lv=levels, b=budget, p=rho: cnn_admm(
            dense, t, recipe, x_train, y_train, args.admm_rounds or (
                1 if args.quick else LENET_ADMM_ROUNDS if args.cnn_preset == "lenet" else CNN_ADMM_ROUNDS),
            r or (1 if args.quick else CNN_RETRAIN_EPOCHS), lv, p or args.cnn_rho, args.cnn_lr, b,
            tune_images, coupled=args.cnn_preset == "lenet"))
        pruned_runs.append((text, targets, tag, retrain, levels, pruned))
    if args.no_spice:
        return []
    transient = 2 if args.quick else args.transient_samples
    base = measured(out / "dense", dense, spec, tech, None, x_test, y_test, args.workers, batch,
                    ngspice=args.ngspice, transient=transient)
    rows = [_row("dense", "dense", base, base, dense.record)]
    for text, targets, tag, retrain, levels, pruned in pruned_runs:
        tile = next((t.tile for t in targets if t.tile is not None), None)
        figures = measured(out / tag, pruned, spec, tech, None, x_test, y_test, args.workers,
                           batch, tile, ngspice=args.ngspice, transient=transient)
        rows.append(dict(_row(tag, "admm", figures, base, pruned.record), targets=text,
                         levels=levels, rounds=pruned.record.get("rounds")))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, 64-16-10, < 1 min")
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help="MNIST IDX folder (default: $MEMSPICE_MNIST_DIR, else the memspice data cache)")
    parser.add_argument("--out", type=Path, default=Path("bench_prune_run"),
                        help="networks and figures (default: ./bench_prune_run); a re-run reuses them")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (quick 4, full 10)")
    parser.add_argument("--densities", default=None,
                        help="CSrram first-layer densities (quick 0.25,0.125; full 0.25,0.125,0.0625,0.03125; "
                             "'none': no CSrram network)")
    parser.add_argument("--admm-targets", default=None,
                        help=f"ADMM targets per layer, STRUCTURE:AMOUNT[:RxC]; several networks separated "
                             f"by ';', each optionally @N or @NLk (N retraining epochs, k levels) (default {ADMM_TARGETS}; "
                             f"quick {QUICK_ADMM_TARGETS})")
    parser.add_argument("--levels", type=int, default=0, help="ADMM conductance levels (default 0: continuous)")
    parser.add_argument("--admm-rounds", type=int, default=None, help="ADMM rounds (quick 2, full 4)")
    parser.add_argument("--retrain-epochs", type=int, default=None,
                        help="ADMM masked retraining epochs (quick 2, full 5)")
    parser.add_argument("--rho", type=float, default=0.1, help="initial ADMM ρ (default 0.1)")
    parser.add_argument("--fault-rates", default=",".join(f"{r:g}" for r in FAULT_RATES),
                        help="stuck-at rates (default 0.05,0.1,0.2; 'none' skips the fault section)")
    parser.add_argument("--sections", default="prune,faults,cnn",
                        help="what to run, comma-separated: prune (the MLP: dense, csrram, admm), faults, "
                             "cnn (the CNN: dense and admm) (default prune,faults,cnn)")
    parser.add_argument("--cnn-targets", default=None,
                        help=f"ADMM targets of the CNN's layers (conv, conv, dense), same syntax as "
                             f"--admm-targets (default {CNN_ADMM_TARGETS}; quick {QUICK_CNN_ADMM_TARGETS}; "
                             f"--cnn-preset lenet: {LENET_ADMM_TARGETS}; quick {QUICK_LENET_ADMM_TARGETS})")
    parser.add_argument("--cnn-preset", choices=CNN_PRESETS, default="bench",
                        help="the CNN: bench (scripts/bench_cnn.py's, conv-pool-conv-pool-dense 10) or lenet "
                             "(conv stride 2 - conv - dense 84 - dense 10, its weights in the dense layers) "
                             "(default bench)")
    parser.add_argument("--cnn-rho", type=float, default=0.5, help="initial ADMM ρ of the CNN (default 0.5)")
    parser.add_argument("--cnn-lr", type=float, default=0.01,
                        help="Adam learning rate of the CNN's ADMM rounds and retraining (default 0.01)")
    parser.add_argument("--cnn-tune-images", type=int, default=CNN_TUNE_IMAGES,
                        help="CNN: training images of the coupled epoch after load-aware training, dense and "
                             "pruned (default: all of them; 0: no coupled stage, faster, but load-aware networks "
                             "predict the circuit far worse)")
    parser.add_argument("--transient-samples", type=int, default=20,
                        help="test images also simulated in transient mode for the energy per inference "
                             "(default 20; quick 2)")
    parser.add_argument("--ngspice", default=os.environ.get("MEMSPICE_NGSPICE"),
                        help="ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice)")
    parser.add_argument("--faults-from", type=Path, default=None, metavar="LOG",
                        help="take the fault rows from the last JSON line of an earlier run's output "
                             "(e.g. one with --sections faults) instead of running them")
    parser.add_argument("--no-spice", action="store_true",
                        help="train and prune only (networks cached in --out; a later run simulates them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, training and fault maps")
    parser.add_argument("--workers", type=int, default=2, help="ngspice processes (default 2)")
    args = parser.parse_args(argv)
    if args.cnn_tune_images is not None and args.cnn_tune_images < 0:
        parser.error(f"--cnn-tune-images must be 0 or more, got {args.cnn_tune_images}")
    from memspice.errors import MemspiceError

    try:
        if "cnn" in args.sections:  # refuse bad CNN targets before any training
            _admm_runs(argparse.Namespace(
                admm_targets=default_cnn_targets(args), retrain_epochs=args.retrain_epochs,
                levels=args.levels),
                cnn_spec(args.cnn_preset, args.quick))
        return run(args)
    except MemspiceError as error:
        print(f"memspice: error: {error}", file=sys.stderr)
        return 2


def run(args) -> int:
    """The benchmark of the parsed options ``args``."""
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.datasets import features_to_voltages
    from memspice.network import NetworkSpec
    from memspice.tech import builtin

    if args.admm_targets is None:
        args.admm_targets = QUICK_ADMM_TARGETS if args.quick else ADMM_TARGETS
    wall = time.perf_counter()
    name, train_set, test_set, topology = load_split(args.quick, args.mnist_dir, args.seed)
    tech, sizing = builtin(), InverterSizing()
    cal = calibrate(tech, sizing)
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    y_train, y_test = train_set.labels, test_set.labels
    epochs = args.epochs or (4 if args.quick else 10)
    lr = 0.01 if args.quick else 0.005
    config = train_config(epochs, lr, args.seed)
    spec = NetworkSpec.dense(topology)
    label = f"{name}-{'-'.join(map(str, topology))}"
    out = args.out / label
    batch = 500 if len(x_test) > 500 else max(2, -(-len(x_test) // args.workers))
    print(f"{label}: {len(x_train)} training / {len(x_test)} test images, coupled mode, "
          f"{epochs} epochs", flush=True)

    sections = {t.strip() for t in args.sections.split(",")}
    if not sections <= {"prune", "faults", "cnn"} or not sections:
        raise SystemExit(f"--sections takes prune, faults and cnn, got {args.sections!r}")
    rows: list[dict] = []
    if "prune" in sections:
        rows = prune_section(args, out, cal, spec, tech, sizing, x_train, y_train, x_test, y_test,
                             config, batch)
    cnn_rows: list[dict] = []
    if "cnn" in sections:
        cnn_out = args.out / (f"{name}-cnn" + ("" if args.cnn_preset == "bench" else f"-{args.cnn_preset}"))
        print(f"{cnn_out.name}: {len(x_train)} training / {len(x_test)} test images, load-aware "
              "training" + ("" if args.cnn_tune_images == 0 else
                            f", coupled epochs on {args.cnn_tune_images or 'all'} training images"),
              flush=True)
        cnn_rows = cnn_section(args, cnn_out, cal, tech, x_train, y_train, x_test, y_test, batch)
        if cnn_rows:
            from memspice.io import write_many_atomic
            from memspice.prune.report import report_writers

            write_many_atomic(report_writers(cnn_rows, cnn_out, f"Pruning benchmark ({name}-cnn)", [
                f"{len(x_train)} training images (10 % held out), {len(x_test)} test images simulated in ngspice",
                "devices count every memristor built: a conv kernel once per output position",
                ENERGY_NOTE]))
    faults: list[dict] = []
    if args.faults_from is not None:
        faults = json.loads(args.faults_from.read_text().strip().splitlines()[-1])["faults"]
        for r in faults:
            print(f"  faults {100 * r['rate']:4.0f} % ({r['stuck_devices']} devices, from {args.faults_from}): "
                  f"SPICE fault-free {100 * r['fault_free']:.2f} %, oblivious {100 * r['oblivious']:.2f} %, "
                  f"aware {100 * r['aware']:.2f} %", flush=True)
    elif "faults" in sections and args.fault_rates.strip().lower() != "none":
        rates = [float(r) for r in args.fault_rates.split(",")]
        faults = faults_section(out / "faults", cal, topology, x_train, y_train, x_test, y_test,
                                rates, epochs, 3 if args.quick else 5, lr, args.seed,
                                args.workers, batch, tech)
    if rows:
        from memspice.io import write_many_atomic
        from memspice.prune.report import report_writers

        write_many_atomic(report_writers(rows, out, f"Pruning benchmark ({label})", [
            f"{len(x_train)} training images (10 % held out), {len(x_test)} test images simulated in ngspice",
            ENERGY_NOTE]))
    result = {"dataset": name, "topology": list(topology), "train_samples": int(len(x_train)),
              "test_samples": int(len(x_test)), "epochs": epochs, "mode": "coupled",
              "dense": rows[0] if rows else None, "networks": rows, "faults": faults,
              "cnn": cnn_rows, "energy_period_s": 1e-6, "wall_s": time.perf_counter() - wall}
    print(f"wall {result['wall_s']:.0f} s")
    print(json.dumps(result, sort_keys=True, default=float))
    return 0


def _densities(args) -> list[float]:
    text = args.densities or ("0.25,0.125" if args.quick else ",".join(f"{d:g}" for d in DENSITIES))
    if text.strip().lower() == "none":
        return []
    return [float(d) for d in text.split(",") if d.strip()]


def _admm_runs(args, spec) -> list[tuple]:
    """``(text, targets, tag, retrain_epochs, levels, budget, rho)`` per ADMM network of
    ``--admm-targets`` (``TARGETS@N`` retrains that network for ``N`` epochs, ``TARGETS@NLk``
    also on ``k`` levels, ``…Br`` keeps ``1/r`` of the dense devices over the layers whose
    amount is ``budget``, ``…Wr`` instead ``1/r`` of the dense weights (θ, a conv θ counted
    once), ``…Pρ`` starts the ADMM rounds at that ρ instead of the section's). ``budget`` is
    ``("devices" | "weights", r)`` or None; ``rho`` None for the section's.

    Raises:
        SparsityError: a bad target, or a weight compression outside 1 to the θ count.
    """
    import re

    from memspice.prune.targets import parse_targets
    from memspice.train.device_budget import check_compression, check_weight_compression

    number = r"(\d+(?:\.\d*)?(?:e-?\d+)?)"
    runs = []
    for item in (t.strip() for t in args.admm_targets.split(";") if t.strip()):
        text, _, options = item.partition("@")
        match = re.fullmatch(rf"(\d*)(?:L(\d+))?(?:([BW]){number})?(?:P{number})?", options)
        if match is None:
            raise SystemExit(f"--admm-targets: {options!r} after @ is N, NLk, NLkBr, NLkWr or any of "
                             f"them ending Pρ (epochs, levels, device or weight compression, ρ)")
        retrain = int(match[1]) if match[1] else args.retrain_epochs
        levels = int(match[2]) if match[2] else args.levels
        budget = None
        if match[3] == "B":
            budget = ("devices", check_compression(match[4]))
        elif match[3] == "W":
            budget = ("weights", check_weight_compression(match[4], spec))
        rho = float(match[5]) if match[5] else None
        tag = "admm_" + text.replace(":", "_").replace(",", "__") + (
            f"_L{levels}" if levels else "") + (f"_R{retrain}" if retrain else "") + (
            f"_{match[3]}{budget[1]:g}" if budget else "") + (f"_P{rho:g}" if rho else "")
        runs.append((text, parse_targets(text, len(spec.plans)), tag, retrain, levels, budget, rho))
    return runs


def _budget_config(budget) -> dict:
    """``AdmmConfig`` keywords of a run's ``budget`` (see :func:`_admm_runs`)."""
    if budget is None:
        return {}
    unit, ratio = budget
    return {"device_compression": ratio} if unit == "devices" else {"weight_compression": ratio}


def _admm_from(state, cal, spec, dense, targets, args, config, x_train, y_train, retrain=None,
               levels=0, budget=None):
    """ADMM pruning from the dense network's θ (trained in this run, or read back)."""
    from memspice.prune.flow import admm
    from memspice.train.admm import AdmmConfig, make_model
    from memspice.train.mapping import conductance_to_theta

    if "model" not in state:
        state["model"] = make_model(cal, spec, evaluator="coupled", init_mean=INIT_THETA_MEAN)
        state["params"] = [np.clip(conductance_to_theta(g, state["model"].window), -40, 40)
                           for g in dense.network.conductances]
    admm_config = AdmmConfig(rho=args.rho, rounds=args.admm_rounds or (2 if args.quick else 4),
                             epochs_per_round=1 if args.quick else 2, levels=levels,
                             train=config,
                             retrain_epochs=retrain or (2 if args.quick else 5),
                             **_budget_config(budget))
    return admm(state["model"], state["params"], x_train, y_train, targets, admm_config)


def prune_section(args, out, cal, spec, tech, sizing, x_train, y_train, x_test, y_test, config,
                  batch) -> list[dict]:
    """Dense, CSrram and ADMM networks: one report row each."""
    from memspice.prune.flow import csrram, train_dense

    state: dict = {}

    def make_dense():
        model, params, pruned = train_dense(cal, spec, x_train, y_train, config)
        state["model"], state["params"] = model, params
        return dataclasses.replace(pruned, record={**pruned.record, "method": "dense"})

    dense, _ = cached(out / "dense", make_dense)
    if args.no_spice:
        for density in _densities(args):
            cached(out / f"csrram_{density:g}", lambda d=density: csrram(cal, spec, d, x_train, y_train, config))
        for text, targets, tag, retrain, levels, budget, _ in _admm_runs(args, spec):
            cached(out / tag, lambda targets=targets, retrain=retrain, levels=levels, budget=budget:
                   _admm_from(state, cal, spec, dense, targets, args, config, x_train, y_train,
                              retrain, levels, budget))
        return []
    base = measured(out / "dense", dense, spec, tech, sizing, x_test, y_test, args.workers, batch,
                    ngspice=args.ngspice, transient=2 if args.quick else args.transient_samples)

    def row(network: str, method: str, figures: dict, record: dict) -> dict:
        return _row(network, method, figures, base, record)

    rows = [row("dense", "dense", base, dense.record)]
    for density in _densities(args):
        tag = f"csrram_{density:g}"
        pruned, _ = cached(out / tag, lambda d=density: csrram(cal, spec, d, x_train, y_train, config))
        figures = measured(out / tag, pruned, spec, tech, sizing, x_test, y_test, args.workers, batch,
                           ngspice=args.ngspice, transient=2 if args.quick else args.transient_samples)
        rows.append(dict(row(tag, "csrram", figures, pruned.record), first_layer_density=density))
    for text, targets, tag, retrain, levels, budget, _ in _admm_runs(args, spec):
        pruned, _ = cached(out / tag, lambda targets=targets, retrain=retrain, levels=levels, budget=budget:
                           _admm_from(state, cal, spec, dense, targets, args, config, x_train,
                                      y_train, retrain, levels, budget))
        tile = next((t.tile for t in targets if t.tile is not None), None)
        figures = measured(out / tag, pruned, spec, tech, sizing, x_test, y_test, args.workers,
                           batch, tile, ngspice=args.ngspice,
                           transient=2 if args.quick else args.transient_samples)
        rows.append(dict(row(tag, "admm", figures, pruned.record), targets=text,
                         levels=levels, retrain_epochs=retrain or (2 if args.quick else 5)))
    return rows


if __name__ == "__main__":
    sys.exit(main())
