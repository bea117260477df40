"""SPICE characterization of the Yakopcic memristor subcircuit (``yakopcic_phax``).

- pinched I–V hysteresis under a sinusoidal drive (``.tran … uic``);
- conductance read after each pulse of a train, potentiating then depressing (one transient);
- read nonlinearity: a ``.dc`` read sweep of several devices at fixed states (one deck).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memspice.circuit.deck import Dc, Deck, Include, ModelRoot, Save, Sweep, Tran
from memspice.circuit.elements import Element, Pwl, Sine, SubcktInstance, VoltageSource
from memspice.errors import ConfigError
from memspice.fit.calibration import DeviceWindow
from memspice.fit.device import PulseResponseFit, distinguishable_levels, fit_pulse_response, read_nonlinearity
from memspice.sim import SimOptions, simulate
from memspice.tech.technology import BUILTIN_ROOT, builtin_models_dir

MODEL_FILE = "memristor_yakopcic.sub"
SUBCKT = "yakopcic_phax"
#: The PHAX parameters of the subcircuit: G = a1·b·x at small V.
G_PER_X_SIEMENS = 1.6e-4 * 0.05
X_MIN, X_MAX = 0.015, 1.0


def _deck(title: str, elements: Sequence[Element], analysis: Dc | Tran, saves: Sequence[Save]) -> Deck:
    return Deck(
        title=title,
        elements=tuple(elements),
        includes=(Include(BUILTIN_ROOT, MODEL_FILE),),
        model_roots=(ModelRoot(BUILTIN_ROOT, str(builtin_models_dir())),),
        analyses=(analysis,),
        saves=tuple(saves),
    )


def hysteresis(amplitude_v: float = 1.4, frequency_hz: float = 1e5, cycles: int = 2, x0: float = 0.3,
               options: SimOptions = SimOptions()) -> pd.DataFrame:
    """Sinusoidal drive; columns ``t_s``, ``v`` (V), ``i_a`` (A, into ``te``), ``x``."""
    if amplitude_v <= 0 or frequency_hz <= 0 or cycles < 1:
        raise ConfigError("hysteresis needs a positive amplitude, frequency and cycle count")
    period = 1.0 / frequency_hz
    deck = _deck("memristor hysteresis", [
        VoltageSource("p", "te", "0", 0.0, Sine(0.0, amplitude_v, frequency_hz)),
        SubcktInstance("m", ("te", "0", "xs"), SUBCKT, (("xo", x0),)),
    ], Tran(period / 2000, cycles * period, max_step_s=period / 2000, uic=True),
        [Save("v", "te"), Save("v", "xs"), Save("i", "p")])
    plot = simulate(deck, options).plots[0]
    return pd.DataFrame({"t_s": plot["time"], "v": plot["te"], "i_a": -plot["i(vp)"], "x": plot["xs"]})


@dataclass(frozen=True)
class PulseTrainResult:
    """Reads of a potentiating then depressing pulse train.

    Attributes:
        table: one row per read: ``phase`` (``set``/``reset``), ``pulse`` (0 = before the first),
            ``g_siemens`` (read conductance), ``x`` (state).
        potentiation: fit of the ``set`` phase.
        depression: fit of the ``reset`` phase.
    """

    table: pd.DataFrame
    potentiation: PulseResponseFit
    depression: PulseResponseFit


def pulse_train(amplitude_v: float = 1.3, width_s: float = 20e-9, n_pulses: int = 100, read_v: float = 0.25,
                x0: float = X_MIN, options: SimOptions = SimOptions()) -> PulseTrainResult:
    """``n_pulses`` pulses of ``+amplitude_v`` then ``n_pulses`` of ``−amplitude_v`` (width
    ``width_s``, 1 ns edges), each followed by a read at ``read_v`` (V) of 20 ns."""
    if amplitude_v <= 0 or width_s <= 0 or n_pulses < 3 or read_v <= 0:
        raise ConfigError("pulse train needs positive amplitude, width, read voltage and >= 3 pulses")
    edge, read_s, gap = 1e-9, 20e-9, 5e-9
    times, values, read_times = [0.0], [0.0], []
    t = gap

    def segment(level: float, duration: float) -> float:
        nonlocal t
        times.extend([t, t + edge, t + edge + duration, t + 2 * edge + duration])
        values.extend([0.0, level, level, 0.0])
        middle = t + edge + 0.5 * duration
        t += 2 * edge + duration + gap
        return middle

    read_times.append(segment(read_v, read_s))
    for sign in (1.0, -1.0):
        for _ in range(n_pulses):
            segment(sign * amplitude_v, width_s)
            read_times.append(segment(read_v, read_s))
    deck = _deck("memristor pulse train", [
        VoltageSource("p", "te", "0", 0.0, Pwl(tuple(times), tuple(values))),
        SubcktInstance("m", ("te", "0", "xs"), SUBCKT, (("xo", x0),)),
    ], Tran(1e-9, t, max_step_s=1e-9, uic=True), [Save("v", "te"), Save("v", "xs"), Save("i", "p")])
    plot = simulate(deck, options).plots[0]
    time = plot["time"]
    v = np.interp(read_times, time, plot["te"])
    i = np.interp(read_times, time, -plot["i(vp)"])
    x = np.interp(read_times, time, plot["xs"])
    g = i / v
    phase = ["set"] * (n_pulses + 1) + ["reset"] * n_pulses
    pulse = list(range(n_pulses + 1)) + list(range(1, n_pulses + 1))
    table = pd.DataFrame({"phase": phase, "pulse": pulse, "g_siemens": g, "x": x})
    pot = fit_pulse_response(g[1:n_pulses + 1], float(g[0]))
    dep = fit_pulse_response(g[n_pulses + 1:], float(g[n_pulses]))
    return PulseTrainResult(table, pot, dep)


def read_sweep(states: Sequence[float] = (X_MIN, 0.1, 0.5, 1.0), read_v: float = 0.25, step_v: float = 0.005,
               options: SimOptions = SimOptions()) -> pd.DataFrame:
    """``.dc`` read sweep of devices at fixed states; one row per (state, V) with ``i_a`` and
    the per-state ``nonlinearity`` (see :func:`memspice.fit.device.read_nonlinearity`)."""
    if read_v <= 0 or not states:
        raise ConfigError("read sweep needs a positive read voltage and at least one state")
    elements: list[Element] = [VoltageSource("r", "te", "0", 0.0)]
    saves = [Save("v", "te")]
    for k, x in enumerate(states):
        elements += [VoltageSource(f"s{k}", "te", f"b{k}", 0.0),
                     SubcktInstance(f"m{k}", (f"b{k}", "0", f"x{k}"), SUBCKT, (("xo", float(x)),))]
        saves.append(Save("i", f"s{k}"))
    plot = simulate(_deck("memristor read sweep", elements, Dc(Sweep("r", -read_v, read_v, step_v)), saves),
                    options).plots[0]
    frames = []
    for k, x in enumerate(states):
        v, i = plot["te"], plot[f"i(vs{k})"]
        frames.append(pd.DataFrame({"x": float(x), "v": v, "i_a": i, "nonlinearity": read_nonlinearity(v, i)}))
    return pd.concat(frames, ignore_index=True)


def device_window(train: PulseTrainResult, sigma_siemens: float) -> DeviceWindow:
    """Window from the extremes reached by the pulse train, with the levels ``sigma_siemens``
    of programming noise leaves distinguishable (capped by the pulses per sweep)."""
    g = train.table["g_siemens"].to_numpy()
    g_min, g_max = float(g.min()), float(g.max())
    levels = distinguishable_levels(g_min, g_max, sigma_siemens, n_steps=train.potentiation.n_pulses)
    return DeviceWindow(g_min, g_max, levels)
