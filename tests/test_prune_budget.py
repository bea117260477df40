"""A device (or weight) budget shared by a network's layers: costs per θ, the greedy allocation that keeps
cheap structures first, ADMM under a budget, the refusals, and the weight count beside the
device count."""

import numpy as np
import pytest

from conv_problems import digits_conv_problem
from memspice.cli import main
from memspice.errors import ConfigError
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.prune.targets import parse_targets
from memspice.train.admm import AdmmConfig, LayerTarget, admm_prune, layer_groups
from memspice.train.device_budget import (
    budget_densities,
    check_weight_compression,
    theta_costs,
    theta_device_costs,
)
from memspice.train.sparsity import SparsityError

CNN = NetworkSpec((1, 14, 14), (Conv2d(4, 3), AvgPool2d(2), Conv2d(8, 3), AvgPool2d(2), Flatten(),
                                Dense(10)))


def test_costs_count_one_device_per_position_and_pool_window():
    costs = [theta_device_costs(p) for p in CNN.plans]
    assert [c.sum() for c in costs] == [p.n_devices for p in CNN.plans] == [11520, 37120, 2580]
    assert costs[0][0, 0] == 144 and costs[1][0, 0] == 16 * 4 and costs[2][0, 0] == 4
    assert costs[0][0, -1] == 144 and costs[1][0, -1] == 16 and costs[2][0, -1] == 1


def test_the_budget_keeps_cheap_structures_first_and_fits():
    targets = parse_targets("tile:budget:2x1,tile:budget:2x1,tile:budget:2x1", 3)
    groups = layer_groups(CNN, targets)
    values = [np.full(p.theta_shape, 0.5) for p in CNN.plans]  # every structure alike
    densities = budget_densities(CNN, values, groups, [True] * 3, [1.0] * 3, 17.7)
    dense = sum(p.n_devices for p in CNN.plans)
    # equal norms: the dense layer's 2- and 8-device tiles all fit before any 32-device conv
    # bias pair, and the conv layers keep the one structure a layer always keeps
    assert densities[2] == 1.0
    kept = [round(d * g.max() + d) for d, g in zip(densities, groups)]
    devices = sum(k * c for k, c in zip(kept[:2], (288, 32)))
    assert densities[0] == 1 / 40 and devices + 2580 <= dense / 17.7 + 288
    # a larger norm outranks a cheaper device count: channel 0's conv-1 weights first
    values[0][0] = 40.0
    densities = budget_densities(CNN, values, groups, [True] * 3, [1.0] * 3, 10)
    assert densities[0] > 1 / 40
    # a fixed-density layer is charged, the others share what is left
    fixed = budget_densities(CNN, values, groups, [True, False, True], [1.0, 0.1, 1.0], 10)
    assert fixed[1] == 0.1 and fixed[0] < densities[0]


@pytest.mark.parametrize("ratio, message", [(0.5, "≥ 1"), ("ten", "a number ≥ 1"),
                                            (float("inf"), "≥ 1")])
def test_bad_budgets_are_refused(ratio, message):
    targets = parse_targets("tile:budget:2x1,none,tile:budget:2x1", 3)
    groups = layer_groups(CNN, targets)
    values = [np.ones(p.theta_shape) for p in CNN.plans]
    with pytest.raises(SparsityError, match=message):
        budget_densities(CNN, values, groups, [True, False, True], [1.0] * 3, ratio)
    with pytest.raises(SparsityError, match="≥ 1"):
        AdmmConfig(device_compression=0.5)
    with pytest.raises(SparsityError, match="needs a structure"):
        LayerTarget(None, budgeted=True)
    with pytest.raises(ConfigError, match="finish samples"):
        AdmmConfig(finish_samples=0)


def test_admm_under_a_device_budget_prunes_the_expensive_conv_weights():
    from memspice.prune.flow import trained_network
    from memspice.prune.measure import hardware_counts

    spec, model, params, x, labels, recipe = digits_conv_problem()
    targets = parse_targets("tile:budget:2x1,tile:budget:2x1", 2)
    with pytest.raises(SparsityError, match="need a device compression"):
        admm_prune(model, params, x, labels, targets,
                   AdmmConfig(rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe))
    with pytest.raises(SparsityError, match="at least one layer in the device budget"):
        admm_prune(model, params, x, labels, parse_targets("tile:0.5:2x1,none", 2),
                   AdmmConfig(rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe,
                              device_compression=3))
    config = AdmmConfig(rho=0.5, rounds=2, epochs_per_round=1, retrain_epochs=1, train=recipe,
                        levels=32, device_compression=3.0)
    out = admm_prune(model, params, x, labels, targets, config)
    counts = hardware_counts(trained_network(out.model, out.params), spec, out.kept_neurons)
    dense_devices = sum(p.n_devices for p in spec.plans)  # 3·36·20 + 10·(2·27·4 + 2) = 4,340
    assert counts.devices <= dense_devices / 3.0 + 36 * 2  # within one conv tile of the budget
    # a conv tile costs 72 devices, a dense one 8: the conv layer is cut much deeper
    first, second = out.rounds[-1]["densities"]
    assert first < 1 / 3 < second
    assert counts.weights < counts.dense_weights == 3 * 20 + 10 * 56
    assert counts.weight_compression == counts.dense_weights / counts.weights
    programmed = trained_network(out.model, out.params).conductances
    assert len(np.unique(np.concatenate([g.ravel() for g in programmed]))) <= 32


@pytest.mark.parametrize("extra, message", [
    (["--targets", "tile:budget:2x1,tile:budget:2x1"], "needs --device-compression"),
    (["--targets", "tile:0.5:2x1,none", "--device-compression", "4"], "targets whose amount is 'budget'"),
    (["--targets", "tile:budget:2x1,none", "--device-compression", "0.5x"], "must be ≥ 1"),
    (["--targets", "tile:budget:2x1,none", "--device-compression", "lots"], "a number ≥ 1"),
    (["--targets", "none,none", "--device-compression", "4"], "targets whose amount is 'budget'"),
    (["--method", "csrram", "--device-compression", "4"], "not --device-compression"),
])
def test_bad_budget_options_are_one_error_and_nothing_is_written(tmp_path, capsys, extra, message):
    from test_prune_command import _dense_network

    net = _dense_network(tmp_path)
    out = tmp_path / "out"
    method = [] if "--method" in extra else ["--method", "admm"]
    code = main(["prune", "--network", str(net), *method, *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("memspice: error:"), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_a_weight_budget_counts_every_theta_once():
    targets = parse_targets("tile:budget:2x1,tile:budget:2x1,tile:budget:2x1", 3)
    groups = layer_groups(CNN, targets)
    assert all((theta_costs(p, "weights") == 1).all() for p in CNN.plans)
    with pytest.raises(SparsityError, match="devices or weights"):
        theta_costs(CNN.plans[0], "tiles")
    values = [np.full(p.theta_shape, 0.5) for p in CNN.plans]
    values[0][:, :] = 0.9  # conv-1 weights largest: a weight budget keeps them whatever they cost
    total = sum(int(np.prod(p.theta_shape)) for p in CNN.plans)  # 80 + 592 + 660 = 1,332
    densities = budget_densities(CNN, values, groups, [True] * 3, [1.0] * 3, 4, unit="weights")
    kept = sum(d * np.prod(p.theta_shape) for d, p in zip(densities, CNN.plans))
    # conv 1 whole (80 θ), then 126 of the equal 2-θ tiles of conv 2 and the dense layer fit
    # in 333, all in one of them; the other keeps the one tile a budgeted layer always keeps
    assert densities[0] == 1.0 and kept == 80 + 2 * 126 + 2
    by_devices = budget_densities(CNN, values, groups, [True] * 3, [1.0] * 3, 4)
    assert by_devices[0] < 1.0  # the device budget still prices a conv-1 weight at 288 devices


@pytest.mark.parametrize("ratio, message", [(0.5, "≥ 1"), ("many", "a number ≥ 1"),
                                            (1333, "at most 1332")])
def test_weight_compressions_outside_one_to_the_theta_count_are_refused(ratio, message):
    with pytest.raises(SparsityError, match=f"a weight compression.*{message}"):
        check_weight_compression(ratio, CNN)
    assert check_weight_compression(1332, CNN) == 1332.0
    with pytest.raises(ConfigError, match="devices or weights, not both"):
        AdmmConfig(device_compression=2, weight_compression=2)


def test_admm_under_a_weight_budget_keeps_that_share_of_the_theta():
    from memspice.prune.flow import trained_network
    from memspice.prune.measure import hardware_counts

    spec, model, params, x, labels, recipe = digits_conv_problem()
    targets = parse_targets("none,tile:budget:2x1", 2)
    with pytest.raises(SparsityError, match="at least one layer in the weight budget"):
        admm_prune(model, params, x, labels, parse_targets("tile:0.5:2x1,none", 2),
                   AdmmConfig(rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe,
                              weight_compression=3))
    with pytest.raises(SparsityError, match="at most 620"):  # 3·20 + 10·56 θ
        admm_prune(model, params, x, labels, targets,
                   AdmmConfig(rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe,
                              weight_compression=700))
    config = AdmmConfig(rho=0.5, rounds=2, epochs_per_round=1, retrain_epochs=1, train=recipe,
                        levels=32, weight_compression=4.0)
    out = admm_prune(model, params, x, labels, targets, config)
    counts = hardware_counts(trained_network(out.model, out.params), spec, out.kept_neurons)
    # the conv layer (60 θ) is charged whole, the dense layer keeps what is left of 620 / 4
    assert counts.dense_weights == 620 and counts.weights <= 155
    assert counts.weight_compression >= 4.0
    assert out.rounds[-1]["densities"][1] == pytest.approx((155 - 60) // 2 / 280)


@pytest.mark.parametrize("extra, message", [
    (["--targets", "tile:budget:2x1,none", "--weight-compression", "1e9"], "at most"),
    (["--targets", "tile:budget:2x1,none", "--weight-compression", "0.5x"], "must be ≥ 1"),
    (["--targets", "tile:0.5:2x1,none", "--weight-compression", "4"], "targets whose amount is 'budget'"),
    (["--targets", "tile:budget:2x1,none", "--weight-compression", "4", "--device-compression", "4"],
     "two budgets"),
])
def test_bad_weight_budget_options_are_one_error_and_nothing_is_written(tmp_path, capsys, extra,
                                                                        message):
    test_bad_budget_options_are_one_error_and_nothing_is_written(tmp_path, capsys, extra, message)
