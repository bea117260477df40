"""Benchmark: training recipes for the digits default, circuit against float, on the validation split.

Runs the train stage of ``memspice run`` (the coupled circuit model and its float tanh baseline of
the same topology) for each recipe and each (training seed, split seed) pair, on one calibration:
``RUN/calibrate/calibration.json`` of a finished default ``memspice run --run-dir RUN``. A
recipe is a set of ``[training]`` keys over the defaults; the first, ``{}``, is the baseline
(today's defaults). The training seed also draws the validation split (10 % of the training
images, 144 on digits), the split seed the 80/20 train/test split. Recipes are compared on the
validation split only; the test accuracies are printed for the record.

The coupled model agrees with SPICE on every digits test image (the closed loop stops at round 0),
so its accuracy is the circuit's.

Usage: ``python scripts/bench_digits_recipes.py --run-dir RUN [--recipes FILE.json]
[--train-seeds 0,1,2] [--split-seeds 0,1] [--quick]`` (``FILE.json``: ``{"name": {"learning_rate":
0.02}, ...}``). ``--quick`` (< 1 min): two recipes, the first seed pair, 3 epochs. Prints one row
per run, a table of means ± standard deviations, with each recipe's circuit validation accuracy
paired with the first recipe's on the same seed pairs (difference ± standard deviation over the
pairs, and its standard error), then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

#: The recipes of docs/digits-default.md (keys over the ``[training]`` defaults of the run).
RECIPES: dict[str, dict] = {
    "defaults": {},
    "learning_rate 0.003, float 0.003 (former defaults)": {"learning_rate": 0.003, "float_learning_rate": 0.0},
    "learning_rate 0.01": {"learning_rate": 0.01, "float_learning_rate": 0.0},
    "learning_rate 0.02": {"learning_rate": 0.02, "float_learning_rate": 0.0},
    "learning_rate 0.04": {"learning_rate": 0.04, "float_learning_rate": 0.0},
}
TRAIN_SEEDS, SPLIT_SEEDS = (0, 1, 2), (0, 1)
KEYS = ("model_val_accuracy", "float_baseline_val_accuracy", "model_test_accuracy", "float_baseline_test_accuracy",
        "best_epoch")


def run_one(job: tuple) -> dict:
    """The train stage for one recipe and seed pair, in a scratch run directory."""
    from memspice.pipeline.config import config_from_dict
    from memspice.pipeline.stages import StageContext
    from memspice.pipeline.train_stage import run_train

    name, recipe, train_seed, split_seed, calibration, epochs = job
    training = {**recipe, "seed": train_seed, **({"epochs": epochs} if epochs else {})}
    config = config_from_dict({"training": training, "dataset": {"seed": split_seed}})
    work = Path(tempfile.mkdtemp(prefix="bench_digits_recipes_"))
    try:
        (work / "calibrate").mkdir()
        shutil.copy(calibration, work / "calibrate" / "calibration.json")
        start = time.perf_counter()
        summary = run_train(StageContext(config, work, {}, quiet=True))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"recipe": name, "train_seed": train_seed, "split_seed": split_seed, "seconds": seconds,
            **{k: summary[k] for k in KEYS}}


def seed_pairs(train_seeds: tuple[int, ...], split_seeds: tuple[int, ...]) -> list[tuple[int, int]]:
    """(training seed, split seed) pairs, split seed outermost (the order of the recorded tables)."""
    return [(t, s) for s in split_seeds for t in train_seeds]


def seed_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` → (0, 1, 2): distinct non-negative integers."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct non-negative integers, got {text!r}")
    return seeds


def table(rows: list[dict]) -> list[dict]:
    """Per recipe: means (%), the spread of circuit − float over the seed pairs, and the circuit's
    validation accuracy against the first recipe's on the same seed pairs (every recipe runs them all)."""
    out = []
    reference = {(r["train_seed"], r["split_seed"]): 100 * r["model_val_accuracy"]
                 for r in rows if r["recipe"] == rows[0]["recipe"]}
    for name in dict.fromkeys(r["recipe"] for r in rows):
        rs = [r for r in rows if r["recipe"] == name]

        def pct(key: str) -> list[float]:
            return [100 * r[key] for r in rs]

        gap_val = [a - b for a, b in zip(pct("model_val_accuracy"), pct("float_baseline_val_accuracy"))]
        gap_test = [a - b for a, b in zip(pct("model_test_accuracy"), pct("float_baseline_test_accuracy"))]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        paired = [100 * r["model_val_accuracy"] - reference[r["train_seed"], r["split_seed"]] for r in rs]
        out.append({"recipe": name, "runs": len(rs),
                     "circuit_val": statistics.mean(pct("model_val_accuracy")),
                     "float_val": statistics.mean(pct("float_baseline_val_accuracy")),
                     "gap_val": statistics.mean(gap_val), "gap_val_sd": sd(gap_val),
                     "circuit_test": statistics.mean(pct("model_test_accuracy")),
                     "float_test": statistics.mean(pct("float_baseline_test_accuracy")),
                     "gap_test": statistics.mean(gap_test), "gap_test_sd": sd(gap_test),
                     "circuit_val_vs_first": statistics.mean(paired), "circuit_val_vs_first_sd": sd(paired),
                     "circuit_val_vs_first_se": sd(paired) / len(paired) ** 0.5})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="a finished default `memspice run` (its calibrate/calibration.json is used)")
    parser.add_argument("--recipes", type=Path, default=None, help="JSON object of name → [training] keys")
    parser.add_argument("--workers", type=int, default=2, help="processes at once (default: 2; 1 = in this process)")
    parser.add_argument("--train-seeds", type=seed_list, default=TRAIN_SEEDS,
                        help="training seeds (they draw the validation split), comma-separated (default: 0,1,2)")
    parser.add_argument("--split-seeds", type=seed_list, default=SPLIT_SEEDS,
                        help="split seeds (they draw the train/test split), comma-separated (default: 0,1)")
    parser.add_argument("--quick", action="store_true", help="two recipes, the first seed pair, 3 epochs")
    args = parser.parse_args(argv)
    calibration = args.run_dir / "calibrate" / "calibration.json"
    if not calibration.is_file():
        parser.error(f"{calibration} not found: run `memspice run --run-dir {args.run_dir}` first")
    recipes = json.loads(args.recipes.read_text()) if args.recipes else RECIPES
    seeds = seed_pairs(args.train_seeds, args.split_seeds)
    seeds, epochs = (seeds[:1], 3) if args.quick else (seeds, 0)
    if args.quick:
        recipes = dict(list(recipes.items())[:2])
    jobs = [(name, recipe, t, s, calibration, epochs) for t, s in seeds for name, recipe in recipes.items()]
    started = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(args.workers) if args.workers > 1 else nullcontext() as pool:
        for row in (pool.map(run_one, jobs) if pool else map(run_one, jobs)):
            rows.append(row)
            print(f"{row['recipe']:55s} seeds {row['train_seed']},{row['split_seed']}: circuit / float validation "
                  f"{100 * row['model_val_accuracy']:.2f} / {100 * row['float_baseline_val_accuracy']:.2f} %, test "
                  f"{100 * row['model_test_accuracy']:.2f} / {100 * row['float_baseline_test_accuracy']:.2f} %, "
                  f"{row['seconds']:.0f} s", flush=True)
    summary = table(rows)
    print(f"\n{'recipe':55s} runs  circuit val  float val  circuit-float val    (test, for the record)")
    for s in summary:
        print(f"{s['recipe']:55s} {s['runs']:4d}  {s['circuit_val']:9.2f}  {s['float_val']:9.2f}  "
              f"{s['gap_val']:+6.2f} ± {s['gap_val_sd']:.2f}  ({s['gap_test']:+.2f} ± {s['gap_test_sd']:.2f}); "
              f"circuit val vs the first recipe {s['circuit_val_vs_first']:+.2f} ± {s['circuit_val_vs_first_sd']:.2f} "
              f"(standard error {s['circuit_val_vs_first_se']:.2f}) points")
    print(json.dumps({"runs": rows, "recipes": summary, "seconds": time.perf_counter() - started}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
