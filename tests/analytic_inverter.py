"""An analytic inverter for tests that must not need SPICE: an EKV-style current model.

Used to build calibrations whose inverter current table is known exactly, so the coupled
evaluator and the closed loop can be checked against hand-computed Kirchhoff balances.
"""

from __future__ import annotations

import numpy as np

from memspice.fit.calibration import (
    Calibration,
    InverterCurrentModel,
    phax_reference_calibration,
)

VDD, VSS = 0.25, -0.25


def _ekv(v: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, v / (2 * 0.0259)) ** 2


def ekv_inverter_current(v_in: np.ndarray, v_out: np.ndarray) -> np.ndarray:
    """Output current (A) of a symmetric EKV-style inverter between ±0.25 V rails."""
    n_slope, v_t, i_spec = 1.3, 0.12, 4e-7
    pinch_n = (v_in - VSS - v_t) / n_slope
    pinch_p = (VDD - v_in - v_t) / n_slope
    sink = i_spec * (_ekv(pinch_n) - _ekv(pinch_n - (v_out - VSS)))
    source = i_spec * (_ekv(pinch_p) - _ekv(pinch_p - (VDD - v_out)))
    return source - sink


def synthetic_calibration(points: int = 41) -> Calibration:
    """PHAX reference activations plus the analytic inverter's current table on a ``points`` grid."""
    grid = np.linspace(VSS, VDD, points)
    table = ekv_inverter_current(grid[:, None], grid[None, :])
    model = InverterCurrentModel(tuple(grid), tuple(grid), tuple(map(tuple, table)), 0.0, 0.0)
    base = phax_reference_calibration()
    return Calibration(base.rails, base.activation, base.device, inverter_current=model)
