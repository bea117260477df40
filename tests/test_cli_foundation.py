"""`memspice netlist`, `memspice sim`, help texts and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from memspice.cli import build_parser, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memspice.cli", *args], capture_output=True, text=True)


def test_every_subcommand_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"netlist", "sim"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "usage: memspice " + name in text and len(text) > 200


def test_netlist_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.cir", tmp_path / "b.cir"
    assert main(["netlist", "network", "--topology", "4,3,2", "--seed", "5", "-o", str(a)]) == 0
    assert main(["netlist", "network", "--topology", "4,3,2", "--seed", "5", "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert text.count("Rl0m") == 3 * (2 * 4 + 2) and text.count("Rl1m") == 2 * (2 * 3 + 2)


@pytest.mark.ngspice
def test_netlist_then_sim_writes_csv(tmp_path: Path) -> None:
    deck = tmp_path / "neuron.cir"
    assert main(["netlist", "neuron", "--load", "900e3", "--points", "101", "-o", str(deck)]) == 0
    out = _run("sim", str(deck), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    frame = pd.read_csv(summary["plots"][0]["file"])
    assert len(frame) == 101 and {"in", "o1", "o2"} <= set(frame.columns)
    assert frame["o2"].iloc[0] < -0.2 < 0.2 < frame["o2"].iloc[-1]  # non-inverting neuron, full swing


@pytest.mark.ngspice
def test_sim_resolves_relative_includes_from_the_deck_directory(tmp_path: Path) -> None:
    (tmp_path / "r.inc").write_text("R1 a 0 1k\n")
    (tmp_path / "d.cir").write_text('t\n.include "r.inc"\nV1 a 0 dc 2\n.op\n.end\n')
    assert main(["sim", str(tmp_path / "d.cir"), "-o", str(tmp_path / "d.csv")]) == 0
    assert pd.read_csv(tmp_path / "d.csv")["i(v1)"].iloc[0] == pytest.approx(-2e-3)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sim", "/nonexistent/deck.cir"], "deck not found"),
        (["netlist", "network", "--topology", "4,0,2"], "at least one unit"),
        (["netlist", "network", "--topology", "4,x"], "comma-separated"),
        (["netlist", "inverter", "--tech", "sky130", "--corner", "xx"], "unknown corner"),
        (["netlist", "inverter", "--vdd", "-1"], "vdd"),
        (["netlist", "inverter", "--wn", "-2"], "argument --wn: must be a finite number > 0"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_nonzero(args: list[str], needle: str) -> None:
    out = _run(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]


@pytest.mark.ngspice
def test_failing_deck_is_one_line_naming_the_problem(tmp_path: Path) -> None:
    deck = tmp_path / "bad.cir"
    deck.write_text("bad\nV1 a 0 dc 1\nX1 a 0 nosuch\n.op\n.end\n")
    out = _run("sim", str(deck))
    assert out.returncode == 2 and "unknown subckt" in out.stderr and "Traceback" not in out.stderr
