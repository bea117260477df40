"""The shared technology options: one spelling and one set of presets for every command."""

from __future__ import annotations

import argparse

import pytest

from memspice.characterize.presets import BUILTIN_SIZING, default_sizing
from memspice.cli import build_parser
from memspice.cli_options import (
    add_technology_options,
    sizing_from_args,
    sizings_from_args,
    technology_factory,
    technology_from_args,
)
from memspice.circuit.wiring import Rails
from memspice.errors import ConfigError


def _parse(*argv: str, multi: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_technology_options(parser, multi_sizes=multi)
    return parser.parse_args(list(argv))


def test_defaults_are_the_presets() -> None:
    assert sizing_from_args(_parse()) == BUILTIN_SIZING
    assert sizing_from_args(_parse("--tech", "sky130")) == default_sizing("sky130")
    assert sizing_from_args(_parse("--wn", "2")).wn_m == pytest.approx(2e-6)


def test_aliases_and_overrides() -> None:
    args = _parse("--pdk", "/somewhere", "--temperature", "85", "--vdd", "0.3", "--vss", "-0.3")
    assert args.pdk_path == "/somewhere" and args.temp == 85.0
    tech = technology_from_args(args)
    assert tech.rails == Rails(0.3, -0.3) and tech.temperature_c == 85.0
    assert technology_from_args(args, rails=Rails(0.2, -0.2)).rails == Rails(0.2, -0.2)


def test_bad_values_are_clear_errors(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="only the tt corner"):
        technology_from_args(_parse("--corner", "ss"))
    with pytest.raises(ConfigError, match="--lib, --nmos and --pmos"):
        technology_factory(_parse("--tech", "user"))
    with pytest.raises(SystemExit):  # argparse refuses it while parsing
        _parse("--wp", "0")
    assert "argument --wp: must be a finite number > 0, got '0'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="four numbers"):
        sizings_from_args(_parse("--sizes", "1,2,3", multi=True))
    lib = tmp_path / "my.lib"
    lib.write_text("* empty\n")
    tech = technology_from_args(_parse("--tech", "user", "--lib", str(lib), "--nmos", "nch", "--pmos", "pch"))
    assert tech.nmos_model == "nch" and tech.includes[0].relpath == "my.lib"


def test_several_sizes() -> None:
    sizes = sizings_from_args(_parse("--sizes", "1,2,0.15,0.35; 3,4,0.5,0.5", multi=True))
    assert [s.wn_m for s in sizes] == pytest.approx([1e-6, 3e-6])


@pytest.mark.parametrize("command", ["netlist", "characterize", "calibrate", "validate", "loop", "hybrid"])
def test_every_circuit_command_takes_the_same_options(command: str) -> None:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    flags = {s for action in sub._actions for s in action.option_strings}
    assert {"--tech", "--corner", "--flavor", "--pdk-path", "--lib", "--nmos", "--pmos", "--temp",
            "--wn", "--wp", "--ln", "--lp"} <= flags


def test_train_mode_auto_follows_the_calibration() -> None:
    import dataclasses

    from analytic_inverter import synthetic_calibration

    from memspice.fit.calibration import phax_reference_calibration
    from memspice.train.command import resolve_mode

    assert resolve_mode("auto", phax_reference_calibration()) == "static"
    assert resolve_mode("auto", synthetic_calibration(11)) == "coupled"
    assert resolve_mode("load-aware", dataclasses.replace(synthetic_calibration(11))) == "load-aware"
