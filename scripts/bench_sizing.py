"""Benchmark: inverter sizing per technology, against the reference sizing, in one run.

For each technology the default size grid of ``memspice size`` and the reference sizing (PHAX's
Wn 0.6 µm / Wp 1.0 µm / L 0.1 µm on the built-in card, the current preset on sky130) are
swept together over the load grid; the design meeting the targets at the least static power
is chosen and compared with the reference at the design load. The sweep speed is compared
with its baselines on the design-load points: one ngspice process per size x load point, and
one scipy tanh fit per curve.
With ``--run DIR`` (a finished ``memspice run`` of the chosen design on sky130, e.g.
examples/mnist_sky130.toml) the sky130 result also holds that run's SPICE and float-baseline
accuracy, its agreement, static power and energy per inference (rails and input drivers until
the outputs settle); ``--reference-run DIR`` adds the same figures for a run at the reference
sizing and the energy ratio. A run's own transient uses a 1 µs period, which a slow design may
not settle in; ``--transient DIR`` / ``--reference-transient DIR`` take the energy from a
``memspice validate --transient N --period NS`` of that run's network instead. The energy per
inference is given only when every transient sample settled (a mean over the settled ones
would leave out the slowest). Nothing is simulated for these: they read the runs'
``summary.json``.
With ``--settle`` the sweep also runs the settling transient (docs/sizing.md, "Speed and
energy") for every size meeting the targets and for the reference, chooses the design of least
energy per inference (``--driver-power`` µW of input drivers per neuron over the settling time)
and prints its settling time and energy against the reference's.
Ends with one line of JSON.

    python scripts/bench_sizing.py [--quick] [--techs builtin,sky130] [--corner tt]
                                   [--max-tanh-rms MV] [--max-vm MV] [--settle [--driver-power UW]]
                                   [--run DIR [--transient DIR]]
                                   [--reference-run DIR [--reference-transient DIR]]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from typing import Any

import numpy as np

DESIGN_LOAD_OHM = 0.9e6


def _figures(result: Any, index: int) -> dict[str, Any]:
    """The figures of size ``index`` at the design load (V, V/V, W)."""
    row = result.table[(result.table["sizing"] == index) & (result.table["load_ohm"] == result.design_loads_ohm[0])]
    row = row.iloc[0]
    s = result.sizings[index]
    return {
        "sizing": {"wn_um": round(s.wn_m * 1e6, 6), "wp_um": round(s.wp_m * 1e6, 6), "ln_um": round(s.ln_m * 1e6, 6),
                   "lp_um": round(s.lp_m * 1e6, 6), "mn": s.mn, "mp": s.mp},
        "v_m": float(row["neuron_v_m_v"]), "inverter_v_m": float(row["inverter_v_m_v"]),
        "neuron_gain": float(row["neuron_peak_gain"]), "inverter_gain": float(row["inverter_peak_gain"]),
        "swing_fraction": float(min(row["inverter_swing_fraction"], row["neuron_swing_fraction"])),
        "tanh_rms_v": float(row["neuron_rms_v"]), "inverter_tanh_rms_v": float(row["inverter_rms_v"]),
        "noise_margin_v": float(min(row["neuron_nm_l"], row["neuron_nm_h"])),
        "static_power_w": float(row["static_power_w"]),
    }


def _bench_fits(curves: Any, midpoint: float) -> dict[str, Any]:
    """One ``fit_tanh`` per curve against ``fit_tanh_many`` on the same curves."""
    from memspice.fit.tanh_batch import fit_tanh_many
    from memspice.fit.tanh_fit import fit_tanh

    groups = [g for _, g in curves.groupby(["sizing", "load_ohm", "stage"], sort=True)]
    v_in = groups[0]["v_in"].to_numpy()
    outputs = np.array([g["v_out"].to_numpy() for g in groups])
    fit_tanh(v_in, outputs[0], midpoint=midpoint)  # warm-up: scipy's import is not the fit's cost
    fit_tanh_many(v_in, outputs[:1], midpoint=midpoint)
    start = time.perf_counter()
    single = [fit_tanh(v_in, y, midpoint=midpoint) for y in outputs]
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    many = fit_tanh_many(v_in, outputs, midpoint=midpoint)
    batched_s = time.perf_counter() - start
    diff = max(abs(b.rms_v - a.rms_v) / a.rms_v for a, b in zip(single, many))  # type: ignore[union-attr]
    return {"curves": len(groups), "single_s": round(single_s, 3), "batched_s": round(batched_s, 3),
            "ratio": round(single_s / batched_s, 2), "max_rms_rel_diff": float(diff)}


def _quick_grid(tech_name: str) -> Any:
    from memspice.characterize.sizing import SizingGrid

    um = 1e-6
    if tech_name == "builtin":
        return SizingGrid((0.3 * um, 0.6 * um, 1.2 * um), (1.0 * um, 2.0 * um), (0.1 * um,), (0.1 * um,))
    return SizingGrid((50 * um,), (25 * um, 35 * um, 50 * um), (0.5 * um, 0.8 * um), (0.5 * um,), mn=(6, 8, 12))


def bench_technology(tech_name: str, corner: str, quick: bool, max_tanh_rms_v: float | None,
                     max_abs_v_m_v: float | None = None, settle_driver_w: float | None = None) -> dict[str, Any]:
    from memspice.characterize.presets import default_grid, default_sizing
    from memspice.characterize.sizing import copies_per_deck, describe_sizing, run_sizing
    from memspice.characterize.sweeps import Condition, load_copies, run_family
    from memspice.sim import SimOptions
    from memspice.tech.technology import builtin, sky130

    tech = builtin() if tech_name == "builtin" else sky130(corner)
    grid = _quick_grid(tech_name) if quick else default_grid(tech_name)
    reference = default_sizing(tech_name)
    grid.check(tech)
    sizings = [*grid.sizings(), reference]
    loads = [DESIGN_LOAD_OHM] if quick else [float(v) for v in np.geomspace(1e5, 2e6, 39)]
    options = SimOptions(timeout_s=600)
    targets = _targets(max_tanh_rms_v, max_abs_v_m_v)
    result = run_sizing(tech, sizings, loads, design_loads_ohm=[DESIGN_LOAD_OHM], targets=targets, options=options,
                        require=False)

    # sweep speed on the design-load points: batched decks vs one ngspice process per point
    copies = load_copies(sizings, [DESIGN_LOAD_OHM])
    start = time.perf_counter()
    batched = run_family([Condition(tech)], copies, options=options, max_copies=copies_per_deck(len(copies)),
                         fit=False, keep_curves=True)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    per_point = run_family([Condition(tech)], copies, options=options, max_copies=1, fit=False, keep_curves=False)
    per_point_s = time.perf_counter() - start
    agree = float(np.max(np.abs(batched.metrics["v_m"].to_numpy() - per_point.metrics["v_m"].to_numpy())))

    fits = _bench_fits(batched.curves, tech.rails.mid)

    ref = _figures(result, len(sizings) - 1)
    out: dict[str, Any] = {"corner": corner, "n_sizes": len(sizings), "n_loads": len(result.table["load_ohm"].unique()),
                           "design_load_ohm": DESIGN_LOAD_OHM, "sweep_wall_s": round(result.wall_seconds, 3),
                           "sweep_sim_s": round(result.sim_seconds, 3), "sweep_decks": result.n_decks,
                           "speed": {"points": len(copies), "batched_s": round(batched_s, 3),
                                     "batched_decks": batched.n_decks, "per_point_s": round(per_point_s, 3),
                                     "per_point_decks": per_point.n_decks,
                                     "ratio": round(per_point_s / batched_s, 3), "max_v_m_diff_v": agree},
                           "fits": fits,
                           "reference": ref, "chosen": None}
    print(f"\n== {tech_name} {corner}: {len(sizings)} sizes x {out['n_loads']} loads, {result.n_decks} ngspice runs, "
          f"{result.wall_seconds:.1f} s (simulation {result.sim_seconds:.1f} s summed over processes)")
    print(f"speed on {len(copies)} design-load points: batched {batched_s:.2f} s in {batched.n_decks} runs, "
          f"one process per point {per_point_s:.2f} s in {per_point.n_decks} runs "
          f"(ratio {per_point_s / batched_s:.2f}x; V_M agree to {agree:.2g} V)")
    print(f"tanh fits of those {fits['curves']} curves: one fit_tanh each {fits['single_s']:.2f} s, batched "
          f"{fits['batched_s']:.2f} s (ratio {fits['ratio']:.1f}x; RMS agree to {fits['max_rms_rel_diff']:.1g} relative)")
    _print("reference", describe_sizing(reference), ref)
    if result.chosen is None:
        designs = result.designs
        best = designs[designs["usable"]].sort_values("violation").iloc[0]
        out["unmet"] = str(best["shortfall"])
        print(f"no design meets the targets; closest: {describe_sizing(result.sizings[int(best['sizing'])])}: "
              f"{best['shortfall']}")
    else:
        chosen = _figures(result, result.chosen)
        out["chosen"] = chosen
        _print("chosen", describe_sizing(result.sizings[result.chosen]), chosen)
        print(f"chosen / reference static power: {chosen['static_power_w'] / ref['static_power_w']:.3f}")
    if settle_driver_w is not None:
        out["settle"] = bench_settle(tech, sizings, loads, targets, options, settle_driver_w)
    return out


def bench_settle(tech: Any, sizings: list[Any], loads: list[float], targets: Any, options: Any,
                 driver_w: float) -> dict[str, Any]:
    """The least-energy design (settling run, objective ``energy``) against the reference (the
    last of ``sizings``), both at the design load."""
    from memspice.characterize.settling import SettleSpec, run_settling
    from memspice.characterize.sizing import describe_sizing, run_sizing

    spec = SettleSpec(window_s=5e-6 if tech.name == "sky130" else 2e-7,
                      edge_s=1e-9 if tech.name == "sky130" else 1e-11)
    start = time.perf_counter()
    result = run_sizing(tech, sizings, loads, design_loads_ohm=[DESIGN_LOAD_OHM], targets=targets, options=options,
                        require=False, settle=spec, objective="energy", driver_power_w=driver_w)
    ref_index = len(sizings) - 1
    vm = result.table[(result.table["sizing"] == ref_index) & (result.table["load_ohm"] == DESIGN_LOAD_OHM)]
    ref = run_settling(tech, [(ref_index, sizings[ref_index], DESIGN_LOAD_OHM, float(vm["neuron_v_m_v"].iloc[0]))],
                       spec, options=options).iloc[0]
    ref_energy = float(ref["energy_to_settle_j"]) + driver_w * float(ref["settle_s"])
    out: dict[str, Any] = {"driver_power_w": driver_w, "window_s": spec.window_s, "step_fraction": spec.step_fraction,
                           "wall_s": round(time.perf_counter() - start, 3),
                           "candidates": int(np.isfinite(result.designs["settle_s"].to_numpy(dtype=np.float64)).sum()),
                           "reference": {"settle_s": float(ref["settle_s"]), "energy_per_inference_j": ref_energy},
                           "chosen": None}
    print(f"reference settles in {ref['settle_s'] * 1e9:.1f} ns, {ref_energy * 1e12:.3f} pJ per inference "
          f"(with {driver_w * 1e6:g} µW of drivers per neuron)")
    row = result.chosen_row()
    if row is None:
        print("settling: no design meets the targets and settles in the window")
        return out
    out["chosen"] = {"sizing": describe_sizing(result.sizings[result.chosen]), "settle_s": row["settle_s"],
                     "energy_per_inference_j": row["energy_per_inference_j"],
                     "worst_abs_v_m_v": row["worst_abs_v_m_v"], "min_neuron_gain": row["min_neuron_gain"]}
    out["settle_ratio_chosen_to_reference"] = row["settle_s"] / float(ref["settle_s"])
    out["energy_ratio_chosen_to_reference"] = row["energy_per_inference_j"] / ref_energy
    print(f"least energy: {describe_sizing(result.sizings[result.chosen])} settles in {row['settle_s'] * 1e9:.1f} ns, "
          f"{row['energy_per_inference_j'] * 1e12:.3f} pJ per inference; / reference: settling "
          f"{out['settle_ratio_chosen_to_reference']:.2f}x, energy {out['energy_ratio_chosen_to_reference']:.2f}x")
    return out


def _targets(max_tanh_rms_v: float | None, max_abs_v_m_v: float | None) -> Any:
    from memspice.characterize.sizing import Targets

    return Targets(max_tanh_rms_v=max_tanh_rms_v) if max_abs_v_m_v is None else \
        Targets(max_abs_v_m_v=max_abs_v_m_v, max_tanh_rms_v=max_tanh_rms_v)


def run_figures(run_dir: Path, transient_dir: Path | None = None) -> dict[str, Any]:
    """Accuracy, power and energy of a finished ``memspice run`` (its ``summary.json``).

    ``transient_dir``: a ``memspice validate --transient`` of the same network (its
    ``summary.json``), whose settling energy and delay replace the run's.

    Raises:
        ConfigError: a missing or unreadable summary, or a run without a validation stage.
    """
    from memspice.errors import ConfigError

    def read(path: Path) -> dict[str, Any]:
        try:
            return json.loads((path / "summary.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path / 'summary.json'}: {exc}") from None

    stages = read(run_dir).get("stages", {})
    va, tr = stages.get("validate"), stages.get("train", {})
    if not va or "spice_accuracy" not in va:
        raise ConfigError(f"{run_dir} is not a finished memspice run (no validate stage in its summary.json)")
    transient = va.get("transient", {})
    source = "run"
    if transient_dir is not None:
        transient = read(transient_dir).get("transient")
        if not transient:
            raise ConfigError(f"{transient_dir} holds no transient figures (memspice validate --transient N)")
        source = str(transient_dir.name)
    n = transient.get("samples", 0)
    all_settled = n > 0 and transient.get("settled", 0) == n
    try:  # the run's [sizing] as configured (zeros: the technology's preset)
        sizing = tomllib.loads((run_dir / "config.toml").read_text()).get("sizing")
    except (OSError, ValueError):
        sizing = None
    return {
        "sizing": sizing,
        "spice_accuracy": va["spice_accuracy"], "float_accuracy": tr.get("float_baseline_test_accuracy"),
        "model_accuracy": tr.get("model_test_accuracy"), "agreement": va.get("agreement"),
        "model_val_accuracy": tr.get("model_val_accuracy"), "float_val_accuracy": tr.get("float_baseline_val_accuracy"),
        "spice_samples": va.get("n_samples"),
        "rail_power_w": va.get("static_power_w", {}).get("mean"),
        "input_drive_power_w": va.get("input_drive_power_w", {}).get("mean"),
        # a mean over the settled samples only would leave out the slowest: none unless all settled
        "energy_per_inference_j": transient.get("total_energy_to_settle_j_mean") if all_settled else None,
        "rail_energy_to_settle_j": transient.get("energy_to_settle_j_mean"),
        "input_energy_to_settle_j": transient.get("input_energy_to_settle_j_mean"),
        "energy_per_period_j": transient.get("total_energy_j_mean"),
        "transient_period_s": transient.get("period_s"),
        "transient_settled": f"{transient.get('settled', 0)}/{n}", "delay_mean_s": transient.get("delay_s_mean"),
        "delay_max_s": transient.get("delay_s_max"),
        "transient_source": source,
    }


def _print_run(label: str, f: dict[str, Any]) -> None:
    energy = f["energy_per_inference_j"]
    val = f["model_val_accuracy"]
    print(f"{label:9s} run: validation {'n/a' if val is None else f'{100 * val:.2f} %'}, "
          f"SPICE {100 * f['spice_accuracy']:.2f} %, float {100 * (f['float_accuracy'] or 0):.2f} %, "
          f"agreement {100 * (f['agreement'] or 0):.2f} %, energy per inference "
          f"{'n/a' if energy is None else f'{energy * 1e9:.3f} nJ'} ({f['transient_settled']} settled in "
          f"{(f['transient_period_s'] or 0) * 1e9:.0f} ns)")


def _print(label: str, description: str, f: dict[str, Any]) -> None:
    print(f"{label:9s} {description}: V_M {f['v_m'] * 1e3:+.2f} mV (inverter {f['inverter_v_m'] * 1e3:+.2f}), "
          f"neuron gain {f['neuron_gain']:.1f}, swing {100 * f['swing_fraction']:.2f} %, neuron tanh RMS "
          f"{f['tanh_rms_v'] * 1e3:.2f} mV (inverter {f['inverter_tanh_rms_v'] * 1e3:.2f}), "
          f"static power {f['static_power_w'] * 1e9:.1f} nW")


def main(argv: list[str] | None = None) -> int:
    from memspice.errors import ConfigError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a small grid at the design load only (well under a minute)")
    parser.add_argument("--techs", default="builtin,sky130", help="comma list of builtin, sky130 (default both)")
    parser.add_argument("--corner", default="tt", help="sky130 corner (default tt)")
    parser.add_argument("--max-tanh-rms", type=float, default=None,
                        help="also require the neuron tanh-fit RMS below this many mV")
    parser.add_argument("--max-vm", type=float, default=None,
                        help="|V_M - mid-rail| target in mV (default: memspice size's)")
    parser.add_argument("--settle", action="store_true",
                        help="also run the settling transient and choose the least energy per inference")
    parser.add_argument("--driver-power", type=float, default=12.7,
                        help="input drivers' power per neuron in µW for --settle (default 12.7: the sky130 "
                             "example's 1.40 mW over its 110 neurons)")
    parser.add_argument("--run", type=Path, help="a finished memspice run of the chosen design on sky130")
    parser.add_argument("--transient", type=Path, help="memspice validate --transient of --run's network")
    parser.add_argument("--reference-run", type=Path, help="the same run at the reference sizing")
    parser.add_argument("--reference-transient", type=Path, help="memspice validate --transient of its network")
    args = parser.parse_args(argv)
    if (args.transient or args.reference_run) and not args.run:
        parser.error("--transient and --reference-run need --run")
    if args.reference_transient and not args.reference_run:
        parser.error("--reference-transient needs --reference-run")
    techs = [t.strip() for t in args.techs.split(",") if t.strip()]
    if not techs or any(t not in ("builtin", "sky130") for t in techs):
        parser.error("--techs takes builtin and/or sky130")
    runs: dict[str, Any] = {}
    try:  # read the runs first: a wrong directory stops before the sweeps
        if args.run:
            runs["chosen"] = run_figures(args.run, args.transient)
        if args.reference_run:
            runs["reference"] = run_figures(args.reference_run, args.reference_transient)
    except ConfigError as exc:
        parser.error(str(exc))
    max_rms = None if args.max_tanh_rms is None else args.max_tanh_rms * 1e-3
    max_vm = None if args.max_vm is None else args.max_vm * 1e-3
    start = time.perf_counter()
    settle_w = args.driver_power * 1e-6 if args.settle else None
    results = {t: bench_technology(t, args.corner if t == "sky130" else "tt", args.quick, max_rms, max_vm, settle_w)
               for t in techs}
    if runs and "sky130" in results:
        for label, figures in runs.items():
            _print_run(label, figures)
        results["sky130"]["runs"] = runs
        ref_e = runs.get("reference", {}).get("energy_per_inference_j")
        if ref_e and runs["chosen"]["energy_per_inference_j"]:
            ratio = runs["chosen"]["energy_per_inference_j"] / ref_e
            results["sky130"]["energy_ratio_chosen_to_reference"] = ratio
            results["sky130"]["energy_saving_chosen_vs_reference"] = 1.0 - ratio  # ERIM's aim: 0.56
            print(f"chosen / reference energy per inference: {ratio:.3f} (saving {100 * (1 - ratio):.1f} %; "
                  f"ERIM's aim 56 %)")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    t = _targets(max_rms, max_vm)
    targets = {"max_abs_v_m_v": t.max_abs_v_m_v, "min_neuron_gain": t.min_neuron_gain,
               "min_swing_fraction": t.min_swing_fraction, "max_tanh_rms_v": t.max_tanh_rms_v}
    print(json.dumps({"bench": "sizing", "quick": args.quick, "targets": targets, "technologies": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
