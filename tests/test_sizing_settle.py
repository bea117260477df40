"""Speed-aware sizing: settling figures from waveforms, the settling transient per size × load,
the settling-time target, the energy objective and their ``memspice size`` options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memspice.characterize.settling import SettleSpec, run_settling, settle_figures
from memspice.characterize.sizing import SizingGrid, Targets, choose, judge, run_sizing
from memspice.circuit.builders import InverterSizing
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.tech.technology import builtin

UM = 1e-6


def _edges(tau_rise: float, tau_fall: float, window: float = 1e-6, swing: float = 0.5) -> tuple[np.ndarray, list[np.ndarray]]:
    """An output that rises at ``window`` and falls at ``2·window`` with the given time constants."""
    t = np.linspace(0.0, 3 * window, 30001)
    v = np.full_like(t, -swing / 2)
    up = (t >= window) & (t < 2 * window)
    v[up] = swing / 2 - swing * np.exp(-(t[up] - window) / tau_rise)
    v_top = swing / 2 - swing * np.exp(-window / tau_rise)
    down = t >= 2 * window
    v[down] = -swing / 2 + (v_top + swing / 2) * np.exp(-(t[down] - 2 * window) / tau_fall)
    return t, [v]


def test_settle_figures_of_exponential_edges() -> None:
    t, outs = _edges(20e-9, 50e-9)
    power = np.full_like(t, 2e-6)
    f = settle_figures(t, outs, power, 1e-6, min_step_v=0.05)
    # within 10 % of the step after tau·ln(10)
    assert f["settle_rise_s"] == pytest.approx(20e-9 * math.log(10), rel=2e-3)
    assert f["settle_fall_s"] == pytest.approx(50e-9 * math.log(10), rel=2e-3)
    assert f["settle_s"] == f["settle_fall_s"]
    # constant power: energy = P × the mean of the two edges' settling times
    assert f["energy_to_settle_j"] == pytest.approx(2e-6 * (20e-9 + 50e-9) * math.log(10) / 2, rel=2e-3)
    assert f["transient_power_w"] == pytest.approx(2e-6)


def test_settle_figures_refuse_an_output_that_does_not_switch_or_settle() -> None:
    t, outs = _edges(20e-9, 50e-9, swing=0.02)  # a 20 mV step is below the 50 mV transition
    assert math.isnan(settle_figures(t, outs, np.zeros_like(t), 1e-6, min_step_v=0.05)["settle_s"])
    t, outs = _edges(20e-9, 2e-6)  # the falling edge is still moving at the end of its window
    finals = [(0.25, -0.25)]
    f = settle_figures(t, outs, np.zeros_like(t), 1e-6, min_step_v=0.05, finals=finals)
    assert math.isnan(f["settle_s"]) and math.isnan(f["energy_to_settle_j"]) and np.isfinite(f["settle_rise_s"])
    # judged against its end-of-window value instead, the slow edge would look settled
    assert np.isfinite(settle_figures(t, outs, np.zeros_like(t), 1e-6, min_step_v=0.05)["settle_s"])


@pytest.mark.parametrize("kwargs, message", [
    ({"source_ohm": 0.0}, "source_ohm"),
    ({"step_fraction": 0.6}, "at most 0.5"),
    ({"window_s": math.inf}, "window_s"),
    ({"window_s": 1e-8, "edge_s": 2e-9}, "a tenth of the window"),
])
def test_settle_spec_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SettleSpec(**kwargs)


def test_judge_and_choose_for_energy() -> None:
    base = {"wn_m": UM, "wp_m": UM, "ln_m": UM, "lp_m": UM, "mn": 1, "mp": 1, "load_ohm": 9e5,
            "inverter_v_m_v": 0.0, "neuron_v_m_v": 0.0, "neuron_peak_gain": 80.0, "inverter_swing_fraction": 0.99,
            "neuron_swing_fraction": 0.99, "inverter_rms_v": 4e-3, "neuron_rms_v": 2e-3, "inverter_nm_l": 0.2,
            "inverter_nm_h": 0.2, "neuron_nm_l": 0.2, "neuron_nm_h": 0.2}
    table = pd.DataFrame([
        {**base, "sizing": 0, "static_power_w": 1e-7, "settle_s": 2e-6, "energy_to_settle_j": 2e-13},  # least power
        {**base, "sizing": 1, "static_power_w": 3e-7, "settle_s": 2e-7, "energy_to_settle_j": 6e-14},  # fastest
        {**base, "sizing": 2, "static_power_w": 2e-7, "settle_s": math.inf, "energy_to_settle_j": math.inf},
        {**base, "sizing": 3, "static_power_w": 1e-7, "neuron_v_m_v": 0.05, "settle_s": math.nan,
         "energy_to_settle_j": math.nan},  # misses V_M: not simulated
    ])
    designs = judge(table, [9e5], Targets(), driver_power_w=10e-6)
    assert designs["energy_per_inference_j"].iloc[1] == pytest.approx(6e-14 + 10e-6 * 2e-7)
    assert choose(designs, "power") == 0 and choose(designs, "energy") == 1
    slow = judge(table, [9e5], Targets(max_settle_s=1e-6))
    assert slow["meets"].tolist() == [False, True, False, False]
    assert slow["meets_static"].tolist() == [True, True, True, False]
    assert "settling time ≤ 1000 ns misses by 1000 ns" in slow.loc[0, "shortfall"]
    assert "not settled in the window" in slow.loc[2, "shortfall"]
    assert "not simulated" in slow.loc[3, "shortfall"]


@pytest.mark.ngspice
def test_settling_run_on_the_builtin_card() -> None:
    strong, weak = InverterSizing(1.2 * UM, 2.0 * UM, 0.1 * UM, 0.1 * UM), InverterSizing(0.3 * UM, 0.5 * UM, 0.1 * UM, 0.1 * UM)
    spec = SettleSpec(window_s=100e-9, edge_s=0.1e-9, source_ohm=1e4, step_fraction=0.1)
    rows = run_settling(builtin(), [(0, strong, 2e5, 0.0), (1, weak, 2e5, 0.0)], spec).set_index("sizing")
    assert np.all(np.isfinite(rows["settle_s"])) and np.all(rows["settle_s"] > 0)
    # the settling time is at most the window and the energy is positive
    assert np.all(rows["settle_s"] < spec.window_s) and np.all(rows["energy_to_settle_j"] > 0)
    with pytest.raises(ConfigError, match="no threshold"):
        run_settling(builtin(), [(0, strong, 2e5, math.nan)], spec)


@pytest.mark.ngspice
def test_run_sizing_chooses_for_energy_on_the_builtin_card() -> None:
    grid = SizingGrid((0.3 * UM, 0.6 * UM, 1.2 * UM), (1.0 * UM, 2.0 * UM), (0.1 * UM,), (0.1 * UM,))
    spec = SettleSpec(window_s=100e-9, edge_s=0.1e-9)
    with pytest.raises(ConfigError, match="needs the settling run"):
        run_sizing(builtin(), grid, [9e5], objective="energy")
    with pytest.raises(ConfigError, match="objective"):
        run_sizing(builtin(), grid, [9e5], settle=spec, objective="speed")
    targets = Targets(min_neuron_gain=20.0)
    result = run_sizing(builtin(), grid, [9e5], targets=targets, step_v=2e-3, settle=spec, objective="energy",
                        driver_power_w=10e-6)
    d = result.designs
    simulated = d[np.isfinite(d["settle_s"].to_numpy(dtype=np.float64))]
    assert len(simulated) >= 2 and set(simulated["sizing"]) <= set(d.loc[d["meets_static"], "sizing"])
    assert d.loc[~d["meets_static"], "settle_s"].isna().all()
    chosen = result.chosen_row()
    assert chosen is not None
    assert chosen["energy_per_inference_j"] == pytest.approx(simulated["energy_per_inference_j"].min())
    # a settling target below every candidate's time leaves none
    fastest = float(simulated["settle_s"].min())
    none = run_sizing(builtin(), grid, [9e5], targets=Targets(min_neuron_gain=20.0, max_settle_s=fastest / 2),
                      step_v=2e-3, settle=spec, require=False)
    assert none.chosen is None and "settling time" in " ".join(none.designs["shortfall"])


@pytest.mark.ngspice
def test_size_command_energy_objective(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "size"
    assert main(["size", "--out", str(out), "--wn", "0.6,1.2", "--wp", "1,2", "--ln", "0.1", "--lp", "0.1",
                 "--loads", "9e5", "--min-gain", "20", "--step", "2e-3", "--objective", "energy",
                 "--driver-power", "10", "--settle-window", "100", "--no-plots", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["objective"] == "energy" and summary["settle"]["window_s"] == pytest.approx(1e-7)
    assert summary["chosen"]["energy_per_inference_j"] > 0
    designs = pd.read_csv(out / "sizing_designs.csv")
    assert {"settle_s", "energy_to_settle_j", "energy_per_inference_j"} <= set(designs.columns)
    assert "least energy per inference" in (out / "summary.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--max-settle", "-1"], "--max-settle must be a positive"),
    (["--driver-power", "nan"], "--driver-power must be a positive"),
    (["--objective", "energy", "--settle-step", "80"], "at most 0.5"),
    (["--settle", "--settle-window", "0"], "--settle-window must be a positive"),
])
def test_size_command_settle_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                    message: str) -> None:
    out = tmp_path / "never"
    base = ["size", "--out", str(out), "--wn", "0.6", "--wp", "1", "--ln", "0.1", "--lp", "0.1", "--loads", "9e5"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error:") and message in err and err.count("\n") == 1
    assert not out.exists()
