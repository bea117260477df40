"""Pruning targets from text (the prune command's --targets, --density, --compression)."""

import argparse

import pytest

from memspice.errors import ConfigError
from memspice.prune.command import _targets
from memspice.prune.targets import parse_amount, parse_targets, parse_tile
from memspice.train.sparsity import SparsityError


def test_amounts_tiles_and_targets():
    assert parse_amount("0.25") == 0.25 and parse_amount("10x") == pytest.approx(0.1)
    assert parse_tile("4x8") == (4, 8)
    targets = parse_targets("tile:0.1:4x4,row:5x", 2)
    assert targets[0].structure == "tile" and targets[0].tile == (4, 4) and targets[0].density == 0.1
    assert targets[1].structure == "row" and targets[1].density == pytest.approx(0.2)
    assert parse_targets("none,row:1", 2)[0].structure is None


@pytest.mark.parametrize("text, message", [
    ("row:0", r"\(0, 1\]"), ("row:abc", "density is a number"), ("row:0.5x", "≥ 1"),
    ("blob:0.5", "STRUCTURE:AMOUNT"), ("tile:0.5", "needs a tile size"), ("tile:0.5:4by4", "4x4"),
    ("tile:0.5:0x4", "positive"),
])
def test_bad_targets_are_refused(text, message):
    with pytest.raises(SparsityError, match=message):
        parse_targets(text, 1)


def _args(**kw):
    base = dict(targets=None, density=None, compression=None, structure="row", tile=None)
    return argparse.Namespace(**{**base, **kw})


def test_command_targets_from_density_compression_and_structure_lists():
    targets = _targets(_args(compression="10,2"), 2)
    assert [t.density for t in targets] == pytest.approx([0.1, 0.5])
    targets = _targets(_args(density="0.2", structure="tile,row", tile="4x2"), 2)
    assert targets[0].tile == (4, 2) and targets[1].structure == "row"
    assert _targets(_args(compression="none,4"), 2)[0].structure is None
    with pytest.raises(ConfigError, match="3 values for 2"):
        _targets(_args(density="0.1,0.2,0.3"), 2)
    with pytest.raises(ConfigError, match="not both"):
        _targets(_args(targets="row:0.5,none", density="0.5"), 2)


def test_bench_networks_take_epochs_levels_a_budget_and_rho():
    import sys
    from pathlib import Path

    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
    from memspice.train.sparsity import SparsityError

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_prune

    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
    args = argparse.Namespace(admm_targets="tile:budget:2x1,tile:budget:2x1@3L32B5.5;"
                                           "tile:0.5:2x1,none;"
                                           "tile:budget:2x1,tile:budget:2x1@2L32W17.7P0.25",
                              retrain_epochs=None, levels=0)
    (text, targets, tag, retrain, levels, budget, rho), second, third = bench_prune._admm_runs(args, spec)
    assert (retrain, levels, budget, rho) == (3, 32, ("devices", 5.5), None)
    assert tag.endswith("_L32_R3_B5.5")
    assert all(t.budgeted for t in targets) and not any(t.budgeted for t in second[1])
    assert second[3:] == (None, 0, None, None)
    assert third[3:] == (2, 32, ("weights", 17.7), 0.25) and third[2].endswith("_L32_R2_W17.7_P0.25")
    assert bench_prune._budget_config(third[5]) == {"weight_compression": 17.7}
    assert bench_prune._budget_config(budget) == {"device_compression": 5.5}
    with pytest.raises(SystemExit, match="NLkBr"):
        bench_prune._admm_runs(argparse.Namespace(admm_targets="none,none@B", retrain_epochs=None,
                                                  levels=0), spec)
    # 2·(2·9+2) + 10·(2·18+2) = 420 θ: a weight compression above that keeps less than one
    for bad, message in (("W500", "at most 420"), ("W0.5", "≥ 1"), ("B0.5", "≥ 1")):
        with pytest.raises(SparsityError, match=message):
            bench_prune._admm_runs(argparse.Namespace(
                admm_targets=f"tile:budget:2x1,none@{bad}", retrain_epochs=None, levels=0), spec)
