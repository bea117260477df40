"""Structures, projections, CSrram clusters, compaction and the refusals of memspice.train.sparsity."""

import numpy as np
import pytest

from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train.sparsity import (
    SparsityError,
    block_diagonal_mask,
    check_density,
    check_paths,
    compact,
    masked_spec,
    physical_rows,
    project_levels,
    project_structures,
    structure_groups,
    tiles_built,
)

DENSE = NetworkSpec.dense((6, 4, 3))
CNN = NetworkSpec((2, 6, 6), (Conv2d(3, 3), AvgPool2d(2), Flatten(), Dense(3)))


def test_row_and_column_groups_pair_ip_and_in():
    plan = DENSE.plans[0]
    rows = structure_groups(plan, "row")
    assert rows.shape == (4, 14)
    assert (rows[:, 2] == 2).all() and (rows[:, 6 + 2] == 2).all()
    assert (rows[:, -2:] == -1).all()
    cols = structure_groups(plan, "column")
    assert (cols == np.arange(4)[:, None]).all()
    with pytest.raises(SparsityError, match="output layer"):
        structure_groups(DENSE.plans[1], "column", output=True)


def test_tiles_follow_the_interleaved_physical_rows():
    plan = DENSE.plans[0]
    assert physical_rows(plan).tolist() == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11, 12, 13]
    groups = structure_groups(plan, "tile", (4, 2))
    # ip_0, in_0, ip_1, in_1 of columns 0-1 share one tile; bias rows 12-13 are tile row 3
    assert groups[0, 0] == groups[1, 7] == groups[0, 1]
    assert groups[0, 2] != groups[0, 0]
    assert groups[2, 0] != groups[0, 0]
    assert len(np.unique(groups)) == 4 * 2
    present = np.zeros(plan.theta_shape, dtype=bool)
    present[0, 0] = present[3, -1] = True
    assert tiles_built(plan, present, (4, 2)) == (2, 8)
    with pytest.raises(SparsityError, match="larger than"):
        structure_groups(plan, "tile", (15, 2))
    with pytest.raises(SparsityError, match="larger than"):
        structure_groups(plan, "tile", (2, 5))


def test_kernel_structures_only_on_conv_layers():
    plan = CNN.plans[0]  # 3 out channels, 2 in channels, k=3: K = 18
    kernels = structure_groups(plan, "kernel")
    assert kernels.shape == (3, 38)
    assert len(np.unique(kernels[kernels >= 0])) == 3 * 2
    assert (kernels[1, :9] == kernels[1, 18:27]).all() and kernels[1, 0] != kernels[1, 9]
    kernel_rows = structure_groups(plan, "kernel_row")
    assert len(np.unique(kernel_rows[kernel_rows >= 0])) == 3 * 2 * 3
    with pytest.raises(SparsityError, match="needs a conv2d layer"):
        structure_groups(DENSE.plans[0], "kernel")
    with pytest.raises(SparsityError, match="unknown structure"):
        structure_groups(plan, "blob")


def test_projection_keeps_the_largest_structures_and_is_nearest():
    rng = np.random.default_rng(0)
    plan = DENSE.plans[0]
    groups = structure_groups(plan, "row")
    values = rng.uniform(0.1, 1.0, plan.theta_shape)
    z, keep = project_structures(values, groups, 0.5)
    norms = [np.sum(values[groups == g] ** 2) for g in range(6)]
    kept = sorted(np.argsort(norms)[-3:])
    assert sorted(set(groups[keep & (groups >= 0)])) == kept
    assert (z[:, -2:] == values[:, -2:]).all()
    # nearest point: any other choice of 3 rows is farther
    best = np.sum((values - z) ** 2)
    for other in ([0, 1, 2], [3, 4, 5], [0, 2, 4]):
        alt = np.where(np.isin(groups, other) | (groups < 0), values, 0.0)
        assert np.sum((values - alt) ** 2) >= best - 1e-12
    assert project_structures(values, groups, 1.0)[1].all()


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "x"])
def test_density_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(SparsityError, match=r"\(0, 1\]"):
        check_density(bad)


def test_levels_round_kept_values_and_keep_zeros():
    v = np.array([0.0, 0.015, 0.3, 0.99, 2.0])
    q = project_levels(v, 3, 0.015, 1.0)
    assert q.tolist() == [0.0, 0.015, 0.5075, 1.0, 1.0]
    with pytest.raises(SparsityError):
        project_levels(v, 1, 0.0, 1.0)


def test_block_diagonal_clusters():
    spec = NetworkSpec.dense((8, 4, 2))
    mask = block_diagonal_mask(spec.plans[0], 0.25, order="contiguous")
    assert mask[:, :8].sum() == 4 * 2  # each neuron reads 2 of 8 inputs
    assert (mask[:, :8] == mask[:, 8:16]).all() and mask[:, -2:].all()
    assert mask[0, :8].tolist() == [True, True] + [False] * 6
    assert mask[3, :8].tolist() == [False] * 6 + [True, True]
    interleaved = block_diagonal_mask(spec.plans[0], 0.25)
    assert interleaved[0, :8].tolist() == [True, False, False, False, True, False, False, False]
    assert interleaved[3, :8].tolist() == [False, False, False, True, False, False, False, True]
    assert interleaved[:, :8].sum(axis=0).tolist() == [1] * 8  # every input in one cluster
    with pytest.raises(SparsityError, match="more than"):
        block_diagonal_mask(spec.plans[0], 0.1)
    with pytest.raises(SparsityError, match="cluster order"):
        block_diagonal_mask(spec.plans[0], 0.25, order="random")


def test_compact_removes_dead_neurons_and_their_rows():
    theta = [np.arange(4 * 14.0).reshape(4, 14), np.arange(3 * 10.0).reshape(3, 10)]
    second = np.ones((3, 10), dtype=bool)
    second[:, [1, 5]] = False  # nobody reads hidden neuron 1
    small, arrays, masks, kept = compact(DENSE, theta, [None, second])
    assert small.topology == (6, 3, 3)
    assert kept[0].tolist() == [0, 2, 3]
    assert np.array_equal(arrays[0], theta[0][[0, 2, 3]])
    assert np.array_equal(arrays[1], theta[1][:, [0, 2, 3, 4, 6, 7, 8, 9]])
    assert masks == [None, None] and small.masks == ()


def test_masks_without_a_path_or_a_device_are_refused():
    first = np.ones((4, 14), dtype=bool)
    first[2] = False
    with pytest.raises(SparsityError, match="column 2 with no device"):
        masked_spec(DENSE, [first, None])
    second = np.ones((3, 10), dtype=bool)
    second[1, :8] = False  # output 1 reads only the bias rows
    with pytest.raises(SparsityError, match="output neuron 1 with no path"):
        masked_spec(DENSE, [None, second])
    inputs_cut = np.ones((4, 14), dtype=bool)
    inputs_cut[:, :12] = False  # no input reaches any hidden neuron
    with pytest.raises(SparsityError, match="no path"):
        masked_spec(DENSE, [inputs_cut, None])
    check_paths(DENSE)


def test_pruned_golden_deck_has_no_element_for_a_masked_device():
    from memspice.netlist.emit import emit
    from memspice.regress.cases import default_cases, pruned_network_masks

    case = next(c for c in default_cases() if c.name == "pruned_network_builtin")
    text = emit(case.build())
    resistors = [line.split()[0] for line in text.splitlines() if line.startswith("Rl")]
    first, second = pruned_network_masks()
    assert len(resistors) == first.sum() + second.sum() == 47
    assert "Rl0m0_5" not in resistors and "Rl0m3_11" not in resistors  # input 5 dropped
    assert "Rl0m0_3" not in resistors and "Rl0m3_0" not in resistors   # other cluster
    assert "Rl1m0_3" not in resistors and "Rl1m1_3" in resistors


def test_conv_tiles_cover_the_unrolled_crossbar_of_a_position():
    plan = CNN.plans[0]  # 3 out channels, K = 18 taps (2 in channels × 3 × 3)
    pairs = structure_groups(plan, "tile", (2, 1))
    # a 2x1 tile is the ip/in pair of one tap (or the bias pair) of one output channel
    assert len(np.unique(pairs)) == 3 * 19
    assert pairs[1, 4] == pairs[1, 18 + 4] and pairs[1, -2] == pairs[1, -1]
    assert pairs[1, 4] != pairs[2, 4] and pairs[1, 4] != pairs[1, 5]
    wide = structure_groups(plan, "tile", (6, 3))  # three taps of every channel
    assert wide[0, 0] == wide[2, 2] == wide[1, 18 + 1] and wide[0, 3] != wide[0, 0]
    present = np.zeros(plan.theta_shape, dtype=bool)
    present[0, 0] = present[2, -1] = True
    assert tiles_built(plan, present, (6, 3)) == (2, 7)
    with pytest.raises(SparsityError, match="larger than its 38x3"):
        structure_groups(plan, "tile", (2, 4))


def test_compact_removes_dead_conv_channels_and_the_taps_reading_them():
    spec = NetworkSpec((2, 8, 8), (Conv2d(3, 3), AvgPool2d(2), Conv2d(4, 2), Flatten(), Dense(5)))
    masks = [np.ones(p.theta_shape, dtype=bool) for p in spec.plans]
    masks[0][1] = False  # conv channel 1 has no device
    k = spec.plans[2].taps  # 4 channels × 2 × 2 after the flatten
    reads_3 = np.arange(k) // 4 == 3
    masks[2][:, np.concatenate([reads_3, reads_3, [False, False]])] = False  # nobody reads channel 3
    arrays = [np.arange(np.prod(p.theta_shape)).reshape(p.theta_shape) for p in spec.plans]
    small, cut, cut_masks, kept = compact(spec, arrays, masks)
    assert [p.channels for p in small.plans] == [2, 3, 5]
    assert [k.tolist() for k in kept] == [[0, 2], [0, 1, 2], [0, 1, 2, 3, 4]]
    assert all(m is None for m in cut_masks) and small.masks == ()
    # conv 2 (K = 3 channels × 2 × 2) keeps the 4 taps of channels 0 and 2 (c_in, row, col
    # order), both polarities, and the bias pair
    taps = np.concatenate([np.arange(4), 8 + np.arange(4)])
    cols = np.concatenate([taps, 12 + taps, [24, 25]])
    assert (cut[1] == arrays[1][np.ix_([0, 1, 2], cols)]).all()
    assert (cut[2] == arrays[2][:, np.r_[0:12, 16:28, 32:34]]).all()
    from memspice.train.sparsity import kept_theta_columns

    assert (kept_theta_columns(spec.plans[1], 3, kept[0]) == cols).all()
    everything = [np.zeros(p.theta_shape, dtype=bool) for p in spec.plans[:1]] + masks[1:]
    with pytest.raises(SparsityError, match="every neuron of network layer 0"):
        compact(spec, arrays, everything)


def test_projection_can_keep_a_structure_in_every_column():
    plan = DENSE.plans[1]  # the output layer: 3 columns, 2x1 tiles of 4 inputs and the bias
    groups = structure_groups(plan, "tile", (2, 1))
    values = np.full(plan.theta_shape, 0.01)
    values[0] = 1.0  # column 0 holds the 5 largest structures
    _, keep = project_structures(values, groups, 0.2)  # 3 of 15 tiles
    assert keep[0].sum() == 6 and not keep[1:].any()
    _, keep = project_structures(values, groups, 0.2, cover_columns=True)
    assert keep.any(axis=1).all() and keep.sum() == 3 * 2
    _, keep = project_structures(values, groups, 0.4, cover_columns=True)  # 6 tiles
    assert keep[0].sum() == 4 * 2 and keep[1].sum() == keep[2].sum() == 2
