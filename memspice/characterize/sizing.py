"""Inverter sizing: sweep transistor sizes over a load grid, tabulate, pick the cheapest design
that meets the targets.

A *design* is one :class:`~memspice.circuit.builders.InverterSizing` (both inverters of the
neuron use it). Every size × load point is one chain copy of a family deck
(:mod:`memspice.characterize.decks`): hundreds of sizes share a few ngspice processes, each a
single ``.dc`` sweep of the common input, so no deck is re-parsed per size and no ``alter`` is
needed. The table holds, per size × load, both stages' threshold (relative to mid-rail), peak
gain, swing, noise margins and tanh-fit residual, and the neuron's static power.

A design is judged at the *design loads* (a subset of the load grid): its figures there are
the worst over those loads and over the two stages (the network reads both neuron outputs).

With a :class:`~memspice.characterize.settling.SettleSpec`, every size that meets the static
targets is also simulated in a transient at the design loads (:mod:`memspice.characterize.settling`):
its settling time and energy to settle join the table, a settling-time target can be set, and
the design can be chosen for the least energy per inference instead of the least static power.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memspice.characterize.settling import SettleSpec, run_settling
from memspice.characterize.sweeps import Condition, check_loads, load_copies, run_family
from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError, SimFailed
from memspice.sim import SimOptions
from memspice.tech.technology import Technology

#: Stage names of the family tables, and the prefixes of their columns in the sizing table.
STAGE_PREFIX = {"inverter": "inverter_", "neuron": "neuron_"}
#: Per-stage columns copied from the family metrics into the sizing table (V, V/V, W).
_STAGE_COLUMNS = ("v_m", "peak_gain", "swing", "v_il", "v_ih", "nm_l", "nm_h", "rms_v", "max_abs_v", "c4",
                  "power_mean_w", "error")
#: What a design can be chosen for: the least static power, or the least energy per inference
#: (energy to settle plus the input drivers' share over the settling time; needs a settling run).
OBJECTIVES = ("power", "energy")
#: Columns the settling run adds to the sizing table (s, J, W).
SETTLE_COLUMNS = ("settle_s", "settle_rise_s", "settle_fall_s", "energy_to_settle_j", "transient_power_w")
#: Copies per ngspice deck at most: measured on sky130 (432 sizes, 2 cores), 8, 40 and 216
#: copies per deck took 19, 20 and 24 s, so decks are cut to keep both cores busy.
MAX_COPIES_PER_DECK = 50
_BIN_ERROR = "could not find a valid modelname"


class NoDesignMeetsTargets(ConfigError):
    """Every size in the grid misses at least one target (the message names the closest)."""


@dataclass(frozen=True)
class SizingGrid:
    """The sizes to sweep: the product of the axes.

    Attributes:
        wn_m, wp_m: widths of one n/p device (m).
        ln_m, lp_m: channel lengths (m).
        mn, mp: parallel n/p devices (SPICE ``m``); effective width = ``m × w``.
    """

    wn_m: tuple[float, ...]
    wp_m: tuple[float, ...]
    ln_m: tuple[float, ...]
    lp_m: tuple[float, ...]
    mn: tuple[int, ...] = (1,)
    mp: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        for name in ("wn_m", "wp_m", "ln_m", "lp_m", "mn", "mp"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values:
                raise ConfigError(f"sizing grid: the {name} axis is empty, so the grid has no point")
            for v in values:
                if name in ("mn", "mp"):
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                        raise ConfigError(f"sizing grid: {name} = {v!r} is not a positive whole number of devices")
                elif not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                    raise ConfigError(f"sizing grid: {name} = {v!r} is not a positive size")

    def sizings(self) -> list[InverterSizing]:
        """Every point of the grid (Wn, Wp, Ln, Lp, mn, mp; the last axis varies fastest)."""
        return [InverterSizing(wn, wp, ln, lp, int(mn), int(mp))
                for wn, wp, ln, lp, mn, mp in itertools.product(self.wn_m, self.wp_m, self.ln_m, self.lp_m,
                                                                self.mn, self.mp)]

    def check(self, tech: Technology) -> None:
        """Refuse sizes the technology cannot simulate (below its minimum length, or outside
        its model bins), before any simulation.

        Raises:
            ConfigError: naming the axis value and the allowed range.
        """
        for polarity, widths, lengths in (("n", self.wn_m, self.ln_m), ("p", self.wp_m, self.lp_m)):
            for length in lengths:
                if length < tech.l_min_m * (1 - 1e-9):
                    raise ConfigError(f"sizing grid: L{polarity} = {length * 1e6:.4g} µm is below {tech.name}'s "
                                      f"minimum {tech.l_min_m * 1e6:.4g} µm")
            for width, length in itertools.product(widths, lengths):
                try:
                    tech.check_size(polarity, width, length)
                except ConfigError as exc:
                    raise ConfigError(f"sizing grid: {exc}") from None


@dataclass(frozen=True)
class Targets:
    """What a design must meet at every design load (worst of both stages).

    Attributes:
        max_abs_v_m_v: largest |V_M − mid-rail| of either stage (V).
        min_neuron_gain: smallest neuron peak gain |dV_out/dV_in| (V/V).
        min_swing_fraction: smallest output swing of either stage, as a fraction of VDD − VSS.
        max_tanh_rms_v: largest tanh-fit residual RMS of the neuron output (V), or ``None``
            (the single inverter's softer curve always fits worse; the table has both).
        min_noise_margin_v: smallest of NM_L, NM_H of either stage (V), or ``None``.
        max_settle_s: largest settling time of the neuron's outputs (s), or ``None``; needs a
            settling run (a size not settled in the window misses it).
    """

    max_abs_v_m_v: float = 0.010
    min_neuron_gain: float = 50.0
    min_swing_fraction: float = 0.95
    max_tanh_rms_v: float | None = None
    min_noise_margin_v: float | None = None
    max_settle_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_abs_v_m_v", "min_neuron_gain", "min_swing_fraction", "max_tanh_rms_v", "min_noise_margin_v",
                     "max_settle_s"):
            value = getattr(self, name)
            if value is None and name in ("max_tanh_rms_v", "min_noise_margin_v", "max_settle_s"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"target {name} must be a finite number, got {value!r}")
        if self.max_abs_v_m_v < 0 or self.min_neuron_gain < 0:
            raise ConfigError("targets |V_M| and neuron gain must not be negative")
        if not 0 <= self.min_swing_fraction <= 1:
            raise ConfigError(f"target swing fraction must be in [0, 1], got {self.min_swing_fraction}")
        if self.max_settle_s is not None and self.max_settle_s <= 0:
            raise ConfigError(f"target settling time must be positive, got {self.max_settle_s!r} s")

    def constraints(self) -> list[tuple[str, str, str, float, float]]:
        """``(column, label, sense, limit, scale)``: ``sense`` is ``max`` or ``min``; ``scale``
        normalizes a shortfall so different constraints can be compared."""
        out = [("worst_abs_v_m_v", "|V_M|", "max", self.max_abs_v_m_v, max(self.max_abs_v_m_v, 1e-3)),
               ("min_neuron_gain", "neuron gain", "min", self.min_neuron_gain, max(self.min_neuron_gain, 1.0)),
               ("min_swing_fraction", "swing fraction", "min", self.min_swing_fraction,
                max(self.min_swing_fraction, 0.01))]
        if self.max_tanh_rms_v is not None:
            out.append(("neuron_tanh_rms_v", "neuron tanh RMS", "max", self.max_tanh_rms_v,
                        max(self.max_tanh_rms_v, 1e-4)))
        if self.min_noise_margin_v is not None:
            out.append(("min_noise_margin_v", "noise margin", "min", self.min_noise_margin_v,
                        max(abs(self.min_noise_margin_v), 1e-2)))
        if self.max_settle_s is not None:
            out.append(("settle_s", "settling time", "max", self.max_settle_s, self.max_settle_s))
        return out


@dataclass(frozen=True)
class SizingResult:
    """Outcome of a sizing sweep.

    Attributes:
        table: one row per size × load (labels, both stages' metrics, ``static_power_w``).
        designs: one row per size, judged at the design loads (``meets``, ``shortfall``).
        chosen: index (``sizing``) of the chosen design, or ``None`` when none meets.
        sizings: the swept sizes, by index.
        design_loads_ohm: loads the targets were judged at (Ω).
        n_decks: ngspice processes used; ``sim_seconds``: their summed wall time (s);
        ``wall_seconds``: the whole sweep including fits (s).
        objective: what the chosen design minimizes (:data:`OBJECTIVES`).
        settle: the settling run's drive (``None``: no settling run).
        driver_power_w: the input drivers' power per neuron counted in the energy (W).
        settle_seconds: wall time of the settling run (s).
    """

    table: pd.DataFrame
    designs: pd.DataFrame
    chosen: int | None
    sizings: tuple[InverterSizing, ...]
    targets: Targets
    design_loads_ohm: tuple[float, ...]
    n_decks: int
    sim_seconds: float
    wall_seconds: float
    tech_description: dict[str, str] = field(default_factory=dict)
    objective: str = "power"
    settle: SettleSpec | None = None
    driver_power_w: float = 0.0
    settle_seconds: float = 0.0

    @property
    def chosen_sizing(self) -> InverterSizing | None:
        """The chosen design's sizing."""
        return None if self.chosen is None else self.sizings[self.chosen]

    def chosen_row(self) -> dict[str, object] | None:
        """The chosen design's row of :attr:`designs` as a plain dict."""
        if self.chosen is None:
            return None
        row = self.designs.set_index("sizing").loc[self.chosen]
        return {"sizing": self.chosen, **{k: plain_value(v) for k, v in row.items()}}


def plain_value(value: object) -> object:
    """A NumPy scalar as the Python number it holds (for JSON); anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def describe_sizing(s: InverterSizing) -> str:
    """``Wn 50 µm ×8, Ln 0.8 µm, Wp 25 µm, Lp 0.5 µm`` (multipliers only when > 1)."""
    def one(polarity: str, w: float, length: float, m: int) -> str:
        return f"W{polarity} {w * 1e6:.4g} µm" + (f" ×{m}" if m > 1 else "") + f", L{polarity} {length * 1e6:.4g} µm"
    return one("n", s.wn_m, s.ln_m, s.mn) + ", " + one("p", s.wp_m, s.lp_m, s.mp)


def copies_per_deck(n_copies: int, workers: int | None = None) -> int:
    """Copies per deck: enough decks to keep every core busy, none above
    :data:`MAX_COPIES_PER_DECK`."""
    cores = max(1, workers or os.cpu_count() or 1)
    n_decks = max(cores, math.ceil(n_copies / MAX_COPIES_PER_DECK))
    n_decks = math.ceil(n_decks / cores) * cores
    return max(1, math.ceil(n_copies / n_decks))


def run_sizing(
    tech: Technology,
    grid: SizingGrid | Sequence[InverterSizing],
    loads_ohm: Sequence[float],
    *,
    design_loads_ohm: Sequence[float] = (0.9e6,),
    targets: Targets = Targets(),
    step_v: float = 1e-3,
    options: SimOptions = SimOptions(),
    require: bool = True,
    extra_loads_ohm: Sequence[float] = (),
    settle: SettleSpec | None = None,
    objective: str = "power",
    driver_power_w: float = 0.0,
) -> SizingResult:
    """Sweep every size over the load grid, tabulate, judge at the design loads, choose.

    Design loads missing from ``loads_ohm`` are added to the simulated grid.

    Args:
        grid: the sizes (a :class:`SizingGrid` or an explicit list).
        loads_ohm: load grid (Ω) on each stage output, to mid-rail.
        require: raise :class:`NoDesignMeetsTargets` when no design meets the targets
            (otherwise return with ``chosen=None``).
        extra_loads_ohm: more loads to simulate (e.g. each layer's, for
            :func:`~memspice.characterize.layer_sizing.size_layers`).
        settle: run the settling transient (at the design loads, for every size that meets the
            static targets) and add its columns; needed by ``objective="energy"`` and a
            settling-time target.
        objective: ``"power"`` (least static power) or ``"energy"`` (least energy per inference:
            ``energy_to_settle_j + driver_power_w × settle_s``, worst over the design loads).
        driver_power_w: the input drivers' power per neuron (W), which runs while the outputs
            settle (in a crossbar network it is most of the power).

    Raises:
        ConfigError: an empty grid, sizes outside the technology's limits or model bins, a
            grid with no size that gives a usable transfer curve, or (``require``) no design
            meeting the targets (:class:`NoDesignMeetsTargets`).
        SimError: ngspice failed for another reason.
    """
    if isinstance(grid, SizingGrid):
        grid.check(tech)
        sizings = tuple(grid.sizings())
    else:
        sizings = tuple(grid)
        if not sizings:
            raise ConfigError("sizing grid: no sizes to sweep")
        for s in sizings:
            SizingGrid((s.wn_m,), (s.wp_m,), (s.ln_m,), (s.lp_m,), (s.mn,), (s.mp,)).check(tech)
    if objective not in OBJECTIVES:
        raise ConfigError(f"sizing objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if settle is None and (objective == "energy" or targets.max_settle_s is not None):
        raise ConfigError("choosing for energy or a settling-time target needs the settling run (settle=SettleSpec())")
    if isinstance(driver_power_w, bool) or not isinstance(driver_power_w, (int, float)) \
            or not math.isfinite(driver_power_w) or driver_power_w < 0:
        raise ConfigError(f"driver power per neuron must be a finite number ≥ 0 W, got {driver_power_w!r}")
    if any(v is None for v in design_loads_ohm):
        raise ConfigError("design loads must be resistances in ohms")
    design = tuple(float(v) for v in check_loads(design_loads_ohm))  # type: ignore[arg-type]  # None refused above
    loads = [float(v) for v in check_loads(loads_ohm)]
    # a design load equal to a grid load (to 1e-9) is that grid load; any other joins the grid
    design = tuple(next((v for v in loads if math.isclose(d, v, rel_tol=1e-9)), d) for d in design)
    loads += [d for d in design if d not in loads]
    loads += [float(v) for v in check_loads(extra_loads_ohm) if v not in loads] if extra_loads_ohm else []
    copies = load_copies(sizings, sorted(loads))
    start = time.monotonic()
    try:
        family = run_family([Condition(tech)], copies, step_v=step_v, options=options,
                            max_copies=copies_per_deck(len(copies)), keep_curves=False)
    except SimFailed as exc:
        if _BIN_ERROR in (exc.error_line + exc.stdout).lower():
            kept = f" (run directory kept: {exc.run_dir})" if exc.run_dir is not None else ""
            raise ConfigError(f"a size in the grid is outside the model bins of {tech.nmos_model}/{tech.pmos_model} "
                              f"(ngspice: {_BIN_ERROR}); narrow the widths/lengths and use parallel devices (m)"
                              + kept) from None
        raise
    wall = time.monotonic() - start
    table = size_table(family.metrics, tech)
    designs = judge(table, design, targets, driver_power_w)
    require_usable(designs)
    settle_wall = 0.0
    if settle is not None:
        start = time.monotonic()
        table = add_settling(table, tech, sizings, designs, design, settle, options)
        settle_wall = time.monotonic() - start
        designs = judge(table, design, targets, driver_power_w)
    chosen = choose(designs, objective)
    if chosen is None and require:
        raise NoDesignMeetsTargets(no_design_message(designs, sizings, targets))
    return SizingResult(table, designs, chosen, sizings, targets, design, family.n_decks, family.sim_seconds, wall,
                        tech.describe(), objective, settle, float(driver_power_w), settle_wall)


def add_settling(table: pd.DataFrame, tech: Technology, sizings: Sequence[InverterSizing], designs: pd.DataFrame,
                 loads_ohm: Sequence[float], spec: SettleSpec, options: SimOptions) -> pd.DataFrame:
    """The table with the settling columns (:data:`SETTLE_COLUMNS`) for every size that meets
    the static targets (``designs["meets"]`` before any settling target), at ``loads_ohm``.

    Each copy's input steps around its own neuron threshold at that load. A simulated point that
    did not switch or settle in the window gets ``inf``; points not simulated stay NaN.
    """
    out = table.copy()
    for column in SETTLE_COLUMNS:
        out[column] = np.nan
    candidates = designs.loc[designs["meets_static"], "sizing"].astype(int).tolist()
    if not candidates:
        return out
    at = out.set_index(["sizing", "load_ohm"])
    copies = [(k, sizings[k], float(load), float(at.loc[(k, load), "neuron_v_m_v"]))
              for k in candidates for load in loads_ohm]
    rows = run_settling(tech, copies, spec, options=options, max_copies=copies_per_deck(len(copies)) // 2 or 1)
    figures = rows.set_index(["sizing", "load_ohm"])
    for column in SETTLE_COLUMNS:
        values = figures[column].to_numpy(dtype=np.float64)
        if column != "transient_power_w":
            values = np.where(np.isnan(values), math.inf, values)
        series = pd.Series(values, index=figures.index)
        keys = list(zip(out["sizing"], out["load_ohm"]))
        out[column] = [series.get(key, math.nan) for key in keys]
    return out


def size_table(metrics: pd.DataFrame, tech: Technology) -> pd.DataFrame:
    """One row per size × load from the long family metrics (one row per stage).

    Thresholds become ``*_v_m_v`` relative to mid-rail, swings also appear as fractions of
    VDD − VSS, and ``static_power_w`` is the neuron's (both stages') mean power over the sweep.
    """
    rails = tech.rails
    keys = ["sizing", "wn_m", "wp_m", "ln_m", "lp_m", "mn", "mp", "load_ohm"]
    frame = metrics.copy()
    for column in _STAGE_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan if column != "error" else None
    parts = []
    for stage, prefix in STAGE_PREFIX.items():
        part = frame[frame["stage"] == stage][keys + list(_STAGE_COLUMNS)].copy()
        part["v_m_v"] = part.pop("v_m") - rails.mid
        part["swing_fraction"] = part["swing"] / (rails.vdd - rails.vss)
        part = part.rename(columns={c: prefix + c for c in part.columns if c not in keys})
        parts.append(part.set_index(keys))
    table = parts[0].join(parts[1], how="outer").reset_index()
    table["static_power_w"] = table["inverter_power_mean_w"] + table["neuron_power_mean_w"]
    return table.sort_values(["sizing", "load_ohm"], ignore_index=True)


def judge(table: pd.DataFrame, design_loads_ohm: Sequence[float], targets: Targets,
          driver_power_w: float = 0.0) -> pd.DataFrame:
    """Worst-case figures of every size over the design loads, and whether it meets ``targets``.

    Columns: ``sizing``, the sizes, ``worst_abs_v_m_v``, ``min_neuron_gain``,
    ``min_swing_fraction``, ``neuron_tanh_rms_v``, ``max_tanh_rms_v`` (either stage),
    ``min_noise_margin_v``, ``static_power_w`` (the largest over the design loads), ``usable`` (every design-load curve has a threshold),
    ``meets``, ``meets_static`` (every target but the settling time), ``violation`` (normalized
    shortfall, 0 when met) and ``shortfall`` (text). With the settling columns in ``table``
    also ``settle_s``, ``energy_to_settle_j`` (the largest over the design loads; NaN when not
    simulated, ``inf`` when not settled) and ``energy_per_inference_j``
    (``energy_to_settle_j + driver_power_w × settle_s``).
    """
    at = table[np.isin(table["load_ohm"].to_numpy(), np.asarray(design_loads_ohm, dtype=np.float64))]
    rows = []
    for sizing, part in at.groupby("sizing", sort=True):
        first = part.iloc[0]
        vm = np.abs(part[["inverter_v_m_v", "neuron_v_m_v"]].to_numpy(dtype=np.float64))
        swing = part[["inverter_swing_fraction", "neuron_swing_fraction"]].to_numpy(dtype=np.float64)
        rms = part[["inverter_rms_v", "neuron_rms_v"]].to_numpy(dtype=np.float64)
        nm = part[["inverter_nm_l", "inverter_nm_h", "neuron_nm_l", "neuron_nm_h"]].to_numpy(dtype=np.float64)
        usable = bool(np.isfinite(vm).all())
        row = {"sizing": int(sizing), **{k: plain_value(first[k]) for k in ("wn_m", "wp_m", "ln_m", "lp_m", "mn", "mp")},
               "worst_abs_v_m_v": _worst(vm, max), "min_neuron_gain": _worst(part["neuron_peak_gain"].to_numpy(), min),
               "min_swing_fraction": _worst(swing, min), "neuron_tanh_rms_v": _worst(part["neuron_rms_v"].to_numpy(), max),
               "max_tanh_rms_v": _worst(rms, max),
               "min_noise_margin_v": _worst(nm, min), "static_power_w": float(part["static_power_w"].max()),
               "usable": usable}
        if "settle_s" in part.columns:
            settle = part["settle_s"].to_numpy(dtype=np.float64)
            energy = part["energy_to_settle_j"].to_numpy(dtype=np.float64)
            row["settle_s"] = math.nan if np.isnan(settle).any() else float(np.max(settle))
            row["energy_to_settle_j"] = math.nan if np.isnan(energy).any() else float(np.max(energy))
            row["energy_per_inference_j"] = row["energy_to_settle_j"] + driver_power_w * row["settle_s"]
        violation, missed, static_missed = 0.0, [], False
        for column, label, sense, limit, scale in targets.constraints():
            value = row.get(column, math.nan)
            if column == "settle_s" and math.isnan(value):
                missed.append("settling time not simulated (the static targets are missed)")
                continue
            if not math.isfinite(value):
                excess = math.inf
            else:
                excess = value - limit if sense == "max" else limit - value
            if excess > 0:
                violation += excess / scale
                missed.append(_miss_text(label, sense, limit, value, excess))
                static_missed = static_missed or column != "settle_s"
        row.update(meets=usable and not missed, meets_static=usable and not static_missed,
                   violation=violation if usable else math.inf,
                   shortfall="; ".join(missed) if usable else "no usable transfer curve")
        rows.append(row)
    return pd.DataFrame(rows)


def _worst(values: np.ndarray, pick: object) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return math.nan
    return float(np.max(finite) if pick is max else np.min(finite))


def _miss_text(label: str, sense: str, limit: float, value: float, excess: float) -> str:
    op = "≤" if sense == "max" else "≥"
    if label == "settling time":
        return (f"{label} ≤ {limit * 1e9:.4g} ns misses by {excess * 1e9:.4g} ns" if math.isfinite(value)
                else f"{label} ≤ {limit * 1e9:.4g} ns misses: not settled in the window")
    if label in ("|V_M|", "neuron tanh RMS", "noise margin"):
        return (f"{label} {op} {limit * 1e3:.4g} mV misses by {excess * 1e3:.3g} mV"
                + (f" ({value * 1e3:.4g} mV)" if math.isfinite(value) else " (undefined)"))
    if label == "swing fraction":
        return f"swing {op} {100 * limit:.4g} % of the rails misses by {100 * excess:.3g} points ({100 * value:.4g} %)"
    return f"{label} {op} {limit:.4g} misses by {excess:.3g} ({value:.4g})"


def require_usable(designs: pd.DataFrame) -> None:
    """Raise :class:`ConfigError` when no size of the grid has a usable curve at the design loads."""
    if designs.empty or not designs["usable"].any():
        raise ConfigError(f"sizing grid: none of the {len(designs)} sizes gives a transfer curve that crosses its "
                          "midpoint at the design loads, so there is no valid point to choose from")


def choose(designs: pd.DataFrame, objective: str = "power") -> int | None:
    """The design that meets every target at the least static power, or (``energy``) the least
    energy per inference among those that settled (ties: less static power, the lower index)."""
    ok = designs[designs["meets"]]
    if objective == "energy":
        if "energy_per_inference_j" not in ok.columns:
            return None
        ok = ok[np.isfinite(ok["energy_per_inference_j"].to_numpy(dtype=np.float64))]
        if ok.empty:
            return None
        return int(ok.sort_values(["energy_per_inference_j", "static_power_w", "sizing"]).iloc[0]["sizing"])
    if ok.empty:
        return None
    return int(ok.sort_values(["static_power_w", "sizing"]).iloc[0]["sizing"])


def closest(designs: pd.DataFrame) -> int:
    """The usable design with the smallest normalized shortfall."""
    usable = designs[designs["usable"]]
    return int(usable.sort_values(["violation", "static_power_w", "sizing"]).iloc[0]["sizing"])


def no_design_message(designs: pd.DataFrame, sizings: Sequence[InverterSizing], targets: Targets) -> str:
    """The error text when nothing meets the targets: the closest design and its shortfalls."""
    k = closest(designs)
    row = designs.set_index("sizing").loc[k]
    return (f"no design in the grid of {len(sizings)} sizes meets the targets; the closest "
            f"({describe_sizing(sizings[k])}) fails: {row['shortfall']}. Widen the grid or relax a target")

