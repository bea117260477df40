"""Characterization decks: many sweep points inside one ngspice process.

A *family deck* holds K copies of the two-inverter chain, each with its own sizing, its own
resistive loads (to mid-rail, on both stage outputs, as a crossbar row would load them), its
own supply sources (so each copy's static current is measured separately) and, for Monte
Carlo, its own mismatch; all copies share one input source swept by a single ``.dc``. The
inverter-1 output of a copy is the loaded single-inverter VTC (the second inverter's gate
draws no DC current); its inverter-2 output is the loaded neuron VTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memspice.circuit.builders import InverterSizing, DeviceSource, technology_deck
from memspice.circuit.deck import Dc, Deck, Save, Subckt, Sweep
from memspice.circuit.elements import Element, Resistor, SubcktInstance, VoltageSource
from memspice.errors import ConfigError

INPUT_SOURCE = "in"
MID_NODE = "vmid"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Per-device mismatch of one inverter copy, sampled by the caller.

    The threshold shift is applied gate-referred (a DC source in series with the gate), which
    works for any technology, including sky130's subcircuit devices that take no ``delvto``.

    Attributes:
        dvth_n_v: nMOS threshold shift (V); positive = weaker nMOS.
        dvth_p_v: pMOS |threshold| shift (V); positive = weaker pMOS.
        dw_n: relative nMOS width change (dimensionless).
        dw_p: relative pMOS width change (dimensionless).
    """

    dvth_n_v: float = 0.0
    dvth_p_v: float = 0.0
    dw_n: float = 0.0
    dw_p: float = 0.0


@dataclass(frozen=True, slots=True)
class ChainCopy:
    """One copy of the chain in a family deck.

    Attributes:
        sizing: transistor sizes of both inverters.
        load_ohm: load of each stage output to mid-rail (Ω), or ``None`` for no load.
        mismatch: per-stage mismatch ``(stage 1, stage 2)``, or ``None``.
    """

    sizing: InverterSizing
    load_ohm: float | None = None
    mismatch: tuple[Mismatch, Mismatch] | None = None


def inverter_subckt(tech: DeviceSource, name: str, sizing: InverterSizing, mismatch: Mismatch | None) -> Subckt:
    """``.subckt name in out vdd vss`` with optional gate-referred threshold and width shifts."""
    if mismatch is None:
        return Subckt(name, ("in", "out", "vdd", "vss"), (
            tech.transistor("n", "n", "out", "in", "vss", "vss", sizing.wn_m, sizing.ln_m, sizing.mn),
            tech.transistor("p", "p", "out", "in", "vdd", "vdd", sizing.wp_m, sizing.lp_m, sizing.mp),
        ))
    wn = sizing.wn_m * (1.0 + mismatch.dw_n)
    wp = sizing.wp_m * (1.0 + mismatch.dw_p)
    if wn <= 0 or wp <= 0:
        raise ConfigError("a mismatch sample made a transistor width non-positive; lower the width sigma")
    return Subckt(name, ("in", "out", "vdd", "vss"), (
        # v(gn) = v(in) − ΔVth_n weakens the nMOS; v(gp) = v(in) + ΔVth_p weakens the pMOS.
        VoltageSource("gn", "in", "gn", mismatch.dvth_n_v),
        VoltageSource("gp", "gp", "in", mismatch.dvth_p_v),
        tech.transistor("n", "n", "out", "gn", "vss", "vss", wn, sizing.ln_m, sizing.mn),
        tech.transistor("p", "p", "out", "gp", "vdd", "vdd", wp, sizing.lp_m, sizing.mp),
    ))


def stage_node(copy: int, stage: int) -> str:
    """Output node of ``stage`` (1 or 2) of copy ``copy``."""
    return f"o{stage}_{copy}"


def family_deck(
    tech: DeviceSource,
    copies: Sequence[ChainCopy],
    *,
    step_v: float,
    title: str = "vtc family",
) -> Deck:
    """K chain copies sharing one input swept from VSS to VDD in steps of ``step_v`` (V).

    Vectors: ``in``, ``o1_k``/``o2_k`` (stage outputs of copy k), ``i(vddk_s)``/``i(vssk_s)``
    (supply currents of stage s of copy k).
    """
    if not copies:
        raise ConfigError("a family deck needs at least one chain copy")
    if not step_v > 0:
        raise ConfigError(f"sweep step must be positive, got {step_v!r} V")
    rails = tech.rails
    subckts: list[Subckt] = []
    by_sizing: dict[InverterSizing, str] = {}
    elements: list[Element] = [VoltageSource(INPUT_SOURCE, "in", "0", rails.mid), VoltageSource("mid", MID_NODE, "0", rails.mid)]
    saves: list[Save] = [Save("v", "in")]
    for k, copy in enumerate(copies):
        names = []
        for stage in (1, 2):
            if copy.mismatch is None:
                if copy.sizing not in by_sizing:
                    by_sizing[copy.sizing] = f"inv{len(by_sizing)}"
                    subckts.append(inverter_subckt(tech, by_sizing[copy.sizing], copy.sizing, None))
                names.append(by_sizing[copy.sizing])
            else:
                name = f"mc{k}s{stage}"
                subckts.append(inverter_subckt(tech, name, copy.sizing, copy.mismatch[stage - 1]))
                names.append(name)
        previous = "in"
        for stage in (1, 2):
            out = stage_node(k, stage)
            vdd, vss = f"vdd{k}_{stage}", f"vss{k}_{stage}"
            elements += [VoltageSource(f"dd{k}_{stage}", vdd, "0", rails.vdd),
                         VoltageSource(f"ss{k}_{stage}", vss, "0", rails.vss)]
            saves += [Save("i", f"dd{k}_{stage}"), Save("i", f"ss{k}_{stage}")]
            elements.append(SubcktInstance(f"c{k}_{stage}", (previous, out, vdd, vss), names[stage - 1]))
            if copy.load_ohm is not None:
                elements.append(Resistor(f"l{k}_{stage}", out, MID_NODE, copy.load_ohm))
            saves.append(Save("v", out))
            previous = out
    analysis = Dc(Sweep(INPUT_SOURCE, rails.vss, rails.vdd, step_v))
    return technology_deck(tech, title, elements, subckts, [analysis], saves)


def current_deck(tech: DeviceSource, sizing: InverterSizing, *, step_in_v: float, step_out_v: float) -> Deck:
    """One inverter whose output is held by source ``Vout``; nested ``.dc`` over ``Vin`` (inner)
    and ``Vout`` (outer), both from VSS to VDD. ``i(vout)`` is the current the inverter
    delivers into its output node (ngspice's branch current flows into the + terminal)."""
    rails = tech.rails
    elements: list[Element] = [
        VoltageSource("dd", "vdd", "0", rails.vdd),
        VoltageSource("ss", "vss", "0", rails.vss),
        VoltageSource(INPUT_SOURCE, "in", "0", rails.mid),
        VoltageSource("out", "out", "0", rails.mid),
        SubcktInstance("i1", ("in", "out", "vdd", "vss"), "inv0"),
    ]
    analysis = Dc(Sweep(INPUT_SOURCE, rails.vss, rails.vdd, step_in_v), Sweep("out", rails.vss, rails.vdd, step_out_v))
    saves = [Save("v", "in"), Save("v", "out"), Save("i", "out")]
    return technology_deck(tech, "inverter output current", elements, [inverter_subckt(tech, "inv0", sizing, None)],
                           [analysis], saves)


def sample_mismatch(rng: np.random.Generator, sizing: InverterSizing, a_vt_vm: float, sigma_w: float) -> Mismatch:
    """Pelgrom sample: ``σ(ΔVth) = a_vt_vm / sqrt(m·W·L)`` (V, with ``a_vt_vm`` in V·m; ``m``
    parallel devices average their thresholds), and a relative width error of standard
    deviation ``sigma_w``."""
    sn = a_vt_vm / np.sqrt(sizing.mn * sizing.wn_m * sizing.ln_m)
    sp = a_vt_vm / np.sqrt(sizing.mp * sizing.wp_m * sizing.lp_m)
    dn, dp, wn, wp = rng.standard_normal(4)
    return Mismatch(float(sn * dn), float(sp * dp), float(sigma_w * wn), float(sigma_w * wp))
