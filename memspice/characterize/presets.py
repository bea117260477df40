"""Default inverter sizings per technology, with the sweep that chose them.

sky130 LVT at ±0.25 V under a 0.9 MΩ load (reproduce any point with
``memspice characterize --tech sky130 --sizes WN,WP,LN,LP ...``): a size sweep (Wn 1–60 µm,
Wp/Wn 0.1–3, Ln 0.15–2 µm, Lp 0.35–1 µm, 1 mV VTC step, tt, 27 °C) showed that

- with Lp at its 0.35 µm minimum the pMOS is much stronger than the nMOS at this supply: gain
  rises (one inverter up to ≈ 11, neuron ≈ 64 at Wn = Wp = 50 µm, Ln = 0.8 µm) but V_M sits
  at +50…+100 mV even with Wp = Wn/50;
- a balanced V_M needs long, matched channels: Wn = 50 µm, Wp = 25 µm, Ln = Lp = 1 µm gives
  V_M ≈ +3 mV, output swing 0.495 V of 0.5 V, peak gain ≈ 4.1 (one inverter) and ≈ 6.9
  (neuron). Widths above ≈ 60 µm fall outside the model bins (ngspice cannot find a model).

So sky130 LVT at ±0.25 V cannot give both a centred threshold and PHAX-like gain; the default
chooses the centred threshold and full swing (what the training model assumes) and records
the gain it gets. :data:`SKY130_LVT_HIGH_GAIN` is the other end of the trade-off.
"""

from __future__ import annotations

from memspice.circuit.builders import InverterSizing

#: PHAX's 90 nm reference sizing (Wn 0.6 µm, Wp 1.0 µm, L 0.1 µm) for the built-in card.
BUILTIN_SIZING = InverterSizing()
#: Balanced sky130 LVT sizing at ±0.25 V: Wn 50 µm, Wp 25 µm, Ln = Lp = 1 µm.
SKY130_LVT_SIZING = InverterSizing(wn_m=50e-6, wp_m=25e-6, ln_m=1.0e-6, lp_m=1.0e-6)
#: High-gain sky130 LVT sizing (V_M ≈ +95 mV): Wn = Wp = 50 µm, Ln 0.8 µm, Lp 0.35 µm.
SKY130_LVT_HIGH_GAIN = InverterSizing(wn_m=50e-6, wp_m=50e-6, ln_m=0.8e-6, lp_m=0.35e-6)


def default_sizing(technology: str, flavor: str = "lvt") -> InverterSizing:
    """The default sizing of a technology name (``builtin``, ``sky130``; others: builtin's)."""
    if technology == "sky130" and flavor == "lvt":
        return SKY130_LVT_SIZING
    if technology == "sky130":
        return InverterSizing(wn_m=50e-6, wp_m=25e-6, ln_m=1.0e-6, lp_m=1.0e-6)
    return BUILTIN_SIZING
