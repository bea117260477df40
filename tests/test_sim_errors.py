"""Each simulator error class, triggered for real."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memspice.circuit.deck import Deck, Op, Tran
from memspice.circuit.elements import Capacitor, Resistor, VoltageSource
from memspice.errors import SimFailed, SimTimeout, SimulatorNotFound
from memspice.sim import SimOptions, simulate, simulate_many, simulate_text

pytestmark = pytest.mark.ngspice


def _divider() -> Deck:
    return Deck("divider", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "b", 1e3), Resistor("2", "b", "0", 1e3)),
                analyses=(Op(),))


def test_divider_works_and_run_dir_is_removed(tmp_path: Path) -> None:
    result = simulate(_divider(), SimOptions(work_dir=tmp_path))
    assert result.plot(0)["b"][0] == pytest.approx(0.5, abs=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_syntax_error_raises_sim_failed_with_line_and_kept_dir(tmp_path: Path) -> None:
    text = "bad deck\nV1 a 0 dc 1\nX1 a 0 no_such_subckt\n.op\n.end\n"
    with pytest.raises(SimFailed) as info:
        simulate_text(text, options=SimOptions(work_dir=tmp_path))
    assert "unknown subckt" in info.value.error_line.lower()
    assert info.value.run_dir is not None and (info.value.run_dir / "deck.cir").is_file()
    assert "no_such_subckt" in info.value.stdout


def test_missing_sweep_source_is_reported_even_though_ngspice_exits_zero(tmp_path: Path) -> None:
    text = "bad sweep\nV1 a 0 dc 1\nR1 a 0 1k\n.dc vnosuch 0 1 0.1\n.end\n"
    with pytest.raises(SimFailed, match="vnosuch|no such device"):
        simulate_text(text, options=SimOptions(work_dir=tmp_path))


def test_floating_node_is_reported(tmp_path: Path) -> None:
    deck = Deck("floating", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "0", 1e3),
                             Capacitor("1", "a", "b", 1e-12), Resistor("2", "b", "c", 1e3)), analyses=(Op(),))
    with pytest.raises(SimFailed, match="singular matrix"):
        simulate(deck, SimOptions(work_dir=tmp_path))


def test_timeout_kills_the_run(tmp_path: Path) -> None:
    deck = Deck("endless", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "0", 1e3)),
                analyses=(Tran(1e-15, 1.0),))
    start = time.monotonic()
    with pytest.raises(SimTimeout) as info:
        simulate(deck, SimOptions(timeout_s=1.0, work_dir=tmp_path))
    assert time.monotonic() - start < 10
    assert info.value.run_dir is not None and info.value.run_dir.is_dir()


def test_ngspice_absent_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFound, match="apt-get install ngspice"):
        simulate(_divider())


def test_one_failing_deck_does_not_stop_the_others() -> None:
    bad = Deck("bad", (VoltageSource("1", "a", "0", 1.0), Capacitor("1", "a", "b", 1e-12), Resistor("2", "b", "c", 1e3)),
               analyses=(Op(),))
    results = simulate_many([_divider(), bad, _divider()], SimOptions(keep="never"), workers=2)
    assert isinstance(results[1], SimFailed)
    assert results[0].plot(0)["b"][0] == pytest.approx(0.5)  # type: ignore[union-attr]
    assert results[2].plot(0)["b"][0] == pytest.approx(0.5)  # type: ignore[union-attr]


def test_shared_backend_reports_errors_too() -> None:
    text = "bad deck\nV1 a 0 dc 1\nX1 a 0 no_such_subckt\n.op\n.end\n"
    with pytest.raises(SimFailed):
        simulate_text(text, options=SimOptions(backend="shared", keep="never"))
    # and the library is still usable afterwards
    assert simulate(_divider(), SimOptions(backend="shared")).plot(0)["b"][0] == pytest.approx(0.5, abs=1e-12)


def test_every_backend_name_has_a_runner() -> None:
    from memspice.sim.options import BACKENDS
    from memspice.sim.runner import RUNNERS

    assert set(RUNNERS) == set(BACKENDS)
