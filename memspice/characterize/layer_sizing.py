"""Per-layer sizing (ERIM's idea, as a table): which size each hidden layer's load calls for.

Each neuron output drives one row of the next layer's crossbar, so it sees that row's total
conductance as its load. Training and netlists still use one size for every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from memspice.characterize.sizing import SizingResult, choose, closest, describe_sizing, judge
from memspice.errors import ConfigError


def layer_loads(conductances: Sequence[np.ndarray]) -> list[tuple[int, int, float, float]]:
    """Each hidden layer's output loads from the next layer's crossbar.

    Neuron ``j``'s ``outn`` drives row ``in_j`` and its ``outp`` row ``ip_j`` of the next layer
    (wiring order: the ``ip`` rows first), so each output sees the sum of that row's
    conductances. The output layer drives no crossbar and is left out.

    Returns:
        ``(layer, neurons, median_load_ohm, heaviest_load_ohm)`` per hidden layer.
    """
    out = []
    for index in range(len(conductances) - 1):
        m = int(np.asarray(conductances[index]).shape[0])
        totals = np.asarray(conductances[index + 1], dtype=np.float64).sum(axis=0)
        g = np.concatenate([totals[:m], totals[m:2 * m]])
        if not np.all(np.isfinite(g)) or np.any(g <= 0):
            raise ConfigError(f"layer {index + 1} has non-positive or non-finite conductances")
        out.append((index, m, float(1.0 / np.median(g)), float(1.0 / np.max(g))))
    return out


def size_layers(result: SizingResult, loads: Sequence[tuple[int, int, float, float]]) -> pd.DataFrame:
    """Which size each hidden layer's load calls for (ERIM's per-layer sizing, as a table).

    Every layer is judged at its median and its heaviest neuron load (both must meet the
    targets) and gets the least-power design that does; the loads must have been simulated
    (``extra_loads_ohm`` of :func:`run_sizing`).
    """
    rows = []
    for layer, neurons, median, heaviest in loads:
        designs = judge(result.table, [median, heaviest], result.targets)
        chosen = choose(designs)
        row: dict[str, object] = {"layer": layer, "neurons": neurons, "median_load_ohm": median,
                                  "heaviest_load_ohm": heaviest, "sizing": chosen}
        if chosen is None:
            k = closest(designs) if designs["usable"].any() else None
            row.update(description="none meets the targets", shortfall=(
                designs.set_index("sizing").loc[k, "shortfall"] if k is not None else "no usable curve"))
        else:
            best = designs.set_index("sizing").loc[chosen]
            row.update(description=describe_sizing(result.sizings[chosen]), shortfall="",
                       worst_abs_v_m_v=float(best["worst_abs_v_m_v"]), min_neuron_gain=float(best["min_neuron_gain"]),
                       min_swing_fraction=float(best["min_swing_fraction"]),
                       neuron_tanh_rms_v=float(best["neuron_tanh_rms_v"]), static_power_w=float(best["static_power_w"]))
        rows.append(row)
    return pd.DataFrame(rows)
