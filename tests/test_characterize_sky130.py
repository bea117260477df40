"""sky130 LVT presets: the default gives a clean tanh step, the centred one V_M ≈ 0; corners
move the threshold."""

from __future__ import annotations

import pytest

from memspice.characterize.presets import SKY130_LVT_CENTRED, SKY130_LVT_SIZING
from memspice.characterize.sweeps import Condition, load_copies, run_family
from memspice.errors import ConfigError
from memspice.tech.technology import sky130

pytestmark = [pytest.mark.ngspice, pytest.mark.sky130]


def _tech(corner: str):  # noqa: ANN202 - test helper
    try:
        return sky130(corner)
    except ConfigError as exc:  # sky130 not installed here
        pytest.skip(str(exc))


def test_presets_trade_threshold_for_gain() -> None:
    result = run_family([Condition(_tech("tt"))], load_copies([SKY130_LVT_SIZING, SKY130_LVT_CENTRED], [0.9e6]),
                        step_v=1e-3)
    m = result.metrics.set_index(["sizing", "stage"])
    default_neuron = m.loc[(0, "neuron")]
    assert default_neuron["peak_gain"] > 40 and default_neuron["rms_v"] < 5e-3
    assert default_neuron["swing"] > 0.49
    centred = m.loc[(1, "inverter")]
    assert abs(centred["v_m"]) < 0.015 and centred["swing"] > 0.48
    assert centred["peak_gain"] < m.loc[(0, "inverter")]["peak_gain"]


def test_corners_shift_the_threshold_in_one_process_each() -> None:
    conditions = [Condition(_tech(c), {"corner": c}) for c in ("tt", "ss", "ff")]
    result = run_family(conditions, load_copies([SKY130_LVT_SIZING], [0.9e6]), step_v=2e-3)
    m = result.metrics.set_index(["corner", "stage"])
    vm = {c: m.loc[(c, "inverter")]["v_m"] for c in ("tt", "ss", "ff")}
    assert len({round(v, 4) for v in vm.values()}) == 3
    assert result.n_decks == 3
