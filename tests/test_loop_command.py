"""``memspice loop`` / ``hybrid`` / ``corners``: argument handling without simulation."""

from __future__ import annotations

import argparse

import pytest

from memspice.errors import ConfigError
from memspice.loop import command


@pytest.fixture()
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="memspice")
    command.register(p.add_subparsers(dest="command"))
    return p


def test_loop_options_parse(parser, tmp_path):
    args = parser.parse_args(["loop", str(tmp_path), "--mode", "static", "--max-rounds", "2",
                              "--tolerance-mv", "0.5", "--json"])
    assert (args.mode, args.max_rounds, args.tolerance_mv, args.json) == ("static", 2, 0.5, True)
    assert args.func is command.run_loop


def test_sizes_are_checked(parser, tmp_path):
    args = parser.parse_args(["hybrid", str(tmp_path), "--sizes", "1,2"])
    with pytest.raises(ConfigError, match="four numbers"):
        command.sizing_of(args)
    args = parser.parse_args(["hybrid", str(tmp_path), "--sizes", "0.6,1,0.1,0.1"])
    assert command.sizing_of(args).wn_m == pytest.approx(0.6e-6)


def test_missing_network_is_a_config_error(parser, tmp_path):
    args = parser.parse_args(["loop", str(tmp_path / "none")])
    with pytest.raises(ConfigError, match="no trained network"):
        args.func(args)


def test_builtin_corners_need_temperatures(parser):
    args = parser.parse_args(["corners", "--tech", "builtin", "--corners", "tt,ss"])
    with pytest.raises(ConfigError, match="temperatures"):
        args.func(args)


def test_split_caps_samples(parser, tmp_path):
    args = parser.parse_args(["loop", str(tmp_path), "--samples", "25", "--train-samples", "40"])
    x_train, y_train, x_test, y_test = command.split_data(args, 0.25, -0.25)
    assert x_train.shape == (40, 64) and len(y_test) == 25 and x_test.max() <= 0.25
    with pytest.raises(SystemExit):  # refused while parsing
        parser.parse_args(["loop", str(tmp_path), "--samples", "0"])
