"""Write a sizing result: tables (CSV, and Parquet when pyarrow is installed), heat maps,
``summary.md`` and ``summary.json``. Nothing here simulates."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memspice.characterize import plots
from memspice.characterize.sizing import SizingResult, describe_sizing, plain_value
from memspice.characterize.study import markdown_table
from memspice.io import write_atomic, write_text_atomic
from memspice.safe_io import dumps_strict

#: Columns of the per-design table shown in ``summary.md``.
_DESIGN_COLUMNS = ("sizing", "wn_um", "mn", "ln_um", "wp_um", "mp", "lp_um", "worst_abs_v_m_mv", "min_neuron_gain",
                   "min_swing_pct", "neuron_tanh_rms_mv", "max_tanh_rms_mv", "min_noise_margin_mv", "static_power_nw", "meets")


def sizing_summary(result: SizingResult) -> dict[str, Any]:
    """Everything a reader or a script needs about the sweep and the chosen design (SI units)."""
    t = result.targets
    chosen = result.chosen_row()
    met = result.designs[result.designs["meets"]]
    summary: dict[str, Any] = {
        "technology": result.tech_description,
        "n_sizes": len(result.sizings),
        "loads_ohm": sorted(float(v) for v in result.table["load_ohm"].unique()),
        "design_loads_ohm": list(result.design_loads_ohm),
        "targets": {"max_abs_v_m_v": t.max_abs_v_m_v, "min_neuron_gain": t.min_neuron_gain,
                    "min_swing_fraction": t.min_swing_fraction, "max_tanh_rms_v": t.max_tanh_rms_v,
                    "min_noise_margin_v": t.min_noise_margin_v, "max_settle_s": t.max_settle_s},
        "objective": result.objective,
        "driver_power_w": result.driver_power_w,
        "settle": None if result.settle is None else {
            "source_ohm": result.settle.source_ohm, "step_fraction": result.settle.step_fraction,
            "window_s": result.settle.window_s, "edge_s": result.settle.edge_s, "wall_seconds": result.settle_seconds},
        "n_meeting_targets": int(len(met)),
        "n_decks": result.n_decks,
        "sim_seconds": result.sim_seconds,
        "wall_seconds": result.wall_seconds,
        "chosen": None,
    }
    if chosen is not None:
        sizing = result.chosen_sizing
        assert sizing is not None
        summary["chosen"] = {**chosen, "description": describe_sizing(sizing)}
    return summary


def write_sizing(result: SizingResult, out_dir: Path, *, make_plots: bool = True,
                 chosen_curves: pd.DataFrame | None = None, layers: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write tables, plots, ``summary.md`` and ``summary.json`` to ``out_dir``.

    Args:
        chosen_curves: VTC curves of the chosen design (a family table with ``load_ohm``), plotted
            when given.
        layers: per-layer sizing (:func:`~memspice.characterize.layer_sizing.size_layers`), written as
            ``sizing_layers.csv`` and summarized when given.

    Returns:
        The summary, with the written file names under ``files``.
    """
    out_dir = Path(out_dir)
    files: list[Path] = []
    parquet = importlib.util.find_spec("pyarrow") is not None
    tables = [("sizing_table", result.table), ("sizing_designs", result.designs)]
    if layers is not None:
        tables.append(("sizing_layers", layers))
    for name, frame in tables:
        files.append(write_atomic(out_dir / f"{name}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False)))
        if parquet:
            files.append(write_atomic(out_dir / f"{name}.parquet", lambda tmp, f=frame: f.to_parquet(tmp, index=False)))
    if make_plots:
        labels = {k: _short(s) for k, s in enumerate(result.sizings)}
        files.append(plots.size_load_maps(result.table, "v_m_v", out_dir / "sizing_v_m.png",
                                          "switching threshold V_M − mid-rail over size × load", "mV",
                                          quantity="V_M − mid-rail", scale=1e3,
                                          labels=labels, chosen=result.chosen, diverging=True))
        files.append(plots.size_load_maps(result.table, "peak_gain", out_dir / "sizing_gain.png",
                                          "peak gain |dV_out/dV_in| over size × load", "V/V",
                                          quantity="peak gain", labels=labels,
                                          chosen=result.chosen))
        if chosen_curves is not None and not chosen_curves.empty:
            files.append(plots.vtc_family(chosen_curves, "load_ohm", out_dir / "sizing_chosen_vtc.png",
                                          "chosen design: VTC over the load grid"))
    summary = sizing_summary(result)
    if layers is not None:
        summary["layers"] = [{k: plain_value(v) for k, v in r.items()} for r in layers.to_dict("records")]
    summary["files"] = [p.name for p in files] + ["summary.md", "summary.json"]
    write_text_atomic(out_dir / "summary.json", dumps_strict(summary, indent=2, default=float) + "\n")
    write_text_atomic(out_dir / "summary.md", sizing_markdown(result, summary))
    return summary


def _short(s: object) -> str:
    from memspice.circuit.builders import InverterSizing

    assert isinstance(s, InverterSizing)
    n = f"{s.wn_m * 1e6:.3g}" + (f"×{s.mn}" if s.mn > 1 else "") + f"/{s.ln_m * 1e6:.3g}"
    p = f"{s.wp_m * 1e6:.3g}" + (f"×{s.mp}" if s.mp > 1 else "") + f"/{s.lp_m * 1e6:.3g}"
    return f"n {n} p {p}"


def _design_view(designs: pd.DataFrame) -> pd.DataFrame:
    d = designs
    view = pd.DataFrame({
        "sizing": d["sizing"], "wn_um": d["wn_m"] * 1e6, "mn": d["mn"], "ln_um": d["ln_m"] * 1e6,
        "wp_um": d["wp_m"] * 1e6, "mp": d["mp"], "lp_um": d["lp_m"] * 1e6,
        "worst_abs_v_m_mv": d["worst_abs_v_m_v"] * 1e3, "min_neuron_gain": d["min_neuron_gain"],
        "min_swing_pct": d["min_swing_fraction"] * 100, "neuron_tanh_rms_mv": d["neuron_tanh_rms_v"] * 1e3,
        "max_tanh_rms_mv": d["max_tanh_rms_v"] * 1e3,
        "min_noise_margin_mv": d["min_noise_margin_v"] * 1e3, "static_power_nw": d["static_power_w"] * 1e9,
        "meets": d["meets"]})[list(_DESIGN_COLUMNS)]
    if "settle_s" in d.columns:
        view.insert(len(view.columns) - 1, "settle_ns", d["settle_s"] * 1e9)
        view.insert(len(view.columns) - 1, "energy_pj", d["energy_per_inference_j"] * 1e12)
    return view


def sizing_markdown(result: SizingResult, summary: dict[str, Any]) -> str:
    """Human-readable account: the grid, the cost, the chosen design and why, the best candidates."""
    t = result.targets
    tech = result.tech_description
    loads = summary["loads_ohm"]
    lines = ["# memspice inverter sizing", "",
             f"Technology {tech.get('technology')} ({tech.get('nmos')}/{tech.get('pmos')}), corner "
             f"{tech.get('corner')}, rails {float(tech.get('vss_v', 'nan')):+g}/{float(tech.get('vdd_v', 'nan')):+g} V, "
             f"{tech.get('temperature_c')} °C.", "",
             f"{summary['n_sizes']} sizes × {len(loads)} loads ({loads[0] / 1e6:.3g}–{loads[-1] / 1e6:.3g} MΩ on each "
             f"stage output) in {summary['n_decks']} ngspice run(s): {summary['sim_seconds']:.1f} s of simulation, "
             f"{summary['wall_seconds']:.1f} s with metrics and tanh fits.", "",
             "Targets at the design load(s) " + ", ".join(f"{v / 1e6:.3g} MΩ" for v in result.design_loads_ohm)
             + f", worst of both stages: |V_M − mid| ≤ {t.max_abs_v_m_v * 1e3:g} mV, neuron gain ≥ {t.min_neuron_gain:g}, "
             f"swing ≥ {100 * t.min_swing_fraction:g} % of the rails"
             + (f", neuron tanh RMS ≤ {t.max_tanh_rms_v * 1e3:g} mV" if t.max_tanh_rms_v is not None else "")
             + (f", noise margins ≥ {t.min_noise_margin_v * 1e3:g} mV" if t.min_noise_margin_v is not None else "")
             + (f", settling time ≤ {t.max_settle_s * 1e9:g} ns" if t.max_settle_s is not None else "")
             + ".", ""]
    if result.settle is not None:
        st = result.settle
        lines += [f"Settling transient ({result.settle_seconds:.1f} s) for every size meeting the static targets, at "
                  f"the design loads: input step ± {100 * st.step_fraction:g} % of the rails around the neuron's "
                  f"threshold through {st.source_ohm / 1e3:g} kΩ, {st.window_s * 1e9:g} ns per edge; settled = "
                  "both stage outputs within 10 % of their step. Energy per inference = the rails' energy to settle "
                  f"+ {result.driver_power_w * 1e6:g} µW of input drivers per neuron × the settling time. "
                  f"Objective: least {'energy per inference' if result.objective == 'energy' else 'static power'}.",
                  ""]
    chosen = summary["chosen"]
    view = _design_view(result.designs)
    if chosen is None:
        lines += ["## No design meets the targets", "", "Closest: " + _closest_text(result), ""]
        ranked = view.assign(_v=result.designs["violation"]).sort_values(["_v", "static_power_nw"]).drop(columns="_v")
    else:
        key = "energy_pj" if result.objective == "energy" else "static_power_nw"
        met = view[view["meets"]].sort_values(key)
        why = (f"It meets every target (|V_M| {chosen['worst_abs_v_m_v'] * 1e3:.3g} mV, neuron gain "
               f"{chosen['min_neuron_gain']:.3g}, swing {100 * chosen['min_swing_fraction']:.4g} %, neuron tanh RMS "
               f"{chosen['neuron_tanh_rms_v'] * 1e3:.3g} mV, noise margins ≥ {chosen['min_noise_margin_v'] * 1e3:.3g} mV) "
               + (f"at the least energy per inference, {chosen['energy_per_inference_j'] * 1e12:.4g} pJ (settling in "
                  f"{chosen['settle_s'] * 1e9:.4g} ns, static power {chosen['static_power_w'] * 1e9:.4g} nW)"
                  if result.objective == "energy" else
                  f"at the least static power, {chosen['static_power_w'] * 1e9:.4g} nW")
               + f", of the {len(met)} designs that do")
        if len(met) > 1:
            why += (f" (next: {met.iloc[1]['energy_pj']:.4g} pJ)" if result.objective == "energy"
                    else f" (next: {met.iloc[1]['static_power_nw']:.4g} nW)")
        lines += ["## Chosen design", "", f"**{chosen['description']}** (size #{chosen['sizing']}).", "", why + ".", ""]
        ranked = pd.concat([met, view[~view["meets"]].assign(_v=result.designs["violation"])
                            .sort_values("_v").drop(columns="_v")])
        one = result.table[result.table["sizing"] == chosen["sizing"]].sort_values("load_ohm")
        # about a dozen loads spread over the grid, the design loads always among them
        shown = np.zeros(len(one), dtype=bool)
        shown[::max(1, math.ceil(len(one) / 12))] = True
        shown |= np.isin(one["load_ohm"].to_numpy(), np.asarray(result.design_loads_ohm))
        one = one[shown]
        lines += ["Chosen design over the load grid (design loads included):", "",
                  markdown_table(pd.DataFrame({
                      "load_mohm": one["load_ohm"] / 1e6, "inv_v_m_mv": one["inverter_v_m_v"] * 1e3,
                      "neuron_v_m_mv": one["neuron_v_m_v"] * 1e3, "inv_gain": one["inverter_peak_gain"],
                      "neuron_gain": one["neuron_peak_gain"], "neuron_swing_pct": one["neuron_swing_fraction"] * 100,
                      "neuron_nm_l_mv": one["neuron_nm_l"] * 1e3, "neuron_nm_h_mv": one["neuron_nm_h"] * 1e3,
                      "neuron_tanh_rms_mv": one["neuron_rms_v"] * 1e3, "static_power_nw": one["static_power_w"] * 1e9}),
                      max_rows=len(one)), ""]
    if "layers" in summary:
        lines += ["## Per-layer sizing", "", "Each hidden layer judged at its median and heaviest neuron load "
                  "(the sum of the next crossbar's row conductances):", "",
                  markdown_table(pd.DataFrame([{
                      "layer": r["layer"], "neurons": r["neurons"], "median_load_mohm": r["median_load_ohm"] / 1e6,
                      "heaviest_load_mohm": r["heaviest_load_ohm"] / 1e6, "size": r["description"],
                      "static_power_nw": float(r.get("static_power_w", math.nan)) * 1e9,
                      "closest_misses": r.get("shortfall") or ""}
                      for r in summary["layers"]]), max_rows=15), ""]
    lines += ["## Best candidates", "", markdown_table(ranked, max_rows=15), "",
              "Files: " + ", ".join(summary["files"]), ""]
    return "\n".join(lines)


def _closest_text(result: SizingResult) -> str:
    from memspice.characterize.sizing import closest

    k = closest(result.designs)
    row = result.designs.set_index("sizing").loc[k]
    return f"{describe_sizing(result.sizings[k])} (size #{k}): {row['shortfall']}."
