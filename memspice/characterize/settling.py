"""Settling time and energy of the neuron per size × load: the speed half of sizing.

A *settling deck* holds K copies of the two-inverter chain, as a family deck does, but runs a
transient: every copy's input is driven from one shared step source through its own source
resistance (the Thevenin resistance of the crossbar column that feeds a neuron), each stage
output is loaded by the same resistance to mid-rail, and each copy has its own supply pair. The
input steps up from ``mid − a`` to ``mid + a`` at ``t = W`` and back down at ``t = 2W``
(``a``: a fraction of VDD − VSS, well outside the gain region; ``W``: the window per edge).
Per edge, an output has settled when it stays within 10 % of its step of its DC operating
point at the new input (a two-point ``.dc`` of the same deck gives both; the rule of
:mod:`memspice.validate.energy`), so a window too short to settle in shows as not settled; a copy's settling time is the
slowest of its two stage outputs and two edges, and its energy to settle is what its rails
deliver from the edge until then (mean of the two edges).

The settling time sets a network's energy per inference: the input drivers (which deliver
most of a crossbar network's power) and the rails run until the outputs settle, so
``energy ≈ (P_rails + P_drivers) × t_settle``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from memspice.characterize.decks import MID_NODE, inverter_subckt
from memspice.circuit.builders import InverterSizing, technology_deck
from memspice.circuit.deck import Dc, Deck, Save, Subckt, Sweep, Tran
from memspice.circuit.elements import Element, Pwl, Resistor, SubcktInstance, VoltageSource
from memspice.errors import ConfigError, SimError, SimFailed
from memspice.sim import SimOptions, simulate_many
from memspice.tech.technology import Technology
from memspice.validate.energy import SETTLE_FRACTION, TRANSITION_FRACTION, settle_time

INPUT_SOURCE = "in"
#: Time points per window the simulator must resolve at least (the maximum step is W / this).
POINTS_PER_WINDOW = 400


@dataclass(frozen=True)
class SettleSpec:
    """How the settling transient is driven.

    Attributes:
        source_ohm: resistance from the step source to each neuron input (Ω): the Thevenin
            resistance of a crossbar column (a few kΩ to tens of kΩ in a trained network).
        step_fraction: half the input step, as a fraction of VDD − VSS (the input goes from
            ``mid − a`` to ``mid + a``).
        window_s: time per edge (s); an output still moving at the end of it has not settled.
        edge_s: rise and fall time of the input step (s).
    """

    source_ohm: float = 1e4
    step_fraction: float = 0.02
    window_s: float = 5e-6
    edge_s: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("source_ohm", "step_fraction", "window_s", "edge_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"settling {name} must be a positive finite number, got {value!r}")
        if self.step_fraction > 0.5:
            raise ConfigError(f"settling step fraction must be at most 0.5 of the rails, got {self.step_fraction}")
        if self.edge_s >= self.window_s / 10:
            raise ConfigError(f"settling input edge ({self.edge_s:g} s) must be under a tenth of the window "
                              f"({self.window_s:g} s)")


def settle_deck(tech: Technology, copies: Sequence[tuple[InverterSizing, float, float]], spec: SettleSpec,
                title: str = "settling family") -> Deck:
    """K chain copies ``(sizing, load Ω, threshold V)`` driven by one step source through
    ``spec.source_ohm``; each copy's step is centred on its own threshold (relative to
    mid-rail, e.g. the neuron's V_M from the DC sweep) by a source in series.

    Analyses: a two-point ``.dc`` of the input (``mid − a``, ``mid + a``: the operating points
    each edge settles to), then the transient. Vectors: ``o1_k``/``o2_k`` (stage outputs of
    copy k), ``i(vddk)``/``i(vssk)``, and ``time`` in the transient.
    """
    if not copies:
        raise ConfigError("a settling deck needs at least one chain copy")
    rails = tech.rails
    a = spec.step_fraction * (rails.vdd - rails.vss)
    w, e = spec.window_s, spec.edge_s
    low, high = rails.mid - a, rails.mid + a
    wave = Pwl((0.0, w, w + e, 2 * w, 2 * w + e, 3 * w), (low, low, high, high, low, low))
    elements: list[Element] = [VoltageSource(INPUT_SOURCE, "in", "0", low, wave),
                               VoltageSource("mid", MID_NODE, "0", rails.mid)]
    saves: list[Save] = []
    subckts: list[Subckt] = []
    names: dict[InverterSizing, str] = {}
    for k, (sizing, load, threshold) in enumerate(copies):
        if not math.isfinite(threshold):
            raise ConfigError(f"settling copy {k} has no threshold to centre its input step on")
        if sizing not in names:
            names[sizing] = f"inv{len(names)}"
            subckts.append(inverter_subckt(tech, names[sizing], sizing, None))
        vdd, vss, x = f"vdd{k}", f"vss{k}", f"x{k}"
        elements += [VoltageSource(f"dd{k}", vdd, "0", rails.vdd), VoltageSource(f"ss{k}", vss, "0", rails.vss),
                     VoltageSource(f"t{k}", f"t{k}", "in", threshold),
                     Resistor(f"s{k}", f"t{k}", x, spec.source_ohm)]
        previous = x
        for stage in (1, 2):
            out = f"o{stage}_{k}"
            elements.append(SubcktInstance(f"c{k}_{stage}", (previous, out, vdd, vss), names[sizing]))
            elements.append(Resistor(f"l{k}_{stage}", out, MID_NODE, load))
            saves.append(Save("v", out))
            previous = out
        saves += [Save("i", f"dd{k}"), Save("i", f"ss{k}")]
    analyses = [Dc(Sweep(INPUT_SOURCE, low, high, high - low)), Tran(w / 1000, 3 * w, max_step_s=w / POINTS_PER_WINDOW)]
    return technology_deck(tech, title, elements, subckts, analyses, saves)


def settle_figures(t: np.ndarray, outputs: Sequence[np.ndarray], power_w: np.ndarray, window_s: float,
                   min_step_v: float, finals: Sequence[tuple[float, float]] | None = None) -> dict[str, float]:
    """Settling time and energy of one copy from its waveforms.

    Args:
        t: time points (s); the edges are at ``window_s`` and ``2 · window_s``.
        outputs: the stage outputs' waveforms (V).
        power_w: the copy's rail power at every time point (W).
        min_step_v: an output step below this does not count as a transition.
        finals: per output, its operating point after the rising and after the falling edge
            (V); without them, its value at the end of each window (which hides a window too
            short to settle in).

    Returns:
        ``settle_s`` (slowest output and edge; NaN when one did not switch by at least
        ``min_step_v`` or did not settle in its window),
        ``settle_rise_s``, ``settle_fall_s``, ``energy_to_settle_j`` (mean over the edges, NaN
        when one did not settle), ``mean_power_w`` (over both windows).
    """
    per_edge, energies = [], []
    for edge in (1, 2):
        start, stop = edge * window_s, (edge + 1) * window_s
        inside = np.flatnonzero((t >= start * (1 - 1e-12)) & (t <= stop * (1 + 1e-12)))
        if inside.size < 3:
            raise SimFailed(f"the settling transient has too few time points after the edge at {start:g} s")
        tw = t[inside]
        times = []
        for k, v in enumerate(outputs):
            wave = np.asarray(v)[inside]
            final = float(wave[-1]) if finals is None else float(finals[k][edge - 1])
            if abs(final - wave[0]) < min_step_v:  # does not switch: no speed to measure
                times.append(math.nan)
            else:
                times.append(settle_time(tw, wave, start, min_step_v, final))
        settle = math.nan if any(math.isnan(x) for x in times) else max(times)
        per_edge.append(settle)
        if math.isnan(settle):
            energies.append(math.nan)
        else:
            grid = np.linspace(start, start + max(settle, 0.0), 200)
            energies.append(float(np.trapezoid(np.interp(grid, tw, power_w[inside]), grid)))
    window = np.flatnonzero(t >= window_s * (1 - 1e-12))
    mean_power = float(np.trapezoid(power_w[window], t[window]) / (t[window][-1] - t[window][0]))
    worst = math.nan if any(math.isnan(x) for x in per_edge) else max(per_edge)
    return {"settle_s": worst, "settle_rise_s": per_edge[0], "settle_fall_s": per_edge[1],
            "energy_to_settle_j": float(np.mean(energies)), "transient_power_w": mean_power}


def run_settling(tech: Technology, copies: Sequence[tuple[int, InverterSizing, float, float]], spec: SettleSpec,
                 *, options: SimOptions = SimOptions(), max_copies: int = 25) -> pd.DataFrame:
    """Settling figures of every ``(sizing index, sizing, load Ω, threshold V)`` copy (the
    threshold relative to mid-rail; the input steps ``± a`` around it).

    Returns:
        One row per copy: ``sizing``, ``load_ohm`` and the figures of :func:`settle_figures`.

    Raises:
        ConfigError: no copies or a bad spec; SimError: a deck failed.
    """
    if not copies:
        raise ConfigError("nothing to settle: no sizes or loads")
    chunks = [list(copies[i:i + max_copies]) for i in range(0, len(copies), max(1, max_copies))]
    decks = [settle_deck(tech, [(s, load, vm) for _, s, load, vm in chunk], spec) for chunk in chunks]
    rails = tech.rails
    min_step = TRANSITION_FRACTION * (rails.vdd - rails.vss)
    rows = []
    for chunk, result in zip(chunks, simulate_many(decks, options)):
        if isinstance(result, SimError):
            raise result
        dc, plot = result.plots[0], result.plots[1]
        t = np.asarray(plot["time"], dtype=np.float64)
        if t.size < 2 or t[-1] < 3 * spec.window_s * (1 - 1e-9):
            raise SimFailed(f"the settling transient stopped early at {t[-1] if t.size else 0:g} s")
        for k, (index, _, load, _) in enumerate(chunk):
            power = -(rails.vdd * np.asarray(plot[f"i(vdd{k})"]) + rails.vss * np.asarray(plot[f"i(vss{k})"]))
            outs = [np.asarray(plot[f"o{stage}_{k}"], dtype=np.float64) for stage in (1, 2)]
            finals = [(float(dc[f"o{stage}_{k}"][-1]), float(dc[f"o{stage}_{k}"][0])) for stage in (1, 2)]
            rows.append({"sizing": index, "load_ohm": float(load),
                         **settle_figures(t, outs, power, spec.window_s, min_step, finals)})
    return pd.DataFrame(rows)


__all__ = ["SETTLE_FRACTION", "SettleSpec", "run_settling", "settle_deck", "settle_figures"]
