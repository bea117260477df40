"""A characterization study: sections (loads, corners, temperature, supply, Monte Carlo) run,
tabulated, plotted and summarized into an output directory.

Every input is validated (technologies built, grids checked) before the first simulation,
and every file is written atomically, so a bad option leaves nothing half-written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from memspice.characterize import plots
from memspice.characterize.sweeps import Condition, FamilyResult, LabeledCopy, load_copies, monte_carlo_copies, run_family
from memspice.circuit.builders import InverterSizing
from memspice.circuit.wiring import Rails
from memspice.errors import ConfigError
from memspice.io import write_atomic, write_text_atomic
from memspice.sim import SimOptions
from memspice.tech.technology import Technology
from memspice.safe_io import dumps_strict

TableFormat = Literal["csv", "parquet"]


@dataclass(frozen=True)
class Study:
    """What to characterize.

    Attributes:
        make_tech: builds the technology for ``(corner, rails, temperature_c)``; raises
            :class:`ConfigError` for an unknown corner.
        base_corner: corner of the load, temperature, supply and Monte Carlo sections.
        rails: nominal rails (V).
        temperature_c: nominal temperature (°C).
        sizings: inverter sizes of the load section (m); the first is the nominal one.
        loads_ohm: load grid (Ω) of the load section.
        load_ohm: nominal load (Ω) of the other sections.
        corners: corners to compare (empty = skip).
        temperatures_c: temperatures to compare (°C; empty = skip).
        supplies_v: half-supplies to compare (V; rails ±v around 0; empty = skip).
        mc_samples: Monte Carlo samples (0 = skip); ``mc_seed``, ``a_vt_vm`` (V·m),
            ``sigma_w`` (relative) parametrize the seeded Pelgrom mismatch.
        step_v: input sweep step (V).
    """

    make_tech: Callable[[str, Rails, float], Technology]
    base_corner: str = "tt"
    rails: Rails = Rails()
    temperature_c: float = 27.0
    sizings: tuple[InverterSizing, ...] = (InverterSizing(),)
    loads_ohm: tuple[float, ...] = (0.9e6,)
    load_ohm: float = 0.9e6
    corners: tuple[str, ...] = ()
    temperatures_c: tuple[float, ...] = ()
    supplies_v: tuple[float, ...] = ()
    mc_samples: int = 0
    mc_seed: int = 1
    a_vt_vm: float = 5e-9
    sigma_w: float = 0.01
    step_v: float = 1e-3
    options: SimOptions = field(default_factory=SimOptions)


def _sections(study: Study) -> dict[str, tuple[list[Condition], list[LabeledCopy], str]]:
    """Build every section's conditions and copies (validates everything up front)."""
    if not study.sizings:
        raise ConfigError("at least one inverter sizing is needed")
    base = study.make_tech(study.base_corner, study.rails, study.temperature_c)
    base_labels = {"corner": study.base_corner, "temperature_c": study.temperature_c, "vdd": study.rails.vdd}
    nominal = load_copies(study.sizings[:1], [study.load_ohm])
    sections = {"loads": ([Condition(base, base_labels)], load_copies(study.sizings, study.loads_ohm), "load_ohm")}
    if study.corners:
        conds = [Condition(study.make_tech(c, study.rails, study.temperature_c), {**base_labels, "corner": c})
                 for c in study.corners]
        sections["corners"] = (conds, nominal, "corner")
    if study.temperatures_c:
        conds = [Condition(study.make_tech(study.base_corner, study.rails, t), {**base_labels, "temperature_c": t})
                 for t in study.temperatures_c]
        sections["temperature"] = (conds, nominal, "temperature_c")
    if study.supplies_v:
        conds = []
        for v in study.supplies_v:
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"supply {v!r} V must be a positive half-supply")
            conds.append(Condition(study.make_tech(study.base_corner, Rails(v, -v), study.temperature_c),
                                   {**base_labels, "vdd": v}))
        sections["supply"] = (conds, nominal, "vdd")
    if study.mc_samples:
        copies = monte_carlo_copies(study.sizings[0], study.load_ohm, study.mc_samples, study.mc_seed,
                                    study.a_vt_vm, study.sigma_w)
        sections["montecarlo"] = ([Condition(base, base_labels)], copies, "sample")
    return sections


def run_study(study: Study, out_dir: Path, table_format: TableFormat = "csv", make_plots: bool = True) -> dict[str, Any]:
    """Run every requested section, write tables, plots, ``summary.md`` and ``summary.json``.

    Returns:
        The summary (also written to ``summary.json``).
    """
    if table_format not in ("csv", "parquet"):
        raise ConfigError(f"unknown table format {table_format!r}; choose csv or parquet")
    if table_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("parquet tables need pyarrow, which is not installed: "
                              "pip install 'memspice[parquet]' (or use --format csv)") from None
    sections = _sections(study)
    out_dir = Path(out_dir)
    summary: dict[str, Any] = {"sections": {}, "files": []}
    for name, (conditions, copies, by) in sections.items():
        result = run_family(conditions, copies, step_v=study.step_v, options=study.options)
        files = _write_tables(out_dir, name, result, table_format)
        if make_plots:
            files += _plot_section(out_dir, name, result, by)
        summary["sections"][name] = _section_summary(result, by)
        summary["files"] += [p.name for p in files]
    write_text_atomic(out_dir / "summary.json", dumps_strict(summary, indent=2, default=float) + "\n")
    write_text_atomic(out_dir / "summary.md", summary_markdown(summary))
    return summary


def _write_tables(out_dir: Path, name: str, result: FamilyResult, table_format: TableFormat) -> list[Path]:
    paths = []
    for kind, frame in (("curves", result.curves), ("metrics", result.metrics)):
        path = out_dir / f"{name}_{kind}.{table_format}"
        if table_format == "csv":
            write_atomic(path, lambda tmp, f=frame: f.to_csv(tmp, index=False))
        else:
            write_atomic(path, lambda tmp, f=frame: f.to_parquet(tmp, index=False))
        paths.append(path)
    return paths


def _plot_section(out_dir: Path, name: str, result: FamilyResult, by: str) -> list[Path]:
    curves = result.curves
    if name == "loads" and curves["sizing"].nunique() > 1:
        curves = curves[curves["sizing"] == 0]
    files = [plots.vtc_family(curves, by, out_dir / f"{name}_vtc.png", f"transfer curves: {name}"),
             plots.vtc_family(curves, by, out_dir / f"{name}_gain.png", f"small-signal gain: {name}", gain=True)]
    if name == "montecarlo":
        files.append(plots.histograms(result.metrics, out_dir / f"{name}_hist.png", "Monte Carlo"))
    else:
        metrics = result.metrics
        if name == "loads" and metrics["sizing"].nunique() > 1:
            metrics = metrics[metrics["sizing"] == 0]
        files.append(plots.metrics_vs(metrics, by, out_dir / f"{name}_metrics.png", f"metrics vs {plots.AXES.get(by, (by,))[0]}"))
    return files


_SUMMARY_COLUMNS = ("v_m", "peak_gain", "v_il", "v_ih", "v_ol", "v_oh", "nm_l", "nm_h", "swing",
                    "i_dd_mean_a", "power_mean_w", "c1", "c2", "c3", "c4", "rms_v", "max_abs_v")


def _section_summary(result: FamilyResult, by: str) -> dict[str, Any]:
    metrics = result.metrics
    cols = [c for c in _SUMMARY_COLUMNS if c in metrics.columns]
    rows = []
    if by == "sample":
        for stage, part in metrics.groupby("stage", sort=False):
            rows.append({"stage": stage, "n": int(len(part)),
                         **{f"{c}_mean": float(part[c].mean()) for c in cols},
                         **{f"{c}_std": float(part[c].std(ddof=1)) if len(part) > 1 else 0.0 for c in cols}})
    else:
        keep = metrics[[by, "stage", *cols]] if by in metrics.columns else metrics[["stage", *cols]]
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in keep.to_dict("records")]
    errors = metrics["error"].dropna().tolist() if "error" in metrics.columns else []
    return {"by": by, "curves": int(len(metrics)), "decks": result.n_decks, "sim_seconds": result.sim_seconds,
            "rows": rows, "errors": errors}


def summary_markdown(summary: dict[str, Any]) -> str:
    """Human-readable Markdown of a study summary."""
    lines = ["# memspice characterization", ""]
    for name, sec in summary["sections"].items():
        lines += [f"## {name}", "", f"{sec['curves']} curves, {sec['decks']} ngspice run(s), "
                  f"{sec['sim_seconds']:.2f} s of simulation.", ""]
        rows = sec["rows"]
        if rows:
            frame = pd.DataFrame(rows)
            lines.append(markdown_table(frame))
        if sec["errors"]:
            lines += ["", "Curves that could not be fitted:", *[f"- {e}" for e in sec["errors"][:10]]]
        lines.append("")
    lines += ["Files: " + ", ".join(summary["files"]), ""]
    return "\n".join(lines)


def markdown_table(frame: pd.DataFrame, max_rows: int = 60) -> str:
    """The first ``max_rows`` rows of ``frame`` as a Markdown table (floats to 4 significant digits)."""
    frame = frame.head(max_rows)
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sizings_from(values: Sequence[Sequence[float]]) -> tuple[InverterSizing, ...]:
    """Sizings from ``(wn, wp, ln, lp)`` tuples in µm."""
    out = []
    for v in values:
        if len(v) != 4:
            raise ConfigError(f"a sizing needs wn,wp,ln,lp in µm, got {v!r}")
        out.append(InverterSizing(*(float(x) * 1e-6 for x in v)))
    return tuple(out)
