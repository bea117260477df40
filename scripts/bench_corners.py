"""Benchmark: one sized design at every sky130 corner, trained at tt vs against all corners, with and
without a per-chip bias trim.

The design is the ``[sizing]`` of a ``memspice run`` configuration (default: the repository's
``examples/mnist_sky130.toml``: MNIST 196-100-10, sky130 LVT at ±0.25 V). Steps:

1. calibrate the neuron at every corner (cached in ``--out``);
2. train with the configuration's recipe (load-aware pre-training, then coupled epochs) two
   networks: at tt alone (the baseline) and against all corners at once (the mean loss of the
   corners' models);
3. simulate each network in SPICE at every corner on the test images;
4. trim: for each network and corner, re-program only the bias rows and the first layer's rows of
   inputs that are constant over the training split (border pixels, which act as bias rows):
   centre every column on the corner's threshold, then train those devices against the corner's
   model on ``--trim-samples`` training images (never validation or test images); simulate the
   trimmed network at its corner. The same trim restricted to the two bias rows is scored on the
   validation split only (``bias_rows_only``).

The validation split (the trainer's held-out 10 % of the training images) scores every network
in each corner's coupled model; the test images are only simulated, never used for a choice.
``--quick`` is a smoke run (< 1 min: tt, sf and fs, few images, a 16-neuron hidden layer, two epochs).
Ends with one JSON line: per network and corner ``spice_accuracy``, ``worst_corner`` and
``worst_gap_to_tt`` (points), with and without the trim.

MNIST: ``$MEMSPICE_MNIST_DIR`` or memspice's cache (``memspice data mnist``).
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

from memspice.io import json_ready  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "mnist_sky130.toml"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="memspice run configuration (sky130)")
    p.add_argument("--out", type=Path, default=Path("bench_corners_run"), help="run directory (reused)")
    p.add_argument("--corners", default="tt,ss,ff,sf,fs", help="comma-separated corners (first: the baseline's)")
    p.add_argument("--samples", type=int, default=0, help="test images simulated per corner (0 = all)")
    p.add_argument("--train-samples", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--hidden", type=int, default=0, help="hidden neurons (0 = the configuration's)")
    p.add_argument("--pretrain-epochs", type=int, default=-1, help="load-aware epochs (-1 = the configuration's)")
    p.add_argument("--epochs", type=int, default=0, help="coupled epochs (0 = the configuration's)")
    p.add_argument("--trim-samples", type=int, default=500, help="training images a chip's trim sees")
    p.add_argument("--trim-epochs", type=int, default=20, help="trim epochs")
    p.add_argument("--trim-lr", type=float, default=0.05, help="trim learning rate (θ units)")
    p.add_argument("--no-trim", action="store_true", help="skip the trim")
    p.add_argument("--no-bias-only", action="store_true", help="skip the bias-rows-only trim (validation figures)")
    p.add_argument("--trim-aware-epochs", type=int, default=3,
                   help="coupled epochs of trim-aware fine-tuning of the all-corner network (0 = skip)")
    p.add_argument("--batch-size", type=int, default=0, help="SPICE samples per deck (0 = automatic)")
    p.add_argument("--workers", type=int, default=None, help="parallel ngspice processes (default: CPU count)")
    p.add_argument("--quick", action="store_true", help="smoke run, < 1 min")
    args = p.parse_args(argv)
    if args.quick:
        args.corners = "tt,sf,fs" if args.corners == "tt,ss,ff,sf,fs" else args.corners
        args.samples = args.samples or 20
        args.train_samples = args.train_samples or 400
        args.hidden = args.hidden or 16
        args.pretrain_epochs = 1 if args.pretrain_epochs < 0 else args.pretrain_epochs
        args.epochs = args.epochs or 1
        args.trim_samples = min(args.trim_samples, 100)
        args.trim_epochs = min(args.trim_epochs, 2)
        args.trim_aware_epochs = 0
    return args


def setup(args):
    """Configuration, technology maker, sizing, data and calibrations."""
    from memspice.fit.calibration import DeviceWindow
    from memspice.loop.corners import corner_calibrations
    from memspice.loop.trim import constant_input_rows
    from memspice.pipeline import data
    from memspice.pipeline.config import load_config
    from memspice.tech import sky130
    from memspice.train.trainer import split_validation

    cfg = load_config(args.config)
    t = cfg.technology
    if t.name != "sky130":
        from memspice.errors import ConfigError

        raise ConfigError(f"bench_corners needs a sky130 configuration, {args.config} has {t.name!r}")
    from memspice.circuit.wiring import Rails

    rails = Rails(t.vdd, t.vss)

    def make_tech(corner):
        return sky130(corner, flavor=t.flavor, rails=rails, temperature_c=t.temperature_c, path=t.pdk_path or None)

    sizing = data.sizing(cfg)
    train_set, test_set = data.split_dataset(cfg)
    if args.train_samples:
        train_set = train_set.subset(slice(0, args.train_samples))
    if args.quick:
        test_set = test_set.subset(slice(0, 4 * args.samples))
    corners = tuple(c.strip() for c in args.corners.split(",") if c.strip())
    cals = corner_calibrations(make_tech, corners, sizing, args.out, print)
    window = DeviceWindow(cfg.device.g_min_us * 1e-6, cfg.device.g_max_us * 1e-6, cfg.device.levels)
    cals = {c: dataclasses.replace(cal, device=window) for c, cal in cals.items()}
    x_train, x_test = data.voltages(train_set, rails), data.voltages(test_set, rails)
    n_spice = min(args.samples or len(x_test), len(x_test))
    val_fraction = 0.1
    fit_idx, val_idx = split_validation(len(x_train), val_fraction, cfg.training.seed)
    constant_rows = constant_input_rows(x_train[fit_idx])
    return dict(constant_rows=constant_rows, cfg=cfg, make_tech=make_tech, sizing=sizing, corners=corners, cals=cals, rails=rails,
                x_train=x_train, y_train=train_set.labels, x_test=x_test, y_test=test_set.labels,
                x_spice=x_test[:n_spice], y_spice=test_set.labels[:n_spice],
                fit_idx=fit_idx, val_idx=val_idx, val_fraction=val_fraction)


def recipe_of(args, cfg, val_fraction):
    from memspice.loop.corners import CornerRecipe
    from memspice.train.trainer import TrainConfig

    t = cfg.training
    settings = TrainConfig(epochs=args.epochs or t.epochs, batch_size=t.batch_size, lr=t.learning_rate,
                           lr_decay=t.lr_decay, loss=t.loss, loss_link=t.loss_link, seed=t.seed,
                           val_fraction=val_fraction, progress=False)
    pre = t.pretrain_epochs if args.pretrain_epochs < 0 else args.pretrain_epochs
    return CornerRecipe(settings=settings, mode=t.mode, pretrain_epochs=pre, pretrain_mode=t.pretrain_mode,
                        init_mean=t.init_theta_mean)


def topology_of(args, cfg, env):
    hidden = [args.hidden] if args.hidden else list(cfg.training.hidden)
    n_classes = int(max(env["y_train"].max(), env["y_test"].max())) + 1
    return (env["x_train"].shape[1], *hidden, n_classes)


def cache_key(*parts):
    """A short digest of what a cached result was made from (a mismatch means: make it again)."""
    import hashlib

    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def trained_networks(args, env, plans):
    """``{name: network}`` for ``plans`` ``{name: (corners, start)}``, trained once into ``out/trained_<name>``.

    ``start`` is None (the recipe from scratch) or the name of an earlier plan's network, which is
    then fine-tuned trim-aware for ``--trim-aware-epochs`` coupled epochs: each corner owns its
    trimmed rows (bias and constant input rows), the rest is shared.
    """
    from memspice.loop.corners import train_at_corners
    from memspice.train.network_io import load_network, save_network

    recipe = recipe_of(args, env["cfg"], env["val_fraction"])
    topology = topology_of(args, env["cfg"], env)
    networks, seconds = {}, {}
    for name, (corners, start) in plans.items():
        net_dir = args.out / f"trained_{name}"
        plan_recipe, extra = recipe, {}
        if start is not None:
            from memspice.loop.trim import check_trim
            from memspice.train.mapping import conductance_to_theta
            from memspice.train.schedule import epoch_learning_rate

            base = networks[start]
            s = recipe.settings
            total = recipe.pretrain_epochs + s.epochs
            lr = epoch_learning_rate(s.lr, total, total, s.schedule, s.lr_decay)
            plan_recipe = dataclasses.replace(recipe, pretrain_epochs=0,
                                              settings=dataclasses.replace(s, epochs=args.trim_aware_epochs, lr=lr))
            rows, _ = check_trim(base, None, env["constant_rows"])
            initial = [np.clip(conductance_to_theta(g, base.window), -12, 12) for g in base.conductances]
            extra = {"trim_aware": True, "trim_rows": rows, "initial": initial}
        key = cache_key(corners, topology, len(env["x_train"]), repr(plan_recipe),
                        None if start is None else networks[start].metadata.get("bench_key"))
        if (net_dir / "network.json").is_file():
            cached = load_network(net_dir)
            if cached.metadata.get("bench_key") == key:
                networks[name] = cached
                seconds[name] = cached.metadata.get("train_seconds")
                continue
        t0 = time.perf_counter()
        training = train_at_corners(env["cals"], corners, topology, env["x_train"], env["y_train"], plan_recipe,
                                    reference=env["corners"][0], **extra)
        network, result = training.network, training.result
        seconds[name] = time.perf_counter() - t0
        network = dataclasses.replace(network, metadata={**network.metadata, "train_seconds": seconds[name],
                                                         "bench_key": key})
        save_network(network, net_dir)
        networks[name] = network
        print(f"trained '{name}' against {','.join(corners)} in {seconds[name]:.0f} s "
              f"(best coupled epoch {result.best_epoch})", flush=True)
    return networks, seconds


def spice_accuracy(args, env, network, corner, tag):
    """SPICE accuracy of ``network`` at ``corner`` on the test images (batches reused in ``--out``)."""
    from memspice.pipeline import data
    from memspice.validate.api import RunSettings, validate_network

    batch = args.batch_size or data.batch_size(env["cfg"], len(env["x_spice"]))
    settings = RunSettings(batch_size=batch, workers=args.workers, resume=True, timeout_s=env["cfg"].validation.timeout_s)
    t0 = time.perf_counter()
    key = cache_key(network.metadata.get("bench_key"), corner, len(env["x_spice"]))[:8]
    report = validate_network(network, env["make_tech"](corner), env["x_spice"], env["y_spice"],
                              args.out / f"validate_{tag}_{key}", sizing=env["sizing"], settings=settings,
                              evaluator="coupled", write_files=False)
    c = report.comparison
    if c is None or not report.complete:
        raise RuntimeError(f"SPICE validation of {tag} did not finish")
    return {"spice_accuracy": c.spice_accuracy, "model_accuracy": c.model_accuracy, "agreement": c.agreement,
            "spice_seconds": time.perf_counter() - t0}


def at_corner(network, env, corner):
    """``network`` meeting ``corner``'s transistors (its conductances, the corner's calibration)."""
    return dataclasses.replace(network, calibration=env["cals"][corner], evaluator="coupled")


def val_accuracy(network, env):
    from memspice.train.losses import accuracy

    val = env["val_idx"]
    return accuracy(network.predict(env["x_train"][val]), env["y_train"][val])


def trimmed(args, env, network, corner, tag):
    """``network`` trimmed at ``corner`` (cached in ``out/trimmed_<tag>``) and the trim's figures."""
    from memspice.loop.trim import trim_bias
    from memspice.train.network_io import load_network, save_network
    from memspice.train.trainer import TrainConfig

    directory = args.out / f"trimmed_{tag}"
    key = cache_key(network.metadata.get("bench_key"), corner, args.trim_samples, args.trim_epochs, args.trim_lr,
                    env["constant_rows"].tolist())
    if (directory / "network.json").is_file():
        net = load_network(directory)
        if net.metadata.get("bench_key") == key:
            return net, net.metadata["trim"]
    cal_idx = env["fit_idx"][: args.trim_samples]
    t = env["cfg"].training
    config = TrainConfig(epochs=args.trim_epochs, batch_size=16, lr=args.trim_lr, loss=t.loss, loss_link=t.loss_link,
                         seed=t.seed, val_fraction=0.0, progress=False)
    t0 = time.perf_counter()
    x, y = env["x_train"][cal_idx], env["y_train"][cal_idx]
    result = trim_bias(network, env["cals"][corner], x, y, input_rows=env["constant_rows"], config=config)
    info = {"devices_reprogrammed": result.devices_reprogrammed, "constant_input_rows": len(env["constant_rows"]),
            "calibration_images": len(cal_idx), "calibration_accuracy_before": result.accuracy_before,
            "calibration_accuracy_after": result.accuracy_after, "trim_seconds": time.perf_counter() - t0}
    if not args.no_bias_only:
        bias_only = trim_bias(network, env["cals"][corner], x, y, config=config)
        info["bias_rows_only"] = {"devices_reprogrammed": bias_only.devices_reprogrammed,
                                  "validation_accuracy": val_accuracy(bias_only.network, env)}
    net = dataclasses.replace(result.network, metadata={**result.network.metadata, "trim": info, "bench_key": key})
    save_network(net, directory)
    return net, info


def test_accuracy(network, env):
    from memspice.train.losses import accuracy

    return accuracy(network.predict(env["x_test"]), env["y_test"])


def print_table(title, results, corners, key):
    print(f"\n{title}")
    print(f"{'network':<24}" + "".join(f"{c:>8}" for c in corners))
    for name, r in results.items():
        for label, rows in ((name, r["plain"]), (f"{name} trimmed", r["trimmed"])):
            if rows:
                print(f"{label:<24}" + "".join(f"{100 * rows[c][key]:8.2f}" for c in corners))
        if key == "validation_accuracy" and r["trimmed"] and all("bias_rows_only" in v for v in r["trimmed"].values()):
            print(f"{name + ' bias rows only':<24}"
                  + "".join(f"{100 * r['trimmed'][c]['bias_rows_only']['validation_accuracy']:8.2f}" for c in corners))
    sys.stdout.flush()


def worst(per_corner, reference):
    accs = {c: v["spice_accuracy"] for c, v in per_corner.items()}
    corner = min(accs, key=accs.get)
    return {"worst_corner": corner, "worst_spice_accuracy": accs[corner],
            "worst_gap_to_tt": 100.0 * (accs[reference] - accs[corner])}


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    env = setup(args)
    corners = env["corners"]
    ref = corners[0]
    plans = {ref: ((ref,), None), "all": (corners, None)}
    if args.trim_aware_epochs:
        plans["all_trim_aware"] = (corners, "all")
    networks, seconds = trained_networks(args, env, plans)
    summary = {"config": str(args.config), "corners": list(corners), "n_test": len(env["x_test"]),
               "n_spice": len(env["x_spice"]),
               "n_train": len(env["x_train"]), "n_validation": len(env["val_idx"]), "train_seconds": seconds,
               "networks": {}}
    # 1. every network and trim in the corners' coupled models (validation split and all test images)
    results = {name: {"plain": {}, "trimmed": {}} for name in networks}
    trimmed_nets = {}
    for name, network in networks.items():
        for corner in corners:
            net = at_corner(network, env, corner)
            results[name]["plain"][corner] = {"validation_accuracy": val_accuracy(net, env),
                                              "model_test_accuracy": test_accuracy(net, env)}
            if args.no_trim:
                continue
            tnet, info = trimmed(args, env, network, corner, f"{name}_at_{corner}")
            trimmed_nets[name, corner] = tnet
            results[name]["trimmed"][corner] = {**info, "validation_accuracy": val_accuracy(tnet, env),
                                                "model_test_accuracy": test_accuracy(tnet, env)}
    print_table("validation accuracy (%) in each corner's coupled model", results, corners, "validation_accuracy")
    print_table(f"test accuracy (%) in each corner's coupled model, {len(env['x_test'])} images", results, corners,
                "model_test_accuracy")
    # 2. SPICE (the trim-aware network only trimmed: untrimmed it carries the tt rows everywhere)
    order = [("plain", n) for n in networks if n != "all_trim_aware"] + [("trimmed", n) for n in reversed(networks)]
    for kind, name in order:
        for corner, row in results[name][kind].items():
            net = at_corner(networks[name], env, corner) if kind == "plain" else trimmed_nets[name, corner]
            tag = f"{name}_at_{corner}" if kind == "plain" else f"{name}_trimmed_at_{corner}"
            row.update(spice_accuracy(args, env, net, corner, tag))
            print(f"SPICE {kind} '{name}' at {corner}: {100 * row['spice_accuracy']:.2f} % "
                  f"(model {100 * row['model_accuracy']:.2f} %, agreement {100 * row['agreement']:.2f} %, "
                  f"{row['spice_seconds']:.0f} s)", flush=True)
    for name, r in results.items():
        entry = {"per_corner": r["plain"]}
        if all("spice_accuracy" in v for v in r["plain"].values()):
            entry.update(worst(r["plain"], ref))
        if r["trimmed"]:
            entry["trimmed"] = {"per_corner": r["trimmed"], **worst(r["trimmed"], ref)}
        summary["networks"][name] = entry
    print(f"\nSPICE accuracy (%), the first {len(env['x_spice'])} test images; worst corner and its gap to tt (points)")
    print(f"{'network':<24}" + "".join(f"{c:>8}" for c in corners) + f"{'worst':>8}{'gap':>8}")
    for name, entry in summary["networks"].items():
        for label, e in ((name, entry), (f"{name} trimmed", entry.get("trimmed"))):
            if e and "worst_corner" in e:
                print(f"{label:<24}" + "".join(f"{100 * e['per_corner'][c]['spice_accuracy']:8.2f}" for c in corners)
                      + f"{e['worst_corner']:>8}{e['worst_gap_to_tt']:8.2f}")
    summary["seconds"] = time.perf_counter() - t_start
    print(json.dumps(json_ready(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
