"""calibrate() on the built-in card with the real ngspice, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.characterize.calibrate import calibrate
from memspice.circuit.builders import InverterSizing
from memspice.errors import ConfigError
from memspice.fit.calibration import Calibration, DeviceWindow, load_calibration, save_calibration
from memspice.tech.technology import builtin, sky130


@pytest.mark.ngspice
def test_calibrate_builtin_matches_phax_reference(tmp_path: Path) -> None:
    cal = calibrate(builtin(), InverterSizing(), load_ohm=0.9e6, loads_ohm=(2e5, 5e5, 9e5, 2e6),
                    degree=2, step_v=1e-3, current_step_v=0.025)
    inv, non = cal.activation.inverting, cal.activation.noninverting
    # PHAX (TSMC 90 nm): one inverter c4 ≈ 31.8 /V, two inverters ≈ 193 /V; the generic card
    # is shaped to land close to them.
    assert 25 < inv.c4 < 40 and inv.c2 < 0
    assert 150 < non.c4 < 260 and non.c2 > 0
    assert cal.residuals["noninverting_rms"] < 5e-3
    assert set(cal.residuals) >= {"inverting_rms", "inverting_max", "load_aware_noninverting_rms",
                                  "inverter_current_interp_rms_a"}
    # The load-aware model at the static load agrees with the static fit.
    assert cal.load_aware.noninverting.at(1 / 0.9e6).c4 == pytest.approx(non.c4, rel=0.1)
    # The inverter sinks current when its input is high and its output is held at mid-rail.
    spline = cal.inverter_current.interpolant()
    assert spline.ev(0.25, 0.0) < 0 < spline.ev(-0.25, 0.0)
    assert spline.ev(0.0, 0.0, dy=1) < 0  # output conductance is positive
    path = tmp_path / "cal.json"
    save_calibration(cal, path)
    assert load_calibration(path) == cal
    assert json.loads(path.read_text())["source"]["technology"] == "builtin"


@pytest.mark.ngspice
def test_calibrate_rejects_bad_load_grids() -> None:
    with pytest.raises(ConfigError, match="not a positive"):
        calibrate(builtin(), loads_ohm=(1e5, -2e5, 5e5, 1e6))
    with pytest.raises(ConfigError, match="distinct loads"):
        calibrate(builtin(), loads_ohm=(1e5, 1e5, 1e6), degree=3)
    with pytest.raises(ConfigError, match="not a positive"):
        calibrate(builtin(), load_ohm=float("nan"))


def test_unknown_corner_and_bad_window_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown corner"):
        sky130("xx")
    with pytest.raises(ConfigError, match="below g_max"):
        DeviceWindow(g_min_siemens=8e-6, g_max_siemens=1e-6)
    with pytest.raises(ConfigError):
        Calibration.from_dict({"format": "memspice-calibration", "version": 1})
    assert np.isfinite(DeviceWindow(1e-7, 8e-6).g_max_siemens)
