"""Benchmark of ``memspice validate``: batched SPICE samples/s against one ngspice process per sample.

Each configuration runs in its own child process. Memory per worker is ngspice's own report of
its peak program size (``getrusage(RUSAGE_CHILDREN)`` would include the forked Python image);
CPU time per sample comes from ``getrusage(RUSAGE_CHILDREN)``, which stays meaningful when
other jobs share the cores. Figures: 64-32-10 on the built-in card (trained on digits), 196-100-10 (trained
on pooled MNIST when ``--mnist-dir``, ``$MEMSPICE_MNIST_DIR`` or the cache that
``memspice data mnist`` fills holds it, else random conductances), and sky130
(tt, LVT) when its models are installed. Prints absolute figures and ratios, then ONE JSON line.

With a second ngspice build (``--alt-ngspice EXE``, or ``.ngspice-predictor/bin/ngspice`` when
``scripts/build_ngspice.sh`` has made it), every batched run is repeated with it in the same
run, each right after Debian's: its best throughput, its ratios to Debian's best and to the
per-sample baseline, and how far its outputs are from Debian's.

Transient mode (8 samples; 4 and the built-in 64-32-10 only with ``--quick``) runs at the default
time-step bound and at the former one (period/1000) in the same run: samples/s, the ratio, and
how far delays and energies move.

Usage: ``python scripts/bench_validate.py [--quick] [--workers 2] [--alt-ngspice EXE]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: Where scripts/build_ngspice.sh installs ngspice built with --enable-predictor.
DEFAULT_ALT = REPO / ".ngspice-predictor" / "bin" / "ngspice"


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
            workers: int, alt_ngspice: str | None = None, n_transient: int = 0) -> dict:
    """Batched and per-sample throughput of one configuration (runs in a child process).

    Each entry of ``rounds`` gives one batch size: the samples split evenly over the workers in
    that many rounds. ``n_transient`` samples also run in transient mode, at the default
    time-step bound and at :data:`BASELINE_POINTS_PER_PERIOD`.
    """
    from memspice.circuit.builders import dc_input_sources, network_deck, network_output_saves
    from memspice.circuit.deck import Op, Save
    from memspice.sim import SimOptions, simulate_many
    from memspice.train.network_io import load_network
    from memspice.validate.api import RunSettings, validate_network

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
                    "agreement": report.summary["agreement"],
                    "batch_seconds": report.summary["dc_batch_elapsed_s"],
                    "rms_v_last_outp": report.summary["layer_errors"][-1]["rms_v"]}, report

        batched, alt_batched = {}, {}
        for size in batch_sizes:
            batched[size], report = run(size, "ngspice", f"run{size}")
            if alt_ngspice:
                alt_batched[size], alt = run(size, alt_ngspice, f"alt{size}")
                alt_batched[size]["max_abs_diff_from_default_v"] = max(
                    float(np.max(np.abs(getattr(a, k) - getattr(b, k))))
                    for a, b in zip(alt.spice, report.spice) for k in ("outn", "outp"))
        best = max(batched, key=lambda k: batched[k]["samples_per_s"])
        if alt_ngspice:
            alt_best = max(alt_batched, key=lambda k: alt_batched[k]["samples_per_s"])
            result["alt_ngspice"] = {"ngspice": alt_ngspice, "batch_size": alt_best,
                                     **alt_batched[alt_best],
                                     "vs_default_batched": (alt_batched[alt_best]["samples_per_s"]
                                                            / batched[best]["samples_per_s"]),
                                     "batched": {str(k): v for k, v in alt_batched.items()}}
        result["batched"] = {str(k): v for k, v in batched.items()}
        result["best_batch_size"] = best
        result["samples_per_s"] = batched[best]["samples_per_s"]
        result["spice_accuracy"] = report.summary["spice_accuracy"]
        result["model_accuracy"] = report.summary["model_accuracy"]
        conductances = network.effective_conductances()
        saves = [*network_output_saves(conductances), Save("i", "dd"), Save("i", "ss")]
        decks = [network_deck(tech, sizing, conductances, dc_input_sources(x[s]), [Op()], saves)
                 for s in range(min(n_baseline, n))]
        cpu0 = _children_cpu_s()
        start = time.perf_counter()
        outcomes = simulate_many(decks, SimOptions(keep="never"), workers=workers)
        elapsed = time.perf_counter() - start
        failed = sum(isinstance(o, Exception) for o in outcomes)
        result["per_sample_baseline"] = {"samples": len(decks), "failed": failed,
                                         "samples_per_s": len(decks) / elapsed, "ms_per_sample": 1e3 * elapsed / len(decks),
                                         "ngspice_cpu_ms_per_sample": 1e3 * (_children_cpu_s() - cpu0) / len(decks)}
        result["speedup_vs_per_sample"] = result["samples_per_s"] / result["per_sample_baseline"]["samples_per_s"]
        if "alt_ngspice" in result:
            result["alt_ngspice"]["speedup_vs_per_sample"] = (result["alt_ngspice"]["samples_per_s"]
                                                              / result["per_sample_baseline"]["samples_per_s"])
        # getrusage(RUSAGE_CHILDREN) would count the forked Python image; ngspice reports its own peak.
        result["ngspice_peak_program_mb"] = report.summary["ngspice_program_mb_max"]
        if n_transient:
            result["transient"] = _transient(network, tech, sizing, x[:n_transient], labels[:n_transient], work, workers)
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


#: Throughput the project aims for (samples/s, speed-up over one process per sample), 2 cores.
TARGETS = {"64-32-10/builtin": (1400, 30.0)}

CONFIGS = {
    "64-32-10/builtin": ((64, 32, 10), "builtin"),
    "196-100-10/builtin": ((196, 100, 10), "builtin"),
    "64-32-10/sky130": ((64, 32, 10), "sky130"),
}


def _child(name: str, network_dir: Path, quick: bool, workers: int, alt_ngspice: str | None = None) -> dict:
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
    return measure(network_dir, tech, n, base, rounds, workers, alt_ngspice, n_transient)


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
    parser.add_argument("--only", choices=sorted(CONFIGS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--network", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mnist_dir is not None:  # the child processes read it from the environment
        os.environ["MEMSPICE_MNIST_DIR"] = str(args.mnist_dir.resolve())
    alt = None if args.no_alt else args.alt_ngspice or (str(DEFAULT_ALT) if os.access(DEFAULT_ALT, os.X_OK) else None)
    if args.only:
        print(json.dumps(_child(args.only, args.network, args.quick, args.workers, alt)))
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
               "--network", str(network_dir)]
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
        print(f"{name} ({r['network']}): {r['samples_per_s']:.0f} samples/s batched "
              f"(batch {r['best_batch_size']}, {r['samples']} samples, {args.workers} workers) vs "
              f"{b['samples_per_s']:.1f} samples/s one process per sample ({b['ms_per_sample']:.1f} ms/sample) "
              f"→ {r['speedup_vs_per_sample']:.1f}×; ngspice peak program size {r['ngspice_peak_program_mb']:.0f} MB per worker; "
              f"SPICE/model agreement {100 * r['batched'][str(r['best_batch_size'])]['agreement']:.1f} %")
        if name in TARGETS:
            rate, ratio = TARGETS[name]
            r["target"] = {"samples_per_s": rate, "speedup": ratio,
                           "met": r["samples_per_s"] >= rate and r["speedup_vs_per_sample"] >= ratio}
            print(f"    target (issue): >= {rate} samples/s and >= {ratio}x on {os.cpu_count()} cores: "
                  f"{'met' if r['target']['met'] else 'NOT met'}")
        if "alt_ngspice" in r:
            a = r["alt_ngspice"]
            print(f"    with {a['ngspice']}: {a['samples_per_s']:.0f} samples/s (best batch {a['batch_size']}; "
                  f"{a['vs_default_batched']:.2f}x Debian's build's best, {a['speedup_vs_per_sample']:.1f}x per-sample), "
                  f"ngspice CPU {a['ngspice_cpu_ms_per_sample']:.2f} ms/sample, outputs within "
                  f"{a['max_abs_diff_from_default_v']:.1e} V of Debian's build; by batch size: "
                  + ", ".join(f"{k}: {v['samples_per_s']:.0f}/s" for k, v in a["batched"].items()))
            if name in TARGETS:
                rate, ratio = TARGETS[name]
                a["target_met"] = a["samples_per_s"] >= rate and a["speedup_vs_per_sample"] >= ratio
                print(f"    target with this build: {'met' if a['target_met'] else 'NOT met'}")
        if "transient" in r:
            t = r["transient"]
            delay = "no sample settled" if t["delay_s_mean"] is None else (
                f"mean delay {1e9 * t['delay_s_mean']:.1f} ns, within {1e9 * t['max_abs_delay_diff_s']:.2f} ns")
            print(f"    transient ({t['samples']} samples, {1e9 * t['period_s']:.0f} ns each): "
                  f"{t['default']['samples_per_s']:.2f} samples/s at {t['default']['points_per_period']} points per period "
                  f"vs {t['baseline']['samples_per_s']:.2f} at {t['baseline']['points_per_period']} "
                  f"→ {t['speedup_vs_baseline']:.1f}×; {t['settled']} settled, {delay}, energy within "
                  f"{t['max_rel_energy_diff']:.1e} (relative)")
        for size, fig in r["batched"].items():
            print(f"    batch {size}: {fig['samples_per_s']:.0f} samples/s, end-to-end {fig['end_to_end_s']:.2f} s, "
                  f"ngspice CPU {fig['ngspice_cpu_ms_per_sample']:.2f} ms/sample "
                  f"(per-sample baseline: {b['ngspice_cpu_ms_per_sample']:.1f} ms/sample); "
                  f"batch wall times {min(fig['batch_seconds']):.2f}-{max(fig['batch_seconds']):.2f} s")
    keep.cleanup()
    line = {"bench": "validate", "quick": args.quick, "workers": args.workers, "cpus": os.cpu_count(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "results": results}
    print(json.dumps(line, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
