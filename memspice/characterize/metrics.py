"""Static metrics of one voltage transfer curve (VTC).

All functions take the swept input ``v_in`` (V, increasing) and the output ``v_out`` (V) of
one curve. Definitions (textbook CMOS inverter, extended to non-inverting chains by the sign
of the slope):

- ``v_m``: switching threshold, where ``v_out`` crosses the midpoint of its own extremes;
- ``peak_gain``: largest ``|dV_out/dV_in|``;
- ``v_il`` / ``v_ih``: the unity-gain points (``|slope| = 1``) nearest ``v_m`` below / above it
  (so ``v_il ≤ v_m ≤ v_ih`` even when the gain curve has two peaks);
- ``v_ol`` / ``v_oh``: lowest / highest output level (V);
- ``nm_l = v_il − v_ol``, ``nm_h = v_oh − v_ih`` (V);
- ``swing = v_oh − v_ol`` (V).
"""

from __future__ import annotations

import math

import numpy as np

from memspice.fit.tanh_fit import midpoint_crossing


def unity_gain_points(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Every input (V) where ``gain`` crosses 1, linearly interpolated, in increasing order."""
    d = gain - 1.0
    edges = np.nonzero((d[:-1] >= 0) != (d[1:] >= 0))[0]
    return x[edges] - d[edges] * (x[edges + 1] - x[edges]) / (d[edges + 1] - d[edges])


def bracketing_unity_points(x: np.ndarray, gain: np.ndarray, v_m: float) -> tuple[float, float]:
    """``(v_il, v_ih)``: the unity-gain points nearest ``v_m`` below and above it (V).

    A heavily loaded inverter can have a two-peaked gain curve (a double step with a shoulder
    near mid-rail); walking out from the highest peak would then put both points on one side
    of the threshold. Taking the nearest crossing on each side keeps ``v_il ≤ v_m ≤ v_ih``
    for any curve. A side with no crossing gives NaN.
    """
    points = unity_gain_points(x, gain)
    below = points[points <= v_m]
    above = points[points >= v_m]
    return (float(below[-1]) if below.size else math.nan, float(above[0]) if above.size else math.nan)


def vtc_metrics(v_in: np.ndarray, v_out: np.ndarray) -> dict[str, float]:
    """Metrics of one VTC (see the module docstring); unity-gain points are NaN when the gain
    never exceeds 1.

    Raises:
        memspice.errors.FitError: the curve never crosses its midpoint.
    """
    x = np.asarray(v_in, dtype=np.float64)
    y = np.asarray(v_out, dtype=np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    v_ol, v_oh = float(y.min()), float(y.max())
    v_m = midpoint_crossing(x, y, 0.5 * (v_ol + v_oh))
    slope = np.gradient(y, x)
    gain = np.abs(slope)
    peak_index = int(np.argmax(gain))
    peak = float(gain[peak_index])
    v_il, v_ih = bracketing_unity_points(x, gain, v_m) if peak > 1.0 else (math.nan, math.nan)
    inverting = bool(slope[peak_index] < 0)
    # For an inverter a low input gives the HIGH output: NM_L = V_IL − V_OL, NM_H = V_OH − V_IH.
    return {
        "v_m": v_m,
        "peak_gain": peak,
        "v_il": v_il,
        "v_ih": v_ih,
        "v_ol": v_ol,
        "v_oh": v_oh,
        "nm_l": v_il - v_ol,
        "nm_h": v_oh - v_ih,
        "swing": v_oh - v_ol,
        "inverting": float(inverting),
    }


def supply_metrics(i_vdd: np.ndarray, i_vss: np.ndarray, vdd: float, vss: float) -> dict[str, float]:
    """Static supply current and power over a sweep.

    ngspice reports a source's current flowing into its positive terminal, so the current a
    positive ``vdd`` rail delivers is ``−i(vdd)``.

    Returns:
        ``i_dd_mean_a`` / ``i_dd_max_a`` (A) delivered by the VDD rail, and ``power_mean_w`` /
        ``power_max_w`` (W) delivered by both rails.
    """
    i_dd = -np.asarray(i_vdd, dtype=np.float64)
    i_ss = -np.asarray(i_vss, dtype=np.float64)
    power = i_dd * vdd + i_ss * vss
    return {
        "i_dd_mean_a": float(np.mean(i_dd)),
        "i_dd_max_a": float(np.max(np.abs(i_dd))),
        "power_mean_w": float(np.mean(power)),
        "power_max_w": float(np.max(power)),
    }


def require_crossing(v_in: np.ndarray, v_out: np.ndarray) -> None:
    """Raise :class:`memspice.errors.FitError` unless the curve crosses its midpoint (cheap pre-check)."""
    y = np.asarray(v_out, dtype=np.float64)
    midpoint_crossing(v_in, y, 0.5 * (float(y.min()) + float(y.max())))

