"""The Yakopcic subcircuit in ngspice: pinched hysteresis, pulse updates, read linearity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.characterize import memristor
from memspice.characterize.memristor_report import memristor_study
from memspice.errors import ConfigError, FitError
from memspice.fit.device import distinguishable_levels, fit_pulse_response, read_nonlinearity
from memspice.tech.technology import builtin_models_dir


def test_model_file_declares_the_phax_subcircuit() -> None:
    text = (builtin_models_dir() / memristor.MODEL_FILE).read_text().lower()
    assert ".subckt yakopcic_phax te be xs" in text and "xo=" in text
    assert "if(" not in text.replace(" ", "") and "stp(" not in text


@pytest.mark.ngspice
def test_hysteresis_is_pinched_and_state_stays_in_window() -> None:
    h = memristor.hysteresis(amplitude_v=1.4, frequency_hz=1e5, cycles=1, x0=0.3)
    v, i, x = h["v"].to_numpy(), h["i_a"].to_numpy(), h["x"].to_numpy()
    assert np.max(np.abs(i[np.abs(v) < 1e-3])) < 1e-8  # pinched at the origin
    assert x.max() > 0.9 and x.min() < 0.05  # the drive switches the device both ways
    assert x.min() > memristor.X_MIN - 0.005 and x.max() <= 1.0 + 1e-9
    # Same voltage, different current on the two sweeps: a loop, not a line.
    up = (v > 0.5) & (v < 0.6) & (np.gradient(v) > 0)
    down = (v > 0.5) & (v < 0.6) & (np.gradient(v) < 0)
    assert abs(np.mean(i[up]) - np.mean(i[down])) > 1e-7


@pytest.mark.ngspice
def test_pulse_train_moves_conductance_both_ways_and_reads_are_linear() -> None:
    train = memristor.pulse_train(amplitude_v=1.3, width_s=20e-9, n_pulses=10)
    g = train.table["g_siemens"].to_numpy()
    assert g[0] == pytest.approx(8e-6 * memristor.X_MIN, rel=1e-3)  # G = 8 µS·x
    assert np.all(np.diff(g[:11]) > 0) and np.all(np.diff(g[10:]) < 0)
    assert train.potentiation.rms_siemens < 0.05 * (g.max() - g.min())
    reads = memristor.read_sweep(states=(0.015, 1.0), read_v=0.25)
    assert reads["nonlinearity"].max() < 1e-3  # ~1e-4 linear at ±0.25 V (ARCHITECTURE §4)
    window = memristor.device_window(train, sigma_siemens=20e-9)
    assert window.g_min_siemens < window.g_max_siemens and window.levels >= 2


@pytest.mark.ngspice
def test_memristor_study_writes_files(tmp_path: Path) -> None:
    summary = memristor_study(tmp_path, n_pulses=5, make_plots=False)
    assert json.loads((tmp_path / "memristor.json").read_text())["levels"] == summary["levels"]
    assert (tmp_path / "memristor_pulses.csv").is_file()


def test_device_fits_on_synthetic_data() -> None:
    n = np.arange(1, 21)
    g = 1e-7 + 5e-6 * (1 - np.exp(-n / 8.0)) / (1 - np.exp(-20 / 8.0))
    fit = fit_pulse_response(g, 1e-7)
    assert fit.nu_pulses == pytest.approx(8.0, rel=1e-4) and fit.nonlinearity == pytest.approx(2.5, rel=1e-4)
    with pytest.raises(FitError):
        fit_pulse_response(np.full(5, 1e-6), 1e-6)
    assert distinguishable_levels(0.0 + 1e-7, 8e-6, 0.1e-6) == 14
    assert distinguishable_levels(1e-7, 8e-6, 1e-9, n_steps=30) == 31
    with pytest.raises(ConfigError):
        distinguishable_levels(8e-6, 1e-7, 1e-8)
    with pytest.raises(FitError, match="fewer than 2"):
        distinguishable_levels(1e-7, 8e-6, 5e-6)
    v = np.linspace(-0.25, 0.25, 101)
    assert read_nonlinearity(v, 1e-6 * np.sinh(0.05 * v)) < 1e-3


@pytest.mark.ngspice
def test_read_resistor_matches_the_dynamic_model_at_read_voltages() -> None:
    from memspice.circuit.deck import Dc, Deck, Include, ModelRoot, Save, Sweep
    from memspice.circuit.elements import SubcktInstance, VoltageSource
    from memspice.sim import simulate
    from memspice.tech.technology import BUILTIN_ROOT

    x = 0.4
    deck = Deck(
        title="read resistor vs yakopcic",
        elements=(VoltageSource("r", "te", "0", 0.0), VoltageSource("a", "te", "a", 0.0),
                  VoltageSource("b", "te", "b", 0.0),
                  SubcktInstance("ra", ("a", "0"), "memristor_read", (("g", 8e-6 * x),)),
                  SubcktInstance("yb", ("b", "0", "xs"), "yakopcic_phax", (("xo", x),))),
        includes=(Include(BUILTIN_ROOT, "memristor_read.sub"), Include(BUILTIN_ROOT, memristor.MODEL_FILE)),
        model_roots=(ModelRoot(BUILTIN_ROOT, str(builtin_models_dir())),),
        analyses=(Dc(Sweep("r", -0.25, 0.25, 0.05)),),
        saves=(Save("v", "te"), Save("i", "a"), Save("i", "b")),
    )
    plot = simulate(deck).plots[0]
    np.testing.assert_allclose(plot["i(va)"], 8e-6 * x * plot["te"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(plot["i(vb)"], plot["i(va)"], rtol=1e-4, atol=1e-12)
