"""Power, energy and delay from supply currents and output waveforms.

Sign convention: ngspice reports a voltage source's branch current flowing *into* its ``+``
terminal, so the power a rail delivers to the circuit is ``−V·I``. Only the two supply rails
are counted; the input drivers (DACs in a real system) are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memspice.circuit.wiring import Rails, output_node
from memspice.errors import SimFailed
from memspice.sim.rawfile import Plot

#: A sample's outputs have settled when each stays within this fraction of its step (PHAX: 10 %).
SETTLE_FRACTION = 0.10
#: An output transitions when its step is at least this fraction of the rail-to-rail swing;
#: smaller steps define no delay. (A band of 10 % of a 1 mV step is 0.1 mV, which the slow RC
#: tail of a lightly moving output does not enter before the period ends: the delay then grew
#: with the period — 47 ns at a 50 ns period, 173 ns at 200 ns.)
TRANSITION_FRACTION = 0.10


def static_power(i_vdd: np.ndarray, i_vss: np.ndarray, rails: Rails) -> np.ndarray:
    """Static power drawn from both rails at each operating point (W).

    Args:
        i_vdd: branch current of ``Vdd`` (A, ngspice sign).
        i_vss: branch current of ``Vss`` (A, ngspice sign).
        rails: supply voltages (V).
    """
    return -(rails.vdd * np.asarray(i_vdd) + rails.vss * np.asarray(i_vss))


@dataclass(frozen=True, slots=True)
class TransientMetrics:
    """Per-sample transient figures.

    Attributes:
        delay_s: ``(S,)`` settling delay from the start of the input ramp until every last-layer
            output that transitions (step ≥ 10 % of the rail swing) stays within 10 % of its step
            of its final value (s); 0 when none transitions, NaN when one does not settle.
        energy_j: ``(S,)`` energy drawn from both rails during the sample's period (J).
        energy_to_settle_j: ``(S,)`` energy drawn from both rails from the start of the sample until
            its outputs settled (J): the energy of one inference; NaN when it did not settle.
        final_outp: ``(S, M)`` last-layer ``outp`` at the end of each period (V).
        time_s: ``(T,)`` the simulator's time points, reset step included (s).
        outp: ``(T, M)`` last-layer ``outp`` waveforms (V).
        power_w: ``(T,)`` power drawn from both rails (W).
        input_energy_j: ``(S,)`` energy the input drivers deliver during the period (J; NaN
            without their power).
        input_energy_to_settle_j: ``(S,)`` the same until the outputs settled (J).
    """

    delay_s: np.ndarray
    energy_j: np.ndarray
    energy_to_settle_j: np.ndarray
    final_outp: np.ndarray
    time_s: np.ndarray
    outp: np.ndarray
    power_w: np.ndarray
    input_energy_j: np.ndarray
    input_energy_to_settle_j: np.ndarray


def settle_time(t: np.ndarray, v: np.ndarray, start: float, min_step_v: float, final: float) -> float:
    """Time after ``start`` from which ``v`` stays within 10 % of its step of ``final`` (s).

    ``final`` is the output's DC operating point for the sample (or, without one, its value at
    the end of the period). Outputs whose step is below ``min_step_v`` do not transition and
    settle at once; an output still outside the band at the end of the period gives NaN.
    """
    initial = v[0]
    band = SETTLE_FRACTION * abs(final - initial)
    if abs(final - initial) < min_step_v:
        return 0.0
    outside = np.flatnonzero(np.abs(v - final) > band)
    if outside.size == 0:
        return 0.0
    last = outside[-1]
    if last + 1 >= len(t):
        return float("nan")
    # Linear interpolation of the last crossing into the band.
    v0, v1 = abs(v[last] - final), abs(v[last + 1] - final)
    frac = (v0 - band) / (v0 - v1) if v0 != v1 else 1.0
    return float(t[last] + frac * (t[last + 1] - t[last]) - start)


def transient_metrics(plot: Plot, n_layers: int, n_outputs: int, n_samples: int,
                      period_s: float, rails: Rails, reference: np.ndarray | None = None,
                      input_power: np.ndarray | None = None) -> TransientMetrics:
    """Delay, energy and final outputs per sample from a transient batch plot.

    The plot must come from :func:`memspice.validate.decks.transient_batch_deck`: sample ``s``
    occupies ``[(s+1)·T, (s+2)·T)`` with ``T = period_s``.

    Args:
        reference: ``(S, 2M)`` DC operating points of the last layer ``[outp…, outn…]`` (V) that
            each sample settles to; without it the end-of-period values are used, which hides a
            period too short to settle.
        input_power: ``(T,)`` power the input drivers deliver at every time point (W), from
            :func:`memspice.validate.decks.input_drive_power`; the rails' power excludes it.
    """
    try:
        t = np.asarray(plot["time"], dtype=np.float64)
        outs = np.column_stack([plot[output_node(n_layers - 1, j, "p")] for j in range(n_outputs)])
        outn = np.column_stack([plot[output_node(n_layers - 1, j, "n")] for j in range(n_outputs)])
        power = static_power(plot["i(vdd)"], plot["i(vss)"], rails)
    except KeyError as exc:
        raise SimFailed(f"transient results lack a vector: {exc}") from exc
    if t.size < 2 or t[-1] < (n_samples + 1) * period_s * (1 - 1e-9):
        raise SimFailed(f"transient stopped early at {t[-1] if t.size else 0:g} s")
    delays = np.empty(n_samples)
    energies = np.empty(n_samples)
    to_settle = np.full(n_samples, np.nan)
    in_energies = np.full(n_samples, np.nan)
    in_to_settle = np.full(n_samples, np.nan)
    finals = np.empty((n_samples, n_outputs))
    for s in range(n_samples):
        start, stop = (s + 1) * period_s, (s + 2) * period_s
        inside = np.flatnonzero((t >= start * (1 - 1e-12)) & (t <= stop * (1 + 1e-12)))
        if inside.size < 3:
            raise SimFailed(f"too few time points in the period of sample {s}")
        tw = t[inside]
        energies[s] = float(np.trapezoid(power[inside], tw))
        if input_power is not None:
            in_energies[s] = float(np.trapezoid(input_power[inside], tw))
        finals[s] = outs[inside[-1]]
        min_step = TRANSITION_FRACTION * (rails.vdd - rails.vss)
        waves = np.column_stack([outs[inside], outn[inside]])
        targets = waves[-1] if reference is None else np.where(np.isnan(reference[s]), waves[-1], reference[s])
        per_output = [settle_time(tw, waves[:, k], start, min_step, float(targets[k])) for k in range(waves.shape[1])]
        delays[s] = float("nan") if np.any(np.isnan(per_output)) else max(per_output)
        if np.isfinite(delays[s]):
            grid = np.linspace(start, start + max(delays[s], 0.0), 200)
            to_settle[s] = float(np.trapezoid(np.interp(grid, tw, power[inside]), grid))
            if input_power is not None:
                in_to_settle[s] = float(np.trapezoid(np.interp(grid, tw, input_power[inside]), grid))
    return TransientMetrics(delays, energies, to_settle, finals, t, outs, power, in_energies, in_to_settle)
