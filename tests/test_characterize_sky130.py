"""sky130 LVT: the preset sizing is balanced with full swing; corners move the threshold."""

from __future__ import annotations

import pytest

from memspice.characterize.presets import SKY130_LVT_SIZING
from memspice.characterize.sweeps import Condition, load_copies, run_family
from memspice.errors import ConfigError
from memspice.tech.technology import sky130

pytestmark = [pytest.mark.ngspice, pytest.mark.sky130]


def test_preset_is_balanced_and_corners_shift_it() -> None:
    try:
        conditions = [Condition(sky130(c), {"corner": c}) for c in ("tt", "ss", "ff")]
    except ConfigError as exc:  # sky130 not installed here
        pytest.skip(str(exc))
    result = run_family(conditions, load_copies([SKY130_LVT_SIZING], [0.9e6]), step_v=2e-3)
    m = result.metrics.set_index(["corner", "stage"])
    tt = m.loc[("tt", "inverter")]
    assert abs(tt["v_m"]) < 0.015 and tt["swing"] > 0.48 and tt["peak_gain"] > 3
    assert m.loc[("tt", "neuron")]["peak_gain"] > tt["peak_gain"]
    vm = {c: m.loc[(c, "inverter")]["v_m"] for c in ("tt", "ss", "ff")}
    assert len({round(v, 4) for v in vm.values()}) == 3  # each corner is its own model
    assert result.n_decks == 3
