"""Run VTC families (loads × sizes × conditions × Monte Carlo) and tabulate them.

Copies of the chain share one ``.dc`` input sweep inside one deck (up to ``max_copies`` per
deck); different technologies or conditions (corner, temperature, supply) need different
decks, which run in parallel ngspice processes through :func:`memspice.sim.simulate_many`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memspice.characterize.decks import ChainCopy, family_deck, stage_node
from memspice.characterize.metrics import supply_metrics, vtc_metrics
from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, FitError, SimError
from memspice.fit.tanh_batch import fit_tanh_many
from memspice.sim import SimOptions, simulate_many
from memspice.tech.technology import Technology

STAGES = {1: "inverter", 2: "neuron"}


@dataclass(frozen=True)
class Condition:
    """A technology at given conditions, with the labels that identify it in tables."""

    tech: Technology
    labels: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class LabeledCopy:
    """A chain copy and the labels that identify it in tables (load, sizing id, sample…)."""

    copy: ChainCopy
    labels: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyResult:
    """Tables of a family run.

    Attributes:
        curves: long table, one row per (curve, input point): labels, ``stage``, ``v_in``,
            ``v_out`` (V).
        metrics: one row per curve: labels, ``stage``, VTC metrics (V, V/V), supply current
            (A) and power (W), and the tanh fit (``c1..c4``, ``rms_v``, ``max_abs_v``).
        n_decks: number of ngspice processes used.
        sim_seconds: summed ngspice wall time (s).
    """

    curves: pd.DataFrame
    metrics: pd.DataFrame
    n_decks: int
    sim_seconds: float


def check_loads(loads_ohm: Sequence[float | None]) -> list[float | None]:
    """Validate a load grid (Ω): finite and positive (``None`` = unloaded).

    Raises:
        ConfigError: an empty grid or a value that is not a positive finite number.
    """
    grid = list(loads_ohm)
    if not grid:
        raise ConfigError("the load grid is empty")
    for value in grid:
        if value is None:
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"load {value!r} Ω is not a positive finite resistance")
    return grid


def load_copies(sizings: Sequence[InverterSizing], loads_ohm: Sequence[float | None]) -> list[LabeledCopy]:
    """The product sizes × loads, labelled with ``sizing`` (index), sizes (m) and ``load_ohm``."""
    copies = []
    for j, s in enumerate(sizings):
        for load in check_loads(loads_ohm):
            copies.append(LabeledCopy(ChainCopy(s, load), {
                "sizing": j, "wn_m": s.wn_m, "wp_m": s.wp_m, "ln_m": s.ln_m, "lp_m": s.lp_m, "mn": s.mn, "mp": s.mp,
                "load_ohm": math.inf if load is None else float(load),
                "g_load_s": 0.0 if load is None else 1.0 / float(load),
            }))
    return copies


def run_family(
    conditions: Sequence[Condition],
    copies: Sequence[LabeledCopy],
    *,
    step_v: float = 1e-3,
    options: SimOptions = SimOptions(),
    max_copies: int = 40,
    fit: bool = True,
    keep_curves: bool = True,
) -> FamilyResult:
    """Simulate every copy under every condition and tabulate curves, metrics and fits.

    With ``keep_curves=False`` the long curve table is left empty (it costs more than the
    metrics when there are hundreds of curves).

    Raises:
        ConfigError: no conditions/copies or a bad step.
        SimError: a deck failed (the first failure is raised after all ran).
    """
    if not conditions or not copies:
        raise ConfigError("nothing to characterize: no conditions or no chain copies")
    if max_copies < 1:
        raise ConfigError("max_copies must be at least 1")
    jobs = []
    for condition in conditions:
        for start in range(0, len(copies), max_copies):
            chunk = copies[start:start + max_copies]
            jobs.append((condition, chunk, family_deck(condition.tech, [c.copy for c in chunk], step_v=step_v)))
    results = simulate_many([deck for _, _, deck in jobs], options)
    curve_frames, metric_rows, seconds = [], [], 0.0
    for (condition, chunk, _), result in zip(jobs, results):
        if isinstance(result, SimError):
            raise result
        seconds += result.elapsed_s
        plot = result.plots[0]
        v_in = np.asarray(plot["in"])
        rails = condition.tech.rails
        rows, outputs = [], []
        for k, labeled in enumerate(chunk):
            for stage in (1, 2):
                v_out = np.asarray(plot[stage_node(k, stage)])
                labels = {**condition.labels, **labeled.labels, "stage": STAGES[stage]}
                if keep_curves:
                    curve_frames.append(pd.DataFrame({**{key: [val] * v_in.size for key, val in labels.items()},
                                                      "v_in": v_in, "v_out": v_out}))
                row = {**labels, **_curve_metrics(v_in, v_out)}
                row.update(supply_metrics(plot[f"i(vdd{k}_{stage})"], plot[f"i(vss{k}_{stage})"], rails.vdd, rails.vss))
                rows.append(row)
                outputs.append(v_out)
        if fit:
            _add_fits(rows, v_in, outputs, rails.mid)
        metric_rows += rows
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame(columns=["stage", "v_in", "v_out"])
    return FamilyResult(curves, pd.DataFrame(metric_rows), len(jobs), seconds)


def _curve_metrics(v_in: np.ndarray, v_out: np.ndarray) -> dict[str, object]:
    try:
        return dict(vtc_metrics(v_in, v_out))
    except FitError as exc:
        return {"error": str(exc)}


def _add_fits(rows: list[dict[str, object]], v_in: np.ndarray, outputs: list[np.ndarray], midpoint: float) -> None:
    """Tanh fits of every curve of one deck at once (:func:`fit_tanh_many`: the same least-squares
    answers as one ``fit_tanh`` per curve, several times faster); curves without metrics are skipped."""
    todo = [i for i, row in enumerate(rows) if "error" not in row]
    if not todo:
        return
    for i, fitted in zip(todo, fit_tanh_many(v_in, np.array([outputs[i] for i in todo]), midpoint=midpoint)):
        if isinstance(fitted, FitError):
            rows[i]["error"] = str(fitted)
        else:
            rows[i].update(fitted.as_row())


def monte_carlo_copies(sizing: InverterSizing, load_ohm: float | None, samples: int, seed: int,
                       a_vt_vm: float = 5e-9, sigma_w: float = 0.01) -> list[LabeledCopy]:
    """``samples`` mismatch samples of the chain (seeded, reproducible).

    memspice samples the mismatch itself because sky130's switch (``mismatch=True``,
    ``mc_mm_switch=1``) gives per-instance random values that change on every ngspice run and
    ignore ``set rndseed`` (checked with ngspice 39: three runs of the same deck, two of them
    with ``rndseed=1``, gave three different outputs), so results could not be reproduced.
    Threshold shifts are Pelgrom-scaled and applied gate-referred, width errors directly.

    Args:
        a_vt_vm: Pelgrom threshold coefficient (V·m); 5e-9 V·m = 5 mV·µm.
        sigma_w: relative width standard deviation.
    """
    from memspice.characterize.decks import sample_mismatch

    if samples < 1:
        raise ConfigError("Monte Carlo needs at least one sample")
    rng = np.random.default_rng(seed)
    copies = []
    for n in range(samples):
        m1 = sample_mismatch(rng, sizing, a_vt_vm, sigma_w)
        m2 = sample_mismatch(rng, sizing, a_vt_vm, sigma_w)
        copies.append(LabeledCopy(ChainCopy(sizing, load_ohm, (m1, m2)), {
            "sample": n, "seed": seed, "dvth_n1_v": m1.dvth_n_v, "dvth_p1_v": m1.dvth_p_v,
            "load_ohm": math.inf if load_ohm is None else float(load_ohm)}))
    return copies
