"""Default inverter sizings per technology, with the sweeps that chose them.

sky130 LVT at ±0.25 V under a 0.9 MΩ load on each stage output, tt, 27 °C (reproduce any
point with ``memspice characterize --tech sky130 --sizes WN,WP,LN,LP``). Sweeps over
Wn 1–60 µm, Wp 0.42–60 µm, Ln 0.15–2 µm, Lp 0.35–1 µm found:

- the nMOS LVT device is much weaker than the pMOS LVT at this supply: with Lp at its
  0.35 µm minimum, V_M sits at +30…+100 mV even with Wp = Wn/100; one device must stay
  below W = 100 µm (the model bins; :attr:`memspice.tech.Technology.bins`);
- a centred threshold needs weak devices (long, matched channels), and then the load holds
  the output near mid-rail while both devices are off: the VTC becomes a double step with a
  shoulder at mid-rail, peak gain ≈ 4 (inverter) / ≈ 7 (neuron), and a tanh fits it only to
  ≈ 15 mV RMS (:data:`SKY130_LVT_CENTRED`: Wn 50, Wp 25, Ln = Lp = 1 µm, V_M ≈ +3 mV);
- strong devices give one clean, steep step that a tanh fits (neuron RMS ≈ 2.3 mV) with
  PHAX-like gain (≈ 10 / ≈ 69) at the price of V_M ≈ +94 mV (+84 mV for the neuron), which
  the fit's ``c3`` and the bias rows absorb (:data:`SKY130_LVT_SIZING`).

No single-device sizing reaches a centred threshold, full swing and high gain together, so
the default is the clean high-gain step. Parallel nMOS devices (``mn``, SPICE ``m``) do:
``memspice size --tech sky130 --max-vm 2 --max-tanh-rms 2`` picks :data:`SKY130_LVT_SIZED`
(Wn 50 µm × 12, Ln 0.8 µm, Wp 50 µm, Lp 0.5 µm: V_M −1.5 mV, neuron gain 114, swing
99.8 %, neuron tanh RMS 1.9 mV, 175 nW static power against the default's 198 nW).
"""

from __future__ import annotations

from memspice.circuit.builders import InverterSizing

#: PHAX's 90 nm reference sizing (Wn 0.6 µm, Wp 1.0 µm, L 0.1 µm) for the built-in card.
BUILTIN_SIZING = InverterSizing()
#: Default sky130 LVT sizing at ±0.25 V: Wn = Wp = 50 µm, Ln 0.8 µm, Lp 0.35 µm (clean step,
#: inverter gain ≈ 10, neuron ≈ 69, V_M ≈ +94 mV under 0.9 MΩ).
SKY130_LVT_SIZING = InverterSizing(wn_m=50e-6, wp_m=50e-6, ln_m=0.8e-6, lp_m=0.35e-6)
#: Sized sky130 LVT design (``memspice size``, see the module notes): 12 parallel 50 µm nMOS
#: at Ln 0.8 µm against a 50 µm pMOS at Lp 0.5 µm; V_M ≈ −1.5 mV, neuron gain ≈ 114 under 0.9 MΩ.
SKY130_LVT_SIZED = InverterSizing(wn_m=50e-6, wp_m=50e-6, ln_m=0.8e-6, lp_m=0.5e-6, mn=12, mp=1)
#: Centred sky130 LVT sizing: Wn 50 µm, Wp 25 µm, Ln = Lp = 1 µm (V_M ≈ +3 mV, gain ≈ 4 / ≈ 7,
#: double-step VTC).
SKY130_LVT_CENTRED = InverterSizing(wn_m=50e-6, wp_m=25e-6, ln_m=1.0e-6, lp_m=1.0e-6)


def default_sizing(technology: str, flavor: str = "lvt") -> InverterSizing:
    """The default sizing of a technology name (``builtin``, ``sky130``; others: builtin's).

    sky130 ``standard`` devices have no characterized preset here; they get the LVT one.
    """
    if technology == "sky130":
        return SKY130_LVT_SIZING
    return BUILTIN_SIZING


def default_grid(technology: str):  # noqa: ANN201 - SizingGrid | None (imported lazily: no cycle)
    """The size grid ``memspice size`` sweeps by default (``None`` for a user library).

    builtin: Wn × Wp around PHAX's reference at L = 0.1 µm (16 sizes). sky130 LVT (30 sizes):
    strong, parallel nMOS (50 µm × 6…12 = 300…600 µm, which no single device in the bins can
    match) against a 25–50 µm pMOS at Lp 0.5 µm, the region a 210-size sweep (Wn 50 µm ×
    4…16, Ln 0.5–1 µm, Wp 15–50 µm, Lp 0.35/0.5 µm; tt, 0.9 MΩ) found to centre V_M within
    10 mV with full swing and neuron gain ≥ 50.
    """
    from memspice.characterize.sizing import SizingGrid

    um = 1e-6
    if technology == "builtin":
        return SizingGrid(wn_m=tuple(v * um for v in (0.3, 0.6, 1.2, 2.4)), wp_m=tuple(v * um for v in (0.5, 1.0, 2.0, 4.0)),
                          ln_m=(0.1 * um,), lp_m=(0.1 * um,))
    if technology == "sky130":
        return SizingGrid(wn_m=(50 * um,), wp_m=tuple(v * um for v in (25, 30, 35, 40, 50)),
                          ln_m=(0.5 * um, 0.8 * um), lp_m=(0.5 * um,), mn=(6, 8, 12))
    return None
