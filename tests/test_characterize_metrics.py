"""Noise margins of two-peaked gain curves: V_IL/V_IH are the unity-gain points that bracket V_M."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memspice.characterize.metrics import unity_gain_points, vtc_metrics
from memspice.characterize.sweeps import Condition, load_copies, run_family
from memspice.circuit.builders import InverterSizing
from memspice.tech.technology import builtin

X = np.linspace(-0.25, 0.25, 5001)


def _edge(height_v: float, k_per_v: float) -> float:
    """Distance from a step's centre to where ``height·k·sech²(k·d) = 1``."""
    return math.acosh(math.sqrt(height_v * k_per_v)) / k_per_v


def test_two_peaked_curve_brackets_the_threshold() -> None:
    # A tall, moderately steep step at −80 mV (gain 15) and a short, steeper one at +100 mV
    # (gain 30): the output midpoint falls on the first step, the highest gain on the second.
    y = -0.15 * np.tanh(100 * (X + 0.08)) - 0.10 * np.tanh(300 * (X - 0.10))
    m = vtc_metrics(X, y)
    assert m["v_m"] == pytest.approx(-0.08 + math.atanh(0.10 / 0.15) / 100, abs=2e-4)
    assert m["peak_gain"] == pytest.approx(30.0, rel=1e-2)
    assert m["v_il"] <= m["v_m"] <= m["v_ih"]
    assert m["v_il"] == pytest.approx(-0.08 - _edge(0.15, 100), abs=2e-4)
    assert m["v_ih"] == pytest.approx(-0.08 + _edge(0.15, 100), abs=2e-4)
    # the four unity crossings are there; the bracketing pair is the inner one of the first step
    assert unity_gain_points(X, np.abs(np.gradient(y, X))).size == 4


def test_threshold_on_a_shoulder_takes_the_nearest_step_edges() -> None:
    # Two equal steps at ±0.1 V: V_M sits on the flat shoulder between them (gain < 1 there).
    y = -0.125 * np.tanh(200 * (X + 0.1)) - 0.125 * np.tanh(200 * (X - 0.1)) + 1e-3 * X
    m = vtc_metrics(X, y)
    assert abs(m["v_m"]) < 0.09
    assert m["v_il"] == pytest.approx(-0.1 + _edge(0.125, 200), abs=5e-4)
    assert m["v_ih"] == pytest.approx(0.1 - _edge(0.125, 200), abs=5e-4)


def test_gain_below_one_has_no_unity_points() -> None:
    m = vtc_metrics(X, -0.5 * X)
    assert math.isnan(m["v_il"]) and math.isnan(m["v_ih"])


@pytest.mark.ngspice
def test_heavily_loaded_inverter_from_ngspice() -> None:
    # 100 kΩ on each stage output flattens the built-in inverter into a two-peaked gain curve;
    # the walk-from-the-highest-peak definition put the neuron's V_IL above its V_M here.
    result = run_family([Condition(builtin())], load_copies([InverterSizing()], [1e5, 2e6]), step_v=1e-3, fit=False)
    curves = result.curves
    loaded = curves[(curves["load_ohm"] == 1e5) & (curves["stage"] == "neuron")]
    gain = np.abs(np.gradient(loaded["v_out"].to_numpy(), loaded["v_in"].to_numpy()))
    assert unity_gain_points(loaded["v_in"].to_numpy(), gain).size >= 4  # really two peaks
    m = result.metrics
    assert (m["v_il"] <= m["v_m"]).all() and (m["v_m"] <= m["v_ih"]).all()
    assert (m["nm_l"] > 0).all() and (m["nm_h"] > 0).all()
