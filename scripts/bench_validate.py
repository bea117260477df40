"""Benchmark of ``memspice validate``: batched SPICE samples/s against one ngspice process per sample.

Each configuration runs in its own child process. Memory per worker is ngspice's own report of
its peak program size (``getrusage(RUSAGE_CHILDREN)`` would include the forked Python image);
CPU time per sample comes from ``getrusage(RUSAGE_CHILDREN)``, which stays meaningful when
other jobs share the cores. Figures: 64-32-10 on the built-in card (trained on digits), 196-100-10 (trained
on pooled MNIST when ``--mnist-dir``, ``$MEMSPICE_MNIST_DIR`` or the cache that
``memspice data mnist`` fills holds it, else random conductances), and sky130
(tt, LVT) when its models are installed. Prints absolute figures and ratios, then ONE JSON line.

Every batched run uses the stock ngspice (``ngspice`` on PATH, Debian's 39.3 here) and, right
after it in the same run, a second build when there is one (``--alt-ngspice EXE``, else
``$MEMSPICE_NGSPICE``, else ``.ngspice/46/bin/ngspice`` when ``scripts/build_ngspice.sh`` has
built it). Per network and simulator: samples/s, ratios to the stock build and to one process
per sample, ngspice CPU ms/sample, Newton iterations/sample, peak MB per worker, the build's
options, how far its outputs are from the stock build's, and, for the run's largest deck, how
long ngspice spends parsing and setting it up (its own ``acct`` report).

Transient mode (8 samples; 4 and the built-in 64-32-10 only with ``--quick``) runs at the default
time-step bound and at the former one (period/1000) in the same run: samples/s, the ratio, and
how far delays and energies move.

Large decks (skip with ``--no-cnn``): the flat deck of a 14x14 CNN (:data:`CNN_LAYERS`, 176,148
devices), how long Python takes to build and write it, and per simulator ngspice's set-up (parse)
time, CPU time per sweep point and peak memory (``--quick``: the second build only).

Usage: ``python scripts/bench_validate.py [--quick] [--workers 2] [--alt-ngspice EXE] [--no-cnn]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Where scripts/build_ngspice.sh installs ngspice 46 (KLU, --enable-predictor) by default.
DEFAULT_ALT = REPO / ".ngspice" / "46" / "bin" / "ngspice"


def _mnist_dir() -> Path | None:
    """The MNIST folder (``$MEMSPICE_MNIST_DIR``, else the cache), or ``None`` without one."""
    from memspice.data_cache import resolve_mnist_dir, status
    from memspice.errors import DataError

    try:
        directory = resolve_mnist_dir()
    except DataError:
        return None
    return directory if "t10k" in status(directory).splits else None


def prepare_network(topology: tuple[int, ...], tech_name: str, directory: Path, quick: bool) -> str:
    """Train the benchmark network into ``directory`` (or save random conductances); describe it.

    Networks are trained on a calibration of the technology they are validated on (coupled
    mode, the model that predicts the circuit), so sweeps visit realistic operating points
    and the reported SPICE/model agreement means something.
    """
    from memspice.characterize.calibrate import calibrate
    from memspice.cli import main as cli_main
    from memspice.fit.calibration import phax_reference_calibration, save_calibration
    from memspice.train.network_io import TrainedNetwork, save_network

    mnist = _mnist_dir()
    if topology[0] == 64:
        name, extra = "digits", []
    elif not quick and mnist:
        name, extra = "mnist", ["--mnist-dir", str(mnist)]
    else:
        rng = np.random.default_rng(0)
        g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
        save_network(TrainedNetwork(topology, g, phax_reference_calibration()), directory)
        return "random conductances"
    directory.mkdir(parents=True, exist_ok=True)
    tech, sizing = _technology(tech_name)
    cal_path = directory / "calibration.json"
    save_calibration(calibrate(tech, sizing), cal_path)
    epochs = ("5" if quick else "30") if name == "digits" else "2"
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["train", "--dataset", name, *extra, "--topology", ",".join(map(str, topology)),
                         "--calibration", str(cal_path), "--mode", "coupled", "--epochs", epochs,
                         "--quiet", "--out", str(directory)])
    if code != 0:
        raise SystemExit(f"training the benchmark network failed ({code})")
    return f"trained on {name} ({epochs} epochs, coupled, {tech_name} calibration)"


def _samples(topology: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Test inputs (V) and labels for a benchmark topology."""
    from memspice.datasets import features_to_voltages, load_dataset

    if topology[0] == 64:
        data = load_dataset("digits")
    elif _mnist_dir() is not None:
        data = load_dataset("mnist", _mnist_dir())
        data = data.subset(slice(int(round(0.8 * len(data.labels))), None))
    else:
        rng = np.random.default_rng(0)
        return rng.uniform(-0.25, 0.25, (2000, topology[0])), rng.integers(0, topology[-1], 2000)
    return features_to_voltages(data.features, 0.25, -0.25), data.labels


def _technology(name: str):
    """Technology and the toolkit's default inverter sizing for it (sky130: tt corner, LVT)."""
    from memspice.characterize.presets import default_sizing
    from memspice.tech.technology import builtin, sky130

    if name == "sky130":
        return sky130("tt", flavor="lvt"), default_sizing("sky130", "lvt")
    return builtin(), default_sizing("builtin")


def measure(network_dir: Path, tech_name: str, n_samples: int, n_baseline: int, rounds: list[int],
            workers: int, alt_ngspice: str | None = None, n_transient: int = 0, repeat: int = 1) -> dict:
    """Batched and per-sample throughput of one configuration (runs in a child process).

    Each entry of ``rounds`` gives one batch size: the samples split evenly over the workers in
    that many rounds. Every batch size runs with the stock ngspice (``ngspice`` on PATH) and, right
    after it, with ``alt_ngspice``. ``n_transient`` samples also run in transient mode (stock
    ngspice), at the default time-step bound and at :data:`BASELINE_POINTS_PER_PERIOD`. With
    ``repeat`` > 1 each batch size runs that many times (stock and alt interleaved) and its
    figures are the run of median samples/s (``samples_per_s_runs`` holds them all).
    """
    import shutil

    from memspice.circuit.builders import dc_input_sources, network_deck, network_output_saves
    from memspice.circuit.deck import Op, Save
    from memspice.sim import SimOptions, simulate_many
    from memspice.sim.info import simulator_info
    from memspice.train.network_io import load_network
    from memspice.validate.api import RunSettings, stored_plan, validate_network

    stock = shutil.which("ngspice")
    if stock is None:
        raise SystemExit("ngspice is not on PATH")
    simulators = {"stock": stock, **({"built": alt_ngspice} if alt_ngspice else {})}
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        work = Path(tmp)
        network = load_network(network_dir)
        x, labels = _samples(network.topology)
        tech, sizing = _technology(tech_name)
        n = min(n_samples, len(x))
        x, labels = x[:n], labels[:n]
        batch_sizes = sorted({-(-n // (r * workers)) for r in rounds})
        result: dict = {"topology": "-".join(map(str, network.topology)), "tech": tech_name,
                        "workers": workers, "samples": n}

        def run(size: int, ngspice: str, name: str) -> tuple[dict, Any]:
            cpu0 = _children_cpu_s()
            start = time.perf_counter()
            report = validate_network(network, tech, x, labels, work / name, sizing=sizing, write_files=False,
                                      settings=RunSettings(batch_size=size, workers=workers, ngspice=ngspice))
            total = time.perf_counter() - start
            return {"samples_per_s": report.summary["samples_per_s"], "end_to_end_s": total,
                    "ngspice_cpu_ms_per_sample": 1e3 * (_children_cpu_s() - cpu0) / n,
                    "peak_mb_per_worker": report.summary["ngspice_program_mb_max"],
                    "agreement": report.summary["agreement"],
                    "batch_seconds": report.summary["dc_batch_elapsed_s"],
                    "rms_v_last_outp": report.summary["layer_errors"][-1]["rms_v"]}, report

        batched: dict[str, dict[int, dict]] = {k: {} for k in simulators}
        reports: dict[str, Any] = {}
        for size in batch_sizes:
            runs: dict[str, list[dict]] = {k: [] for k in simulators}
            for rep in range(repeat):
                for key, exe in simulators.items():
                    fig, reports[key] = run(size, exe, f"{key}{size}" + (f"_{rep}" if rep else ""))
                    if key != "stock":
                        fig["max_abs_diff_from_stock_v"] = max(
                            float(np.max(np.abs(getattr(a, k) - getattr(b, k))))
                            for a, b in zip(reports[key].spice, reports["stock"].spice) for k in ("outn", "outp"))
                    runs[key].append(fig)
            for key in simulators:
                ranked = sorted(runs[key], key=lambda f: f["samples_per_s"])
                batched[key][size] = {**ranked[len(ranked) // 2],
                                      "samples_per_s_runs": [f["samples_per_s"] for f in runs[key]]}
        conductances = network.effective_conductances()
        saves = [*network_output_saves(conductances), Save("i", "dd"), Save("i", "ss")]
        decks = [network_deck(tech, sizing, conductances, dc_input_sources(x[s]), [Op()], saves)
                 for s in range(min(n_baseline, n))]
        cpu0 = _children_cpu_s()
        start = time.perf_counter()
        outcomes = simulate_many(decks, SimOptions(keep="never", ngspice=stock), workers=workers)
        elapsed = time.perf_counter() - start
        failed = sum(isinstance(o, Exception) for o in outcomes)
        baseline = {"samples": len(decks), "failed": failed, "ngspice": "stock",
                    "samples_per_s": len(decks) / elapsed, "ms_per_sample": 1e3 * elapsed / len(decks),
                    "ngspice_cpu_ms_per_sample": 1e3 * (_children_cpu_s() - cpu0) / len(decks)}
        result["per_sample_baseline"] = baseline
        result["simulators"] = {}
        for key, exe in simulators.items():
            best = max(batched[key], key=lambda k: batched[key][k]["samples_per_s"])
            info = simulator_info(exe)
            # the largest deck of the run: Newton iterations and ngspice's parse and set-up time
            plan = stored_plan(work / f"{key}{max(batch_sizes)}", n)
            probe = _probe(network, tech, sizing, x[plan[0]] if plan else x[: max(batch_sizes)], exe)
            result["simulators"][key] = {
                "simulator": {"version": info.version, "klu": info.klu, "predictor": info.predictor,
                              "openmp": info.openmp, "executable": info.executable},
                "batch_size": best, **batched[key][best],
                "speedup_vs_per_sample": batched[key][best]["samples_per_s"] / baseline["samples_per_s"],
                "newton_iterations_per_sample": probe["newton_iterations_per_sample"],
                "largest_deck": probe,
                "batched": {str(k): v for k, v in batched[key].items()},
            }
        s0 = result["simulators"]["stock"]
        for key, r in result["simulators"].items():
            r["vs_stock"] = r["samples_per_s"] / s0["samples_per_s"]
        for k in ("samples_per_s", "speedup_vs_per_sample", "batch_size"):  # the stock figures, as before
            result[k] = s0[k]
        result["spice_accuracy"] = reports["stock"].summary["spice_accuracy"]
        result["model_accuracy"] = reports["stock"].summary["model_accuracy"]
        if n_transient:
            result["transient"] = _transient(network, tech, sizing, x[:n_transient], labels[:n_transient], work, workers)
    return result


_STAT = re.compile(r"^(Total iterations|Circuit Equations|Total analysis time \(seconds\)|Total elapsed time \(seconds\)|"
                   r"Netlist loading time|Subckt and Param expansion time|Netlist parsing time)\s*=\s*([0-9.eE+-]+)",
                   re.MULTILINE)


def _probe(network: Any, tech: Any, sizing: Any, x: np.ndarray, ngspice: str) -> dict:
    """One batch deck through ``ngspice`` with its accounting on (``set acct``): Newton iterations and
    how long ngspice spends reading and setting up the deck before the analysis starts."""
    from memspice.netlist.emit import emit
    from memspice.sim import SimOptions, simulate_text
    from memspice.validate.decks import NetworkCircuit, dc_batch_deck
    from memspice.validate.nonideal import NonIdeality, apply_device_nonidealities

    device = network.calibration.device
    draw = apply_device_nonidealities(network.effective_conductances(),
                                      NonIdeality(g_min_siemens=device.g_min_siemens, g_max_siemens=device.g_max_siemens))
    deck = dc_batch_deck(NetworkCircuit(tech, sizing, draw.conductances), x)
    cpu0, start = _children_cpu_s(), time.perf_counter()
    result = simulate_text(emit(deck), deck.model_roots, (*deck.settings, ("acct", "")),
                           SimOptions(keep="never", ngspice=ngspice, timeout_s=3600))
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu0
    stats = {name: float(value) for name, value in _STAT.findall(result.output)}
    total, analysis = stats.get("Total elapsed time (seconds)"), stats.get("Total analysis time (seconds)")
    return {"samples": len(x), "equations": stats.get("Circuit Equations"), "wall_s": wall,
            "cpu_ms_per_sample": 1e3 * cpu / len(x),  # one deck alone: compare with the batched run's figure
            "newton_iterations_per_sample": stats["Total iterations"] / len(x) if "Total iterations" in stats else None,
            "analysis_s": analysis, "ngspice_elapsed_s": total,
            "setup_s": None if total is None or analysis is None else total - analysis,
            "netlist_load_s": stats.get("Netlist loading time"), "netlist_parse_s": stats.get("Netlist parsing time"),
            "subckt_expansion_s": stats.get("Subckt and Param expansion time")}


#: The CNN of the large-deck figures: a 14x14 MNIST-sized image through two conv + pool stages.
CNN_LAYERS = "conv 8 k3 -> pool 2 -> conv 16 k3 -> pool 2 -> flatten -> dense 10"


def cnn_deck(samples: int, alt_ngspice: str | None, stock: bool = True) -> dict:
    """The largest flat deck memspice writes for a CNN (random conductances in the device window):
    how much CPU Python takes to build and write it, and per simulator ngspice's set-up (parse) time,
    analysis time, time per sweep point and peak memory (stock ngspice, then ``alt_ngspice``).

    Per sweep point = (CPU of the ``samples``-point deck − CPU of a one-point deck) / (samples − 1),
    from ``getrusage(RUSAGE_CHILDREN)``, so it stays meaningful on a shared machine. ``stock=False``
    skips the stock ngspice (``--quick``: its Sparse solver needs minutes for this deck).
    """
    import shutil

    from memspice.characterize.presets import default_sizing
    from memspice.circuit.deck import Dc, Sweep
    from memspice.circuit.builders import INDEX_NODE
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.netlist.emit import emit
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
    from memspice.sim import SimOptions, simulate_text
    from memspice.sim.info import simulator_info
    from memspice.tech.technology import builtin
    from memspice.train.conv_circuit import batch_deck
    from memspice.train.conv_io import TrainedCrossbarNetwork

    spec = NetworkSpec((1, 14, 14), (Conv2d(8, 3), AvgPool2d(2), Conv2d(16, 3), AvgPool2d(2), Flatten(), Dense(10)))
    cal = phax_reference_calibration()
    rng = np.random.default_rng(0)
    g = tuple(rng.uniform(cal.device.g_min_siemens, cal.device.g_max_siemens, p.theta_shape) for p in spec.plans)
    network = TrainedCrossbarNetwork(spec, g, cal)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (samples, 196))
    tech, sizing = builtin(), default_sizing("builtin")
    start = time.process_time()  # CPU of this process: Python's share stays meaningful on a shared machine
    deck = batch_deck(network, tech, sizing, x)
    built = time.process_time()
    text = emit(deck)
    written = time.process_time()
    one_point = emit(dataclasses.replace(deck, analyses=(Dc(Sweep(INDEX_NODE, 0, 0, 1)),)))
    result: dict = {"layers": CNN_LAYERS, "samples": samples,
                    "devices": sum(1 for line in text.splitlines() if line.startswith("R")),
                    "transistors": sum(1 for line in text.splitlines() if line.startswith("M")),
                    "deck_mb": len(text) / 1e6, "python_build_cpu_s": built - start, "python_emit_cpu_s": written - built,
                    "simulators": {}}
    for key, exe in (("stock", shutil.which("ngspice") if stock else None), ("built", alt_ngspice)):
        if exe is None:
            continue
        info = simulator_info(exe)
        runs = {}
        for name, deck_text in (("one_point", one_point), ("sweep", text)):
            cpu0 = _children_cpu_s()
            res = simulate_text(deck_text, deck.model_roots, (*deck.settings, ("acct", "")),
                                SimOptions(keep="never", ngspice=exe, timeout_s=7200))
            stats = {k: float(v) for k, v in _STAT.findall(res.output)}
            size = re.search(r"Maximum ngspice program size\s*=\s*([0-9.]+)\s*MB", res.output)
            runs[name] = {"wall_s": res.elapsed_s, "cpu_s": _children_cpu_s() - cpu0,
                          "iterations": stats.get("Total iterations"),
                          "setup_s": stats["Total elapsed time (seconds)"] - stats["Total analysis time (seconds)"],
                          "netlist_parse_s": stats.get("Netlist parsing time"),
                          "analysis_s": stats.get("Total analysis time (seconds)"),
                          "peak_mb": float(size.group(1)) if size else None}
        one, sweep = runs["one_point"], runs["sweep"]
        result["simulators"][key] = {
            "simulator": {"version": info.version, "klu": info.klu, "predictor": info.predictor},
            "equations": stats.get("Circuit Equations"), "wall_s": sweep["wall_s"], "cpu_s": sweep["cpu_s"],
            "setup_s": sweep["setup_s"], "netlist_parse_s": sweep["netlist_parse_s"], "analysis_s": sweep["analysis_s"],
            "one_point_cpu_s": one["cpu_s"],
            "cpu_s_per_point": (sweep["cpu_s"] - one["cpu_s"]) / max(samples - 1, 1),
            "newton_iterations_per_point": (sweep["iterations"] - one["iterations"]) / max(samples - 1, 1),
            "peak_mb": sweep["peak_mb"]}
    return result


#: The transient time-step bound before it became period/200: the baseline of the transient figures.
BASELINE_POINTS_PER_PERIOD = 1000


def _transient(network: Any, tech: Any, sizing: Any, x: np.ndarray, labels: np.ndarray, work: Path,
               workers: int) -> dict:
    """Transient samples/s at the default time-step bound and at the former one, and how far apart."""
    from memspice.validate.api import RunSettings, validate_network
    from memspice.validate.decks import TransientSpec

    runs = {}
    for name, spec in (("default", TransientSpec()),
                       ("baseline", TransientSpec(points_per_period=BASELINE_POINTS_PER_PERIOD))):
        report = validate_network(network, tech, x, labels, work / f"tran_{name}", sizing=sizing, write_files=False,
                                  settings=RunSettings(batch_size=len(x), workers=workers,
                                                       transient_samples=len(x), transient=spec))
        elapsed = report.summary["transient"]["elapsed_s"]
        runs[name] = {"points_per_period": spec.points_per_period, "elapsed_s": elapsed,
                      "samples_per_s": len(x) / elapsed, "delay_s": report.transient["delay_s"],
                      "energy_j": report.transient["energy_j"]}
    a, b = runs["default"], runs["baseline"]
    both = np.isfinite(a["delay_s"]) & np.isfinite(b["delay_s"])
    return {"samples": len(x), "period_s": TransientSpec().period_s,
            "settled": int(np.isfinite(a["delay_s"]).sum()),
            "delay_s_mean": float(np.nanmean(a["delay_s"])) if both.any() else None,
            "max_abs_delay_diff_s": float(np.max(np.abs(a["delay_s"] - b["delay_s"])[both])) if both.any() else None,
            "max_rel_energy_diff": float(np.max(np.abs(a["energy_j"] / b["energy_j"] - 1))),
            "speedup_vs_baseline": b["elapsed_s"] / a["elapsed_s"],
            **{name: {k: v for k, v in run.items() if k not in ("delay_s", "energy_j")} for name, run in runs.items()}}


def _children_cpu_s() -> float:
    """User + system CPU time of all finished child processes (s)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Throughput the project aims for on 2 cores, by simulator: samples/s, or a ratio to the stock
#: ngspice in the same run ("x_stock").
TARGETS = {"64-32-10/builtin": {"stock": {"samples_per_s": 1100}, "built": {"samples_per_s": 2400}},
           "196-100-10/builtin": {"built": {"x_stock": 3.0}}}

#: The large-deck section's name and sweep points (full run, ``--quick``).
CNN_NAME = "cnn-14x14/builtin"
CNN_SAMPLES = {False: 8, True: 3}

CONFIGS = {
    "64-32-10/builtin": ((64, 32, 10), "builtin"),
    "196-100-10/builtin": ((196, 100, 10), "builtin"),
    "64-32-10/sky130": ((64, 32, 10), "sky130"),
}


def _child(name: str, network_dir: Path, quick: bool, workers: int, alt_ngspice: str | None = None,
           repeat: int = 1) -> dict:
    """One configuration; batch sizes split the samples evenly over the workers (1, 2 or 4 rounds)."""
    topology, tech = CONFIGS[name]
    big = topology[0] > 100
    if quick:
        n, base, rounds = (250, 8, [1]) if big or tech == "sky130" else (1000, 20, [1])
        n_transient = 0 if big or tech == "sky130" else 4
    else:
        n, base, rounds = (2000, 60, [4, 2, 1]) if not big else (2000, 60, [2, 1])
        if tech == "sky130":
            n, base, rounds = 1000, 30, [1]
        n_transient = 8
    return measure(network_dir, tech, n, base, rounds, workers, alt_ngspice, n_transient, repeat)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in a child process and print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (under a minute)")
    parser.add_argument("--workers", type=int, default=2, help="ngspice processes at once (default: 2)")
    parser.add_argument("--alt-ngspice", default=None, metavar="EXE",
                        help="also run the best batched configuration with this ngspice (default: "
                             f"{DEFAULT_ALT.relative_to(REPO)} when scripts/build_ngspice.sh has built it)")
    parser.add_argument("--no-alt", action="store_true", help="do not look for a second ngspice build")
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help="folder of MNIST IDX files for 196-100-10 (default: $MEMSPICE_MNIST_DIR, else "
                             "the cache `memspice data mnist` fills; without MNIST: random conductances)")
    parser.add_argument("--no-cnn", action="store_true", help="skip the large CNN deck")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run every batch size N times (both simulators interleaved) and report the median run")
    parser.add_argument("--only", choices=sorted([*CONFIGS, CNN_NAME]), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--network", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.mnist_dir is not None:  # the child processes read it from the environment
        os.environ["MEMSPICE_MNIST_DIR"] = str(args.mnist_dir.resolve())
    alt = None if args.no_alt else (args.alt_ngspice or os.environ.get("MEMSPICE_NGSPICE")
                                     or (str(DEFAULT_ALT) if os.access(DEFAULT_ALT, os.X_OK) else None))
    if args.only == CNN_NAME:
        print(json.dumps(cnn_deck(CNN_SAMPLES[args.quick], alt, stock=not args.quick or alt is None)))
        return 0
    if args.only:
        print(json.dumps(_child(args.only, args.network, args.quick, args.workers, alt, args.repeat)))
        return 0
    from memspice.errors import ConfigError
    from memspice.tech.technology import find_sky130

    names = list(CONFIGS)
    try:
        find_sky130()
    except ConfigError:
        names.remove("64-32-10/sky130")
    load_before = os.getloadavg()
    results = {}
    networks: dict[tuple[tuple[int, ...], str], tuple[Path, str]] = {}
    keep = tempfile.TemporaryDirectory(prefix="bench-validate-nets-")
    for name in names:
        topology, tech_name = CONFIGS[name]
        if (topology, tech_name) not in networks:
            directory = Path(keep.name) / name.replace("/", "_")
            networks[(topology, tech_name)] = (directory, prepare_network(topology, tech_name, directory, args.quick))
        network_dir, origin = networks[(topology, tech_name)]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--workers", str(args.workers),
               "--network", str(network_dir), "--repeat", str(args.repeat)]
        if args.quick:
            cmd.append("--quick")
        cmd += ["--alt-ngspice", alt] if alt else ["--no-alt"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            results[name] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            print(f"{name}: FAILED {results[name]['error']}")
            continue
        r = results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r["network"] = origin
        b = r["per_sample_baseline"]
        print(f"{name} ({r['network']}), {r['samples']} samples, {args.workers} workers; one process per sample "
              f"(stock ngspice): {b['samples_per_s']:.1f} samples/s ({b['ms_per_sample']:.1f} ms/sample)")
        for key, fig in r["simulators"].items():
            sim, probe = fig["simulator"], fig["largest_deck"]
            label = f"ngspice-{sim['version']} ({'KLU' if sim['klu'] else 'Sparse'}{', predictor' if sim['predictor'] else ''})"
            diff = (f", outputs within {fig['max_abs_diff_from_stock_v']:.1e} V of stock"
                    if "max_abs_diff_from_stock_v" in fig else "")
            print(f"  {key} {label}: {fig['samples_per_s']:.0f} samples/s (batch {fig['batch_size']}) = "
                  f"{fig['vs_stock']:.2f}x stock, {fig['speedup_vs_per_sample']:.1f}x per-sample; ngspice CPU "
                  f"{fig['ngspice_cpu_ms_per_sample']:.2f} ms/sample, {fig['newton_iterations_per_sample']:.2f} Newton "
                  f"iterations/sample, peak {fig['peak_mb_per_worker']:.0f} MB per worker{diff}")
            print(f"    largest deck ({probe['samples']} samples, {probe['equations']:.0f} equations): set-up "
                  f"{probe['setup_s']:.3f} s (netlist parse {probe['netlist_parse_s']:.3f} s) + analysis "
                  f"{probe['analysis_s']:.3f} s; ngspice alone on it {probe['cpu_ms_per_sample']:.2f} CPU ms/sample; "
                  f"by batch size: "
                  + ", ".join(f"{k}: {v['samples_per_s']:.0f}/s" for k, v in fig["batched"].items()))
            goal = TARGETS.get(name, {}).get(key)
            if goal:
                met = (fig["samples_per_s"] >= goal["samples_per_s"] if "samples_per_s" in goal
                       else fig["vs_stock"] >= goal["x_stock"])
                fig["target"] = {**goal, "met": met}
                want = (f">= {goal['samples_per_s']} samples/s" if "samples_per_s" in goal
                        else f">= {goal['x_stock']}x stock")
                print(f"    target {want} on {os.cpu_count()} cores: {'met' if met else 'NOT met'}")
        if "transient" in r:
            t = r["transient"]
            delay = "no sample settled" if t["delay_s_mean"] is None else (
                f"mean delay {1e9 * t['delay_s_mean']:.1f} ns, within {1e9 * t['max_abs_delay_diff_s']:.2f} ns")
            print(f"    transient ({t['samples']} samples, {1e9 * t['period_s']:.0f} ns each): "
                  f"{t['default']['samples_per_s']:.2f} samples/s at {t['default']['points_per_period']} points per period "
                  f"vs {t['baseline']['samples_per_s']:.2f} at {t['baseline']['points_per_period']} "
                  f"→ {t['speedup_vs_baseline']:.1f}×; {t['settled']} settled, {delay}, energy within "
                  f"{t['max_rel_energy_diff']:.1e} (relative)")
    keep.cleanup()
    if not args.no_cnn:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", CNN_NAME, *(["--quick"] if args.quick else []),
               *(["--alt-ngspice", alt] if alt else ["--no-alt"])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            results[CNN_NAME] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            print(f"{CNN_NAME}: FAILED {results[CNN_NAME]['error']}")
        else:
            c = results[CNN_NAME] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{CNN_NAME} ({c['layers']}; random conductances), {c['samples']} sweep points: {c['devices']:,} "
                  f"devices, {c['transistors']:,} transistors, {c['deck_mb']:.1f} MB of deck text; Python builds it in "
                  f"{c['python_build_cpu_s']:.2f} s and writes it in {c['python_emit_cpu_s']:.2f} s (CPU)")
            for key, fig in c["simulators"].items():
                sim = fig["simulator"]
                label = f"ngspice-{sim['version']} ({'KLU' if sim['klu'] else 'Sparse'}{', predictor' if sim['predictor'] else ''})"
                print(f"  {key} {label}: {fig['equations']:.0f} equations; wall {fig['wall_s']:.1f} s, CPU {fig['cpu_s']:.1f} s "
                      f"(one-point deck {fig['one_point_cpu_s']:.1f} s); set-up {fig['setup_s']:.2f} s (parse "
                      f"{fig['netlist_parse_s']:.2f} s), analysis {fig['analysis_s']:.2f} s; "
                      f"{fig['cpu_s_per_point']:.3f} CPU s and {fig['newton_iterations_per_point']:.1f} Newton iterations "
                      f"per sweep point; peak {fig['peak_mb']:.0f} MB")
    line = {"bench": "validate", "quick": args.quick, "workers": args.workers, "repeat": args.repeat, "cpus": os.cpu_count(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "results": results}
    print(json.dumps(line, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
