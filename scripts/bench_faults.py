"""Benchmark: stuck-at fault rescue, in SPICE, with the same fault map in training and validation.

For each stuck-at rate (5, 10, 20 %: half the stuck devices at g_max, half at g_min) one seeded
fault map is drawn and written to ``<out>/rate_NN/fault_map.npz``. Three SPICE accuracies on the
same test images:

- ``fault_free``: the network trained with ideal devices, simulated with ideal devices (the
  baseline, the same for every rate);
- ``oblivious``: that network simulated with the map's devices stuck;
- ``remapped``: the fault-free network, its most harmed neurons moved to fault-free spare columns
  (10 % extra columns per layer; :func:`memspice.train.fault_map.remap_to_spares`), no retraining;
- ``aware``: the fault-free network retrained against the map (``--aware-epochs`` epochs from
  its parameters, the same recipe), simulated with the same map.

Every network is trained in coupled mode on a calibration of the built-in card made in the same
run (the mode ``memspice train`` uses by default when given ``memspice calibrate``'s output), so
the model predicts its circuit, on a short budget (Adam, batch 16, BCE on the output logits,
learning rate ×0.97 per epoch, dense start θ ≈ −1.5; see :func:`train_config`); each validation also reports the model's accuracy on the same
devices and its agreement with SPICE.

Data: ``--quick`` (< 1 min on an idle machine): digits, 64-16-10, 400 training and 100 test images of the
stratified 80/20 split. Full: MNIST 14×14, 196-100-10, the first 8,000 images of the 10k set
for training and the last 2,000 for testing, from ``--mnist-dir``, ``$MEMSPICE_MNIST_DIR`` or
the cache that ``memspice data mnist`` fills (``memspice data mnist --from DIR`` fills it from a
local copy). Networks and validation batches are kept in ``--out``; a re-run reuses them.

The ``cnn`` section does the same for the MNIST CNN of ``scripts/bench_cnn.py`` (``conv 4 k3 →
pool 2 → conv 8 k3 → pool 2 → flatten → dense 10`` on 14×14), with one per-device map per rate
(a conv kernel's replicas at different positions are stuck independently;
:func:`memspice.train.layered_devices.seeded_device_faults`). The fault-free CNN is trained by
``bench_cnn.py``'s recipe (θ mean −3, load-aware pre-training, coupled fine-tuning) or read
with ``--network DIR``; the fault-aware one is retrained from its parameters with the map's
devices stuck, in the coupled model with every physical device programmed on its own
(:class:`memspice.train.conv_faults.ReplicaFaultAwareNetwork`: a kernel's replicas next to a
stuck device may differ from the others; optional shared-θ stages first,
:class:`memspice.train.conv_faults.FaultAwareCrossbarNetwork`; :class:`CnnRecipe`), as
``memspice train --fault-aware --per-replica`` does; a second fault-aware arm keeps every
replica tied to one θ per kernel entry (``shared_aware``: ``memspice train --fault-aware``).
Every network is saved as ``memspice train`` saves it (the per-replica one as network format
version 3 with its device conductances, each with its map in ``fault_map.npz``), read back, and
validated in SPICE as ``memspice validate`` builds it: its own map's devices stuck, no new draw
(``--cnn-test-images`` of the 2,000 test images, ``--ngspice`` or ``$MEMSPICE_NGSPICE``).
``--quick`` runs a digits CNN (``conv 2 k3 → pool 2 → dense 10``) on 8 test images.
``--sections mlp|cnn`` runs one of the two.

Ends with one line of JSON: ``{"networks": [{"network", "mode", "faults": [{"rate",
"oblivious", "aware", "fault_free", "remapped" (dense only), "shared_aware" (CNN), ...}, ...],
...}, ...]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

# Single-threaded BLAS, set before NumPy loads: the products are small, and on a shared 2-core
# machine BLAS threads cost more than they save (see memspice.pipeline.train_stage).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

RATES = (0.05, 0.10, 0.20)
#: Fault-free spare crossbar columns per layer, as a fraction of its neurons (rounded up).
SPARE_FRACTION = 0.1


def load_split(quick: bool, mnist_dir: Path | None, seed: int):
    """``(name, train Dataset, test Dataset, topology)``."""
    from memspice.datasets import benchmark_split, load_dataset

    if quick:
        train_set, test_set = benchmark_split(load_dataset("digits"), 0.2, seed)
        return "digits", train_set.subset(slice(0, 400)), test_set.subset(slice(0, 100)), (64, 16, 10)
    from memspice.data_cache import resolve_mnist_dir

    data = load_dataset("mnist", resolve_mnist_dir(mnist_dir))
    if len(data.labels) != 10_000:
        raise SystemExit(f"expected the 10,000-image MNIST test set, got {len(data.labels)} images")
    return ("mnist", *benchmark_split(data), (196, 100, 10))


#: θ at initialization. The dense start lets a column's healthy devices outweigh one stuck at
#: g_max; from the defaults' sparse start (−2, most devices near g_min) a single stuck-high device
#: dominates its column (scripts/bench_train.py measured the same on MNIST).
INIT_THETA_MEAN = -1.5


def train_config(epochs: int, lr: float, seed: int):
    """Adam, batch 16, BCE on the output neurons' logits (scripts/bench_train.py), the defaults'
    learning-rate decay (×0.97 per epoch), the epoch of lowest validation loss (10 % held out);
    ``epochs`` at learning rate ``lr``. (A cosine schedule over 5 epochs from θ ≈ −1.5 left the
    quick network at chance.)"""
    from memspice.train.trainer import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=16, lr=lr, optimizer="adam", loss="bce", loss_link="logit",
                       lr_decay=0.97, schedule="exponential", seed=seed, val_fraction=0.1, progress=False)


def trained(directory: Path, make_model, x, labels, config, initial=None):
    """The network in ``directory`` if a run left one there, else train it (checkpointed) and save it."""
    from memspice.train.evaluate import network_from_params
    from memspice.train.network_io import load_network, save_network
    from memspice.train.trainer import train

    if (directory / "network.json").is_file():
        return load_network(directory), 0.0
    t0 = time.perf_counter()
    model = make_model()
    result = train(model, x, labels, config, out_dir=directory / "train", resume=True, initial_params=initial)
    network = network_from_params(model, result.params, {"best_epoch": result.best_epoch})
    save_network(network, directory)
    return network, time.perf_counter() - t0


def spice(network, tech, x, labels, out_dir: Path, workers: int, batch_size: int) -> dict:
    """SPICE accuracy, model accuracy on the same devices, agreement, stuck devices, wall time."""
    from memspice.validate.api import RunSettings, validate_network

    t0 = time.perf_counter()
    report = validate_network(network, tech, x, labels, out_dir, write_files=False,
                              settings=RunSettings(batch_size=batch_size, workers=workers, resume=True))
    s = report.summary
    if not report.complete:
        raise SystemExit(f"validation in {out_dir} incomplete: {s['failed_batches']}")
    return {"spice": s["spice_accuracy"], "model": s["model_accuracy"], "agreement": s["agreement"],
            "stuck": s["stuck_devices"], "wall_s": time.perf_counter() - t0}



# ---- the CNN section ----------------------------------------------------------------------

class CnnRecipe(NamedTuple):
    """Training of the CNN section (the fault-free network is ``scripts/bench_cnn.py``'s recipe).

    Attributes:
        init_mean: mean of the initial θ (std 1) of the fault-free network.
        pre_epochs: load-aware pre-training epochs (batch ``pre_batch``, Adam ``pre_lr``, cosine).
        tune_epochs: coupled fine-tuning epochs (batch ``tune_batch``, Adam ``tune_lr``).
        aware_pre_epochs: fault-aware retraining from the fault-free θ: load-aware epochs with
            the map's devices stuck (batch ``pre_batch``, Adam ``aware_pre_lr``) ...
        aware_tune_epochs: ... then coupled epochs with them stuck (batch ``tune_batch``, ``tune_lr``) ...
        replica_epochs: ... then coupled epochs with every physical device programmed on its own
            (:class:`memspice.train.conv_faults.ReplicaFaultAwareNetwork`: a kernel's replicas
            next to a stuck device may differ from the others; batch ``replica_batch``, Adam
            ``replica_lr``, cosine). The network is then its device conductances. The defaults
            (no shared-θ stage, 3 epochs at lr 0.2) were chosen on the validation split with the
            20 % map: 89.0 % in the coupled model against 88.6 % at lr 0.1, 80.3 % at lr 0.02, and
            72.0 % for 8 load-aware plus 1 coupled shared-θ epochs (fault-free network: 89.75 %).
        shared_epochs: the shared-θ fault-aware arm (one θ per kernel entry, every replica tied
            to it, :class:`memspice.train.conv_faults.FaultAwareCrossbarNetwork`): coupled epochs
            from the fault-free θ with the map's devices stuck (batch ``tune_batch``, Adam
            ``shared_lr``, cosine); 0 skips the arm. Not tuned.
        test_images: test images validated in SPICE per arm.
    """

    init_mean: float = -3.0
    pre_epochs: int = 8
    pre_batch: int = 32
    pre_lr: float = 0.05
    tune_epochs: int = 1
    tune_batch: int = 64
    tune_lr: float = 0.005
    aware_pre_epochs: int = 0
    aware_pre_lr: float = 0.05
    aware_tune_epochs: int = 0
    replica_epochs: int = 3
    replica_batch: int = 64
    replica_lr: float = 0.2
    shared_epochs: int = 3
    shared_lr: float = 0.05
    test_images: int = 2000


CNN_QUICK = CnnRecipe(pre_epochs=10, tune_epochs=0, shared_epochs=2, test_images=8)


def cnn_spec(quick: bool):
    """MNIST: ``conv 4 k3 → pool 2 → conv 8 k3 → pool 2 → flatten → dense 10`` on 1×14×14
    (``scripts/bench_cnn.py``); quick: ``conv 2 k3 → pool 2 → flatten → dense 10`` on digits' 1×8×8."""
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec

    if quick:
        return NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
    return NetworkSpec((1, 14, 14), (Conv2d(4, 3), AvgPool2d(2), Conv2d(8, 3), AvgPool2d(2), Flatten(), Dense(10)))


def cnn_config(epochs: int, batch: int, lr: float, seed: int):
    """``scripts/bench_cnn.py``'s settings: softmax CE on the logits, cosine schedule, the epoch of
    best validation accuracy on a seeded 10 % of the training images."""
    from memspice.train.trainer import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch, lr=lr, loss="softmax_ce", loss_link="logit",
                       schedule="cosine", val_fraction=0.1, seed=seed, progress=False)


#: Per-device conductances as runs before network format version 3 kept them, next to network.json.
DEVICES_NAME = "devices.npz"


def save_devices(devices, path: Path) -> Path:
    """Per-layer ``(n_columns, D)`` conductances (S) as ``layer0``, ``layer1``, … (written whole or not at all)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{f"layer{i}": np.asarray(g, dtype=np.float64) for i, g in enumerate(devices)})
    os.replace(tmp, path)
    return path


def load_devices(path: Path) -> tuple[np.ndarray, ...]:
    """The arrays :func:`save_devices` wrote."""
    with np.load(path, allow_pickle=False) as data:
        return tuple(np.array(data[f"layer{i}"]) for i in range(len(data.files)))


def cnn_trained(directory: Path, cal, spec, faults, recipe: CnnRecipe, x, labels, seed: int, initial=None,
                per_replica: bool = True):
    """``(network, info)``: the CNN in ``directory`` if a run left one there, else train it and save it
    as ``memspice train`` does (``save_layered_network``: the map in ``fault_map.npz``, and a network
    trained device by device as format version 3 with its ``device{i}`` conductances).

    Fault-free (``faults`` None): load-aware, then coupled epochs. Against ``faults``, from
    ``initial`` θ: with ``per_replica`` the optional shared-θ stages, then device by device for
    ``recipe.replica_epochs`` (``memspice train --fault-aware --per-replica``); without it,
    ``recipe.shared_epochs`` coupled shared-θ epochs (``memspice train --fault-aware``)."""
    from memspice.network.wiring import network_wiring
    from memspice.pipeline.layered_train import ChunkedPredictions
    from memspice.train.conv_faults import FaultAwareCrossbarNetwork, ReplicaFaultAwareNetwork, replica_thetas
    from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.trainer import train

    if (directory / "network.json").is_file():
        network = load_layered_network(directory)
        if network.devices is None and (directory / DEVICES_NAME).is_file():  # a run before format version 3
            from memspice.train.fault_map import FAULT_MAP_NAME, load_device_fault_map

            network = dataclasses.replace(network, faults=load_device_fault_map(directory / FAULT_MAP_NAME, spec),
                                          devices=load_devices(directory / DEVICES_NAME))
        return network, network.metadata.get("bench_faults", {})

    def model(evaluator):
        if faults is None:
            return CrossbarNetwork(cal, spec, evaluator=evaluator, init_mean=recipe.init_mean)
        return FaultAwareCrossbarNetwork(cal, spec, faults, evaluator=evaluator, init_mean=recipe.init_mean)

    if faults is None:
        stages = [("load-aware", recipe.pre_epochs, recipe.pre_batch, recipe.pre_lr, "pre_val_accuracy"),
                  ("coupled", recipe.tune_epochs, recipe.tune_batch, recipe.tune_lr, "tune_val_accuracy")]
    elif per_replica:
        stages = [("load-aware", recipe.aware_pre_epochs, recipe.pre_batch, recipe.aware_pre_lr, "pre_val_accuracy"),
                  ("coupled", recipe.aware_tune_epochs, recipe.tune_batch, recipe.tune_lr, "tune_val_accuracy")]
    else:
        stages = [("coupled", recipe.shared_epochs, recipe.tune_batch, recipe.shared_lr, "shared_val_accuracy")]
    params, info = initial, {}
    t0 = time.perf_counter()
    for evaluator, epochs, batch, lr, key in stages:
        if epochs:
            result = train(ChunkedPredictions(model(evaluator)), x, labels, cnn_config(epochs, batch, lr, seed),
                           initial_params=params)
            params, info[key] = result.params, result.history.val_accuracy.tolist()
    if params is None:
        raise SystemExit("the CNN recipe trains nothing: set pre_epochs or tune_epochs")
    sigma = tuple(np.asarray(g) for g in CrossbarNetwork(cal, spec).conductances(params)[0])
    if faults is not None and per_replica and recipe.replica_epochs:
        replica = ReplicaFaultAwareNetwork(cal, spec, faults, evaluator="coupled")
        result = train(ChunkedPredictions(replica), x, labels,
                       cnn_config(recipe.replica_epochs, recipe.replica_batch, recipe.replica_lr, seed),
                       initial_params=replica_thetas(network_wiring(spec), sigma, replica.window))
        info["replica_val_accuracy"] = result.history.val_accuracy.tolist()
        info["train_s"] = time.perf_counter() - t0
        network = replica.trained_network(result.params, sigma, {"bench_faults": info})
    else:
        info["train_s"] = time.perf_counter() - t0
        network = TrainedCrossbarNetwork(spec, sigma, cal, "coupled", faults, metadata={"bench_faults": info})
    save_layered_network(network, directory)
    return load_layered_network(directory), info  # what `memspice validate` reads


def cnn_spice(network, tech, x, labels, out_dir: Path, workers: int, batch_size: int,
              ngspice: str | None = None) -> dict:
    """SPICE accuracy of ``network`` as ``memspice validate`` builds it (its own per-device map's
    devices stuck, its own devices when it was trained device by device), the coupled model's
    accuracy on the same devices and its agreement with SPICE, wall time."""
    from memspice.validate.api import RunSettings, validate_network

    t0 = time.perf_counter()
    report = validate_network(network, tech, x, labels, out_dir, write_files=False,
                              settings=RunSettings(batch_size=batch_size, workers=workers, resume=True,
                                                   ngspice=ngspice))
    s = report.summary
    if not report.complete:
        raise SystemExit(f"validation in {out_dir} incomplete: {s['failed_batches']}")
    model = s if network.faults is None else s["drawn_devices_model"]
    return {"spice": s["spice_accuracy"], "model": model["model_accuracy"], "agreement": model["agreement"],
            "wall_s": time.perf_counter() - t0}


def cnn_section(args, cal, tech, rates: list[float]) -> dict:
    """Fault-free, fault-oblivious and fault-aware CNNs at every rate, in SPICE with the same maps."""
    from memspice.datasets import benchmark_split, features_to_voltages, load_dataset
    from memspice.train.conv_io import load_layered_network
    from memspice.train.fault_map import describe_fault_map, fault_map_summary
    from memspice.train.layered_devices import seeded_device_faults
    from memspice.train.mapping import conductance_to_theta
    from memspice.validate.layered import describe_layers

    wall = time.perf_counter()
    recipe = CNN_QUICK if args.quick else CnnRecipe()
    if args.cnn_test_images is not None:
        recipe = recipe._replace(test_images=args.cnn_test_images)
    spec = cnn_spec(args.quick)
    if args.quick:
        train_set, test_set = benchmark_split(load_dataset("digits"), 0.2, args.seed)
        name, train_set = "digits", train_set.subset(slice(0, 400))
    else:
        name, train_set, test_set, _ = load_split(False, args.mnist_dir, args.seed)
    out = args.out / f"{name}-cnn"
    if args.network is not None:
        free = load_layered_network(args.network)
        if free.spec.to_dict() != spec.to_dict():
            raise SystemExit(f"--network {args.network} is not the benchmark's CNN:\n{spec.summary()}")
        cal, free_info = free.calibration, {"loaded_from": str(args.network)}
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)[: recipe.test_images]
    y_train, y_test = train_set.labels, test_set.labels[: recipe.test_images]
    if args.network is None:
        free, free_info = cnn_trained(out / "fault_free", cal, spec, None, recipe, x_train, y_train, args.seed)
    batch = max(1, -(-len(x_test) // (4 * args.workers)))
    baseline = cnn_spice(free, tech, x_test, y_test, out / "fault_free" / "validate", args.workers, batch,
                         ngspice=args.ngspice)
    print(f"{name} CNN ({describe_layers(free)}), {len(x_train)} training / {len(x_test)} test images; fault-free: SPICE "
          f"{100 * baseline['spice']:.2f} %, coupled model {100 * baseline['model']:.2f} %, agreement "
          f"{100 * baseline['agreement']:.2f} %", flush=True)
    free_params = [np.clip(conductance_to_theta(g, free.window), -40.0, 40.0) for g in free.conductances]
    # every map's oblivious arm first, then the retraining, then the aware arms: the SPICE runs
    # that need no training finish first, and a re-run picks up what is done
    tags = [out / f"rate_{int(round(100 * rate)):02d}" for rate in rates]
    maps = [seeded_device_faults(spec, rate, args.seed + k) for k, rate in enumerate(rates)]
    obliviouses = []
    for rate, tag, faults in zip(rates, tags, maps):
        print(f"  {100 * rate:g} %: {describe_fault_map(faults)}", flush=True)
        obliviouses.append(cnn_spice(dataclasses.replace(free, faults=faults), tech, x_test, y_test,
                                     tag / "oblivious_validate", args.workers, batch, args.ngspice))
        print(f"    oblivious: SPICE {100 * obliviouses[-1]['spice']:.2f} %", flush=True)
    aware_nets = [cnn_trained(tag / "aware", cal, spec, faults, recipe, x_train, y_train, args.seed,
                              initial=free_params) for tag, faults in zip(tags, maps)]
    shared_nets = [cnn_trained(tag / "shared_aware", cal, spec, faults, recipe, x_train, y_train, args.seed,
                               initial=free_params, per_replica=False) if recipe.shared_epochs else None
                   for tag, faults in zip(tags, maps)]
    rows = []
    for k, (rate, tag, faults, oblivious) in enumerate(zip(rates, tags, maps, obliviouses)):
        aware_net, aware_info = aware_nets[k]
        aware = cnn_spice(aware_net, tech, x_test, y_test, tag / "aware_validate", args.workers, batch, args.ngspice)
        shared = None
        if shared_nets[k] is not None:
            shared = cnn_spice(shared_nets[k][0], tech, x_test, y_test, tag / "shared_aware_validate", args.workers,
                               batch, args.ngspice)
        gap = baseline["spice"] - oblivious["spice"]
        summary = fault_map_summary(faults)
        row = {"rate": rate, "fault_free": baseline["spice"], "oblivious": oblivious["spice"], "aware": aware["spice"],
               "aware_minus_fault_free_points": 100 * (aware["spice"] - baseline["spice"]),
               "recovered_fraction": (aware["spice"] - oblivious["spice"]) / gap if gap > 0 else None,
               "oblivious_model": oblivious["model"], "aware_model": aware["model"],
               "oblivious_agreement": oblivious["agreement"], "aware_agreement": aware["agreement"],
               "stuck_devices": summary["stuck_high"] + summary["stuck_low"], "devices": summary["devices"],
               "fault_seed": args.seed + k, "aware_training": aware_info,
               "shared_aware": None if shared is None else shared["spice"],
               "shared_recovered_fraction": (shared["spice"] - oblivious["spice"]) / gap
               if shared is not None and gap > 0 else None,
               "shared_aware_model": None if shared is None else shared["model"],
               "shared_aware_agreement": None if shared is None else shared["agreement"],
               "shared_aware_training": None if shared is None else shared_nets[k][1],
               "spice_wall_s": oblivious["wall_s"] + aware["wall_s"] + (0.0 if shared is None else shared["wall_s"])}
        rows.append(row)
        print(f"  {100 * rate:4.0f} % stuck ({row['stuck_devices']} of {row['devices']} devices): SPICE fault-free "
              f"{100 * baseline['spice']:.2f} %, oblivious {100 * oblivious['spice']:.2f} %, "
              + ("" if shared is None else f"shared-θ aware {100 * shared['spice']:.2f} %, ")
              + f"per-replica aware {100 * aware['spice']:.2f} % ({row['aware_minus_fault_free_points']:+.2f} points "
              "against fault-free"
              + (f", {100 * row['recovered_fraction']:.0f} % of the loss recovered" if row["recovered_fraction"] is not None
                 else "") + f"); coupled model on the same devices {100 * oblivious['model']:.2f} / "
              f"{100 * aware['model']:.2f} %, agreement {100 * oblivious['agreement']:.2f} / "
              f"{100 * aware['agreement']:.2f} %", flush=True)
    return {"network": f"{name}-cnn", "dataset": name, "layers": describe_layers(free), "mode": "coupled",
            "train_samples": int(len(x_train)), "test_samples": int(len(x_test)), "recipe": recipe._asdict(),
            "fault_free_model": baseline["model"], "fault_free_agreement": baseline["agreement"],
            "fault_free_training": free_info, "faults": rows, "wall_s": time.perf_counter() - wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, small network, < 1 min")
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help="MNIST IDX folder (default: $MEMSPICE_MNIST_DIR, else the memspice data cache)")
    parser.add_argument("--out", type=Path, default=Path("bench_faults_run"),
                        help="networks, fault maps and validation batches (default: ./bench_faults_run)")
    parser.add_argument("--epochs", type=int, default=None, help="fault-free training epochs (quick 5, full 10)")
    parser.add_argument("--aware-epochs", type=int, default=None,
                        help="fault-aware retraining epochs from the fault-free network (quick 3, full 5)")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES), help="stuck-at rates (default 0.05,0.1,0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, training and fault maps (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="ngspice processes (default 2)")
    parser.add_argument("--sections", default="mlp,cnn",
                        help="which networks: mlp (196-100-10), cnn (conv 4 → conv 8), or both (default mlp,cnn)")
    parser.add_argument("--network", type=Path, default=None,
                        help="cnn: a fault-free CNN folder (e.g. scripts/bench_cnn.py's WORK/network) instead of "
                             "training one")
    parser.add_argument("--cnn-test-images", type=int, default=None,
                        help="cnn: test images validated in SPICE per arm (default all 2,000; quick 8)")
    parser.add_argument("--ngspice", default=os.environ.get("MEMSPICE_NGSPICE"),
                        help="cnn: ngspice executable (default: $MEMSPICE_NGSPICE, else ngspice on PATH)")
    args = parser.parse_args(argv)
    sections = [part.strip() for part in args.sections.split(",") if part.strip()]
    if not sections or set(sections) - {"mlp", "cnn"}:
        parser.error(f"--sections takes mlp, cnn or both, got {args.sections!r}")
    if args.cnn_test_images is not None and not 1 <= args.cnn_test_images <= 2000:
        parser.error("--cnn-test-images must be in [1, 2000]")

    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin

    wall = time.perf_counter()
    rates = [float(r) for r in args.rates.split(",")]
    tech, sizing = builtin(), InverterSizing()
    t0 = time.perf_counter()
    cal = None if sections == ["cnn"] and args.network is not None else calibrate(tech, sizing)
    calibrate_s = time.perf_counter() - t0
    networks = []
    if "mlp" in sections:
        networks.append(mlp_section(args, cal, tech, rates, calibrate_s))
    if "cnn" in sections:
        networks.append(cnn_section(args, cal, tech, rates))
    print(f"wall {time.perf_counter() - wall:.0f} s")
    print(json.dumps({"networks": networks}, sort_keys=True, default=float))
    return 0


def mlp_section(args, cal, tech, rates: list[float], calibrate_s: float) -> dict:
    """The dense 196-100-10 (quick: 64-16-10) rows: fault-free, oblivious, remapped and aware."""
    from memspice.datasets import features_to_voltages
    from memspice.train.fault_map import FAULT_MAP_NAME, remap_to_spares, save_fault_map, seeded_fault_map
    from memspice.train.model import PhaxNetwork

    wall = time.perf_counter()
    epochs = args.epochs or (5 if args.quick else 10)
    aware_epochs = args.aware_epochs or (3 if args.quick else 5)
    name, train_set, test_set, topology = load_split(args.quick, args.mnist_dir, args.seed)
    mode = "coupled"
    x_train = features_to_voltages(train_set.features, cal.rails.vdd, cal.rails.vss)
    x_test = features_to_voltages(test_set.features, cal.rails.vdd, cal.rails.vss)
    y_train, y_test = train_set.labels, test_set.labels
    label = f"{name}-{'-'.join(map(str, topology))}"
    out = args.out / label
    batch = 500 if len(x_test) > 500 else max(1, -(-len(x_test) // args.workers))
    lr = 0.01 if args.quick else 0.005
    config, aware_config, init_mean = train_config(epochs, lr, args.seed), train_config(aware_epochs, lr, args.seed), INIT_THETA_MEAN

    free, free_train_s = trained(out / "fault_free", lambda: PhaxNetwork(cal, topology, evaluator=mode, init_mean=init_mean),
                                 x_train, y_train, config)
    # θ of the programmed conductances (a device exactly at a window edge maps to ±inf: clipped)
    free_params = [np.clip(t, -40.0, 40.0) for t in free.thetas()]
    baseline = spice(free, tech, x_test, y_test, out / "fault_free" / "validate", args.workers, batch)
    print(f"{label}, {mode} mode, {len(x_train)} training / {len(x_test)} test images; fault-free network "
          f"({epochs} epochs, {free_train_s:.0f} s): SPICE {100 * baseline['spice']:.2f} %, model "
          f"{100 * baseline['model']:.2f} %, agreement {100 * baseline['agreement']:.2f} %", flush=True)

    rows = []
    for k, rate in enumerate(rates):
        tag = out / f"rate_{int(round(100 * rate)):02d}"
        faults = seeded_fault_map(topology, rate, args.seed + k)
        save_fault_map(faults, tag / FAULT_MAP_NAME, topology)
        oblivious_net = dataclasses.replace(free, faults=faults)
        oblivious = spice(oblivious_net, tech, x_test, y_test, tag / "oblivious_validate", args.workers, batch)
        spares = [int(np.ceil(SPARE_FRACTION * m)) for m in topology[1:]]
        window = free.window
        remapped_map, moved = remap_to_spares(free.conductances, faults, spares, window.g_min_siemens,
                                              window.g_max_siemens)
        save_fault_map(remapped_map, tag / "remapped_fault_map.npz", topology)
        remapped = spice(dataclasses.replace(free, faults=remapped_map), tech, x_test, y_test,
                         tag / "remapped_validate", args.workers, batch)
        aware_net, aware_train_s = trained(
            tag / "aware", lambda f=faults: PhaxNetwork(cal, topology, faults=f, evaluator=mode, init_mean=init_mean),
            x_train, y_train, aware_config, initial=free_params)
        aware = spice(aware_net, tech, x_test, y_test, tag / "aware_validate", args.workers, batch)
        gap = baseline["spice"] - oblivious["spice"]
        row = {"rate": rate, "fault_free": baseline["spice"], "oblivious": oblivious["spice"], "aware": aware["spice"],
               "aware_minus_fault_free_points": 100 * (aware["spice"] - baseline["spice"]),
               "recovered_fraction": (aware["spice"] - oblivious["spice"]) / gap if gap > 0 else None,
               "remapped": remapped["spice"], "remapped_model": remapped["model"],
               "spare_columns": spares, "moved_neurons": [len(m) for m in moved],
               "oblivious_model": oblivious["model"], "aware_model": aware["model"],
               "oblivious_agreement": oblivious["agreement"], "aware_agreement": aware["agreement"],
               "stuck_devices": aware["stuck"], "fault_seed": args.seed + k,
               "aware_train_s": aware_train_s, "spice_wall_s": oblivious["wall_s"] + remapped["wall_s"] + aware["wall_s"]}
        rows.append(row)
        print(f"  {100 * rate:4.0f} % stuck ({row['stuck_devices']} devices): SPICE fault-free "
              f"{100 * baseline['spice']:.2f} %, oblivious {100 * oblivious['spice']:.2f} %, remapped to "
              f"{'+'.join(map(str, spares))} spare columns {100 * remapped['spice']:.2f} %, aware "
              f"{100 * aware['spice']:.2f} % ({row['aware_minus_fault_free_points']:+.2f} points against fault-free"
              + (f", {100 * row['recovered_fraction']:.0f} % of the loss recovered" if row["recovered_fraction"] is not None
                 else "") + f"); model on the same devices {100 * oblivious['model']:.2f} / {100 * aware['model']:.2f} %,"
              f" agreement {100 * oblivious['agreement']:.2f} / {100 * aware['agreement']:.2f} %", flush=True)
    result = {"network": label, "dataset": name, "topology": list(topology), "mode": mode,
              "train_samples": int(len(x_train)), "test_samples": int(len(x_test)), "epochs": epochs,
              "aware_epochs": aware_epochs, "fault_free_model": baseline["model"],
              "fault_free_agreement": baseline["agreement"], "fault_free_train_s": free_train_s,
              "calibrate_s": calibrate_s, "faults": rows, "wall_s": time.perf_counter() - wall}
    return result


if __name__ == "__main__":
    sys.exit(main())
