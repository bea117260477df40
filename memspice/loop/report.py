"""Round tables of the closed loop: one row per round, written as CSV and as a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.io import write_atomic, write_text_atomic
from memspice.validate.compare import Comparison

ROUNDS_CSV = "rounds.csv"
ROUNDS_PNG = "rounds.png"


def comparison_columns(comparison: Comparison) -> dict[str, Any]:
    """Accuracy, agreement and per-layer RMS/max errors (V) of a validation, as table columns.

    ``output_rms_v``/``output_max_v`` are the last layer's ``outp`` (the network output);
    ``worst_rms_v`` is the largest RMS over every layer and polarity.
    """
    row: dict[str, Any] = {"spice_accuracy": comparison.spice_accuracy,
                           "model_accuracy": comparison.model_accuracy,
                           "agreement": comparison.agreement, "n_samples": comparison.n_samples}
    errors = comparison.layer_errors
    last = int(errors["layer"].max())
    out = errors[(errors["layer"] == last) & (errors["output"] == "outp")].iloc[0]
    row["output_rms_v"] = float(out["rms_v"])
    row["output_max_v"] = float(out["max_v"])
    row["worst_rms_v"] = float(errors["rms_v"].max())
    for record in errors.to_dict(orient="records"):
        key = f"l{record['layer']}_{record['output']}"
        row[f"{key}_rms_v"] = float(record["rms_v"])
        row[f"{key}_max_v"] = float(record["max_v"])
    return row


def write_rounds(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """Write the round table (``rounds.csv``) and its plot (``rounds.png``) atomically.

    The plot shows the output and worst-layer RMS error (mV, log scale) and the agreement and
    SPICE/model accuracy (%) per round, on the samples the loop simulates (``memspice run``'s loop
    simulates training samples; its report says so). matplotlib is imported here, lazily.
    """
    out_dir = Path(out_dir)
    table = pd.DataFrame(rows)
    csv_path = write_text_atomic(out_dir / ROUNDS_CSV, table.to_csv(index=False))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    rounds = table["round"].to_numpy()
    for column, label in (("output_rms_v", "output RMS"), ("output_max_v", "output max"),
                          ("worst_rms_v", "worst layer RMS")):
        values = np.maximum(1e3 * table[column].to_numpy(dtype=float), 1e-6)
        ax_err.semilogy(rounds, values, marker="o", label=label)
    for column, label in (("agreement", "model/SPICE agreement"), ("spice_accuracy", "SPICE accuracy"),
                          ("model_accuracy", "model accuracy")):
        ax_acc.plot(rounds, 100 * table[column].to_numpy(dtype=float), marker="o", label=label)
    n = int(table["n_samples"].iloc[0]) if "n_samples" in table and len(table) else 0
    ax_err.set(xlabel="round", ylabel="model − SPICE (mV)", title="output-voltage error")
    ax_acc.set(xlabel="round", ylabel="% of the simulated samples",
               title=f"on the {n} samples each round simulates" if n else "on the samples each round simulates")
    from matplotlib.ticker import FuncFormatter

    ax_err.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, not 10⁻¹
    ax_err.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    for ax in (ax_err, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_xticks(rounds)
    fig.tight_layout()
    png_path = write_atomic(out_dir / ROUNDS_PNG, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return {"rounds_csv": csv_path, "rounds_png": png_path}
