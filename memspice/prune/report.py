"""The pruning report: one row per network (dense first), as CSV, Markdown and a Pareto plot.

Each row holds the hardware counts of :class:`memspice.prune.measure.HardwareCounts`, the model
accuracy on the test images and, when the networks were simulated, the SPICE figures of
:class:`memspice.prune.measure.SpiceFigures`; ratios are against the first (dense) row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Columns of the report, in order (those a row lacks are left empty).
COLUMNS = (
    "network", "method", "devices", "density", "compression", "weights", "weight_compression",
    "area_saved", "neurons",
    "tiles_built", "tiles_total", "model_accuracy", "spice_accuracy", "agreement",
    "rail_power_w", "input_power_w", "static_power_w", "energy_per_inference_j",
    "energy_to_settle_j", "delay_s", "transient_samples", "accuracy_change_points", "power_ratio",
)

CSV_NAME = "prune_report.csv"
MARKDOWN_NAME = "prune_report.md"
PLOT_NAME = "pareto.png"


def with_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``accuracy_change_points`` and ``power_ratio`` against the first row."""
    base = rows[0]
    key = "spice_accuracy" if base.get("spice_accuracy") is not None else "model_accuracy"
    out = []
    for row in rows:
        row = dict(row)
        if row.get(key) is not None and base.get(key) is not None:
            row["accuracy_change_points"] = 100 * (row[key] - base[key])
        if row.get("static_power_w") and base.get("static_power_w"):
            row["power_ratio"] = base["static_power_w"] / row["static_power_w"]
        out.append(row)
    return out


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV (SI units: W, J; accuracies and shares as fractions)."""
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return buffer.getvalue()


def _fmt(value: Any, kind: str) -> str:
    if value is None or value == "":
        return "–"
    if kind == "pct":
        return f"{100 * value:.2f} %"
    if kind == "uw":
        return f"{1e6 * value:.1f}"
    if kind == "pj":
        return f"{1e12 * value:.1f}"
    if kind == "x":
        return f"{value:.2f}×"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pts":
        return f"{value:+.2f}"
    return str(value)


def markdown_text(rows: Sequence[dict[str, Any]], title: str = "Pruning report",
                  notes: Sequence[str] = ()) -> str:
    """A Markdown report: the table, then the notes."""
    spec = [("network", "network", ""), ("method", "method", ""), ("devices", "devices", "int"),
            ("compression", "compression", "x"), ("weights (θ)", "weights", "int"),
            ("weight compression", "weight_compression", "x"), ("area saved", "area_saved", "pct"),
            ("neurons", "neurons", "int"), ("model acc.", "model_accuracy", "pct"),
            ("SPICE acc.", "spice_accuracy", "pct"), ("Δ (points)", "accuracy_change_points", "pts"),
            ("agreement", "agreement", "pct"), ("rails (µW)", "rail_power_w", "uw"),
            ("inputs (µW)", "input_power_w", "uw"), ("static power (µW)", "static_power_w", "uw"),
            ("power ratio", "power_ratio", "x"), ("energy/inference (pJ)", "energy_per_inference_j", "pj")]
    lines = [f"# {title}", "",
             "| " + " | ".join(h for h, _, _ in spec) + " |",
             "|" + "---|" * len(spec)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k), kind) for _, k, kind in spec) + " |")
    lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines).rstrip() + "\n"


def pareto_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Accuracy against compression and against energy per inference, one point per network
    (matplotlib imported here, lazily)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "spice_accuracy" if all(r.get("spice_accuracy") is not None for r in rows) else "model_accuracy"
    label = "SPICE accuracy (%)" if key == "spice_accuracy" else "model accuracy (%)"
    energy = all(r.get("energy_per_inference_j") is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if energy else 1, figsize=(10 if energy else 5, 4), squeeze=False)
    markers = {"dense": "s", "csrram": "o", "admm": "^"}
    for row in rows:
        marker = markers.get(str(row.get("method")), "x")
        axes[0, 0].plot(row["compression"], 100 * row[key], marker, label=row["network"])
        if energy:
            axes[0, 1].plot(1e12 * row["energy_per_inference_j"], 100 * row[key], marker,
                            label=row["network"])
    axes[0, 0].set_xscale("log")
    axes[0, 0].set_xlabel("compression (dense devices / devices built)")
    axes[0, 0].set_ylabel(label)
    axes[0, 0].grid(True, alpha=0.3)
    if energy:
        axes[0, 1].set_xlabel("energy per inference (pJ)")
        axes[0, 1].set_ylabel(label)
        axes[0, 1].grid(True, alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def report_writers(rows: Sequence[dict[str, Any]], out: Path, title: str,
                   notes: Sequence[str] = ()) -> list[tuple[Path, Any]]:
    """``(path, writer)`` pairs for :func:`memspice.io.write_many_atomic`: CSV, Markdown, plot."""
    rows = with_ratios(rows)
    csv_body, md_body = csv_text(rows), markdown_text(rows, title, notes)
    return [(out / CSV_NAME, lambda p: Path(p).write_text(csv_body)),
            (out / MARKDOWN_NAME, lambda p: Path(p).write_text(md_body)),
            (out / PLOT_NAME, lambda p: pareto_plot(rows, Path(p)))]
