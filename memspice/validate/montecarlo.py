"""Monte Carlo in SPICE: the same network validated over several seeded draws of the devices.

Each draw is a complete validation run in ``<out>/draw_NNN`` (resumable on its own); the
figures of every draw go into ``draws.csv``, their spread into ``draws.json``, and a plot of
SPICE accuracy against the model's prediction for the same draw into ``draws.png``. Next to
SPICE, every draw reports the trained model run on that draw's conductances, so one can see
whether the (cheap) model-level Monte Carlo of ``memspice.train.evaluate`` would have told
the same story.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.errors import ConfigError
from memspice.io import write_atomic, write_text_atomic
from memspice.validate.api import RunSettings, ValidationReport, validate_network
from memspice.validate.nonideal import NonIdeality
from memspice.safe_io import dumps_strict

#: Columns of ``draws.csv`` whose spread ``draws.json`` reports.
SPREAD_COLUMNS = ("spice_accuracy", "drawn_model_accuracy", "drawn_model_agreement", "ideal_model_agreement")


@dataclass
class MonteCarloRun:
    """The draws of a Monte Carlo validation.

    Attributes:
        table: one row per draw (seed, accuracies, agreements, stuck devices, completeness).
        summary: spread of the figures over the draws (JSON-safe).
        reports: the validation report of each draw, in seed order.
        files: written artifacts by name.
    """

    table: pd.DataFrame
    summary: dict[str, Any]
    reports: list[ValidationReport]
    files: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every batch of every draw finished."""
        return all(r.complete for r in self.reports)


def validate_draws(network: Any, tech: Any, x: np.ndarray, labels: np.ndarray, out_dir: Path, nonideal: NonIdeality,
                   draws: int, settings: RunSettings = RunSettings(), on_draw: Callable[[int, int], None] | None = None,
                   **options: Any) -> MonteCarloRun:
    """Validate ``network`` on ``draws`` device draws, seeds ``nonideal.seed`` … ``+ draws − 1``.

    Args:
        nonideal: variation and/or faults to draw (a draw of nothing would repeat one run).
        on_draw: called with ``(draws done, draws)`` after each draw.
        options: passed on to :func:`~memspice.validate.api.validate_network` (``sizing``,
            ``evaluator``, ``write_files``, ``progress``).
    """
    if int(draws) < 1:
        raise ConfigError(f"the number of draws must be at least 1, got {draws}")
    if not nonideal.any_device_change:
        raise ConfigError("Monte Carlo draws need device variation or faults (--variation, --fault-rate)")
    out_dir = Path(out_dir)
    rows, reports = [], []
    for k in range(int(draws)):
        spec = dataclasses.replace(nonideal, seed=nonideal.seed + k)
        report = validate_network(network, tech, x, labels, out_dir / f"draw_{k:03d}", nonideal=spec,
                                  settings=settings, **options)
        reports.append(report)
        rows.append(_row(spec.seed, report))
        if on_draw:
            on_draw(k + 1, int(draws))
    table = pd.DataFrame(rows)
    summary = {"draws": int(draws), "nonideal": nonideal.as_dict(),
               "seeds": [nonideal.seed, nonideal.seed + int(draws) - 1],
               "complete": bool(table["complete"].all()),
               "model_accuracy_ideal": reports[0].summary.get("model_accuracy")}
    for column in SPREAD_COLUMNS:
        values = table[column].dropna().to_numpy(dtype=float)
        summary[column] = None if not values.size else {
            "mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}
    gap = (table["spice_accuracy"] - table["drawn_model_accuracy"]).abs().dropna()
    summary["max_abs_accuracy_gap_spice_vs_drawn_model"] = float(gap.max()) if len(gap) else None
    run = MonteCarloRun(table, summary, reports)
    if options.get("write_files", True):
        run.files = write_draws(run, out_dir)
    return run


def _row(seed: int, report: ValidationReport) -> dict[str, Any]:
    s = report.summary
    drawn = s.get("drawn_devices_model", {})
    return {"seed": seed, "complete": report.complete, "n_samples": s.get("n_samples", 0),
            "stuck_devices": s.get("stuck_devices", 0), "spice_accuracy": s.get("spice_accuracy"),
            "drawn_model_accuracy": drawn.get("model_accuracy"), "drawn_model_agreement": drawn.get("agreement"),
            "ideal_model_agreement": s.get("agreement")}


def write_draws(run: MonteCarloRun, out_dir: Path) -> dict[str, Path]:
    """``draws.csv``, ``draws.json`` and ``draws.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memspice.validate.report import save_figure

    files = {"draws_csv": write_atomic(out_dir / "draws.csv", lambda tmp: run.table.to_csv(tmp, index=False)),
             "draws_json": write_text_atomic(out_dir / "draws.json", dumps_strict(run.summary, indent=2) + "\n")}
    t = run.table.dropna(subset=["spice_accuracy", "drawn_model_accuracy"])
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.scatter(100 * t["drawn_model_accuracy"], 100 * t["spice_accuracy"], s=18, color="tab:blue", label="draw")
    ideal = run.summary.get("model_accuracy_ideal")
    lo = min([*(100 * t["spice_accuracy"]), *(100 * t["drawn_model_accuracy"])], default=0.0) - 2
    hi = max([*(100 * t["spice_accuracy"]), *(100 * t["drawn_model_accuracy"]), 100 * (ideal or 0.0)], default=100.0) + 2
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    if ideal is not None:
        ax.axhline(100 * ideal, color="tab:green", lw=0.8, label="trained model, ideal devices")
    ax.set(xlabel="model on the drawn devices: accuracy (%)", ylabel="SPICE accuracy (%)",
           title=f"{run.summary['draws']} device draws")
    ax.legend(fontsize=7, loc="lower right")
    files["draws_png"] = save_figure(fig, out_dir / "draws.png", plt)
    return files
