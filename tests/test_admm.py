"""ADMM structured pruning: the penalty's exact gradient, the projection step, and the three
steps on digits (masks in the description, dead neurons removed, retrained)."""

import numpy as np
import pytest

from conv_problems import digits_conv_problem
from gradcheck import central_gradient, relative_error
from memspice.datasets import features_to_voltages, load_digits
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import NetworkSpec
from memspice.train.admm import (
    AdmmConfig,
    AdmmObjective,
    AdmmPenalty,
    LayerTarget,
    admm_prune,
    layer_groups,
    project,
)
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.losses import Loss, accuracy
from memspice.train.mapping import ConductanceWindow
from memspice.train.sparsity import SparsityError
from memspice.train.trainer import TrainConfig, train


def _penalty(spec, rng, rho=0.7):
    cal = phax_reference_calibration()
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    z = [rng.uniform(0, 1, p.theta_shape) * (rng.uniform(size=p.theta_shape) > 0.5) for p in spec.plans]
    u = [0.1 * rng.standard_normal(p.theta_shape) for p in spec.plans]
    return cal, AdmmPenalty(window, rho, z, u)


def test_penalty_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    spec = NetworkSpec.dense((4, 3, 2))
    _, penalty = _penalty(spec, rng)
    params = [rng.standard_normal(p.theta_shape) for p in spec.plans]
    analytic = penalty.value_and_grad(params)[1]
    numeric = central_gradient(lambda p: penalty.value_and_grad(p)[0], params)
    assert relative_error(analytic, numeric) < 1e-8


def test_objective_gradient_is_loss_plus_penalty():
    rng = np.random.default_rng(1)
    spec = NetworkSpec.dense((4, 3, 2))
    cal, penalty = _penalty(spec, rng)
    objective = AdmmObjective(CrossbarNetwork(cal, spec), penalty)
    params = [rng.standard_normal(p.theta_shape) for p in spec.plans]
    x = rng.uniform(-0.25, 0.25, (5, 4))
    y = rng.integers(0, 2, 5)
    loss = Loss("bce", link="logit")
    analytic = objective.loss_and_grad(params, x, y, loss)[1]
    numeric = central_gradient(lambda p: objective.loss_and_grad(p, x, y, loss)[0], params)
    assert relative_error(analytic, numeric) < 1e-7


def test_projection_with_levels_and_targets():
    spec = NetworkSpec.dense((6, 4, 3))
    targets = [LayerTarget("row", 0.5), LayerTarget()]
    groups = layer_groups(spec, targets)
    rng = np.random.default_rng(2)
    s = [rng.uniform(0.015, 1, p.theta_shape) for p in spec.plans]
    z, keep = project(s, groups, targets, levels=5, low=0.015, high=1.0)
    assert keep[1].all() and keep[0][:, :6].sum() == 4 * 3
    levels = 0.015 + np.arange(5) * (1 - 0.015) / 4
    assert np.isin(z[1], levels).all()
    assert np.isin(z[0][keep[0]], levels).all() and (z[0][~keep[0]] == 0).all()
    with pytest.raises(SparsityError, match="2 pruning targets|targets for"):
        layer_groups(spec, targets[:1])
    with pytest.raises(SparsityError, match="compression"):
        LayerTarget.from_compression("row", 0.5)
    assert LayerTarget.from_compression("row", 4).density == 0.25


@pytest.mark.slow
def test_admm_prunes_digits_rows_and_neurons():
    cal = phax_reference_calibration()
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)
    x_train, y_train, x_test, y_test = x[:1200], data.labels[:1200], x[1400:], data.labels[1400:]
    spec = NetworkSpec.dense((64, 16, 10))
    model = CrossbarNetwork(cal, spec, init_mean=-1.0)
    recipe = TrainConfig(epochs=8, lr=0.05, loss_link="logit", progress=False)
    dense = train(model, x_train, y_train, recipe)
    dense_acc = accuracy(model.predict(dense.params, x_test), y_test)
    config = AdmmConfig(rho=0.1, rounds=3, epochs_per_round=1, retrain_epochs=4, levels=16,
                        train=recipe)
    out = admm_prune(model, dense.params, x_train, y_train,
                     [LayerTarget("row", 0.5), LayerTarget("row", 0.75)], config)
    pruned = out.model
    assert pruned.spec.topology == (64, 12, 10)
    assert len(out.kept_neurons[0]) == 12
    mask = pruned.spec.masks[0].theta
    assert mask[:, :64].any(axis=0).sum() == 32  # half the pixels kept
    assert out.rounds[-1]["distance"] < out.rounds[0]["distance"]
    acc = accuracy(pruned.predict(out.params, x_test), y_test)
    assert dense_acc > 0.85 and acc > 0.8, (dense_acc, acc)


@pytest.mark.parametrize("evaluator", ["static", "coupled"])
def test_masked_dense_model_equals_the_layered_model(evaluator):
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin
    from memspice.train.admm import MaskedDenseNetwork
    from memspice.train.sparsity import block_diagonal_mask, masked_spec

    cal = calibrate(builtin(), InverterSizing()) if evaluator == "coupled" else phax_reference_calibration()
    dense = NetworkSpec.dense((8, 4, 3))
    second = np.ones((3, 10), dtype=bool)
    second[0, [1, 5]] = False
    spec = masked_spec(dense, [block_diagonal_mask(dense.plans[0], 0.5), second])
    fast = MaskedDenseNetwork(cal, spec, evaluator=evaluator)
    layered = CrossbarNetwork(cal, spec, evaluator=evaluator)
    rng = np.random.default_rng(3)
    params = [rng.normal(-1, 1, p.theta_shape) for p in spec.plans]
    x = rng.uniform(-0.25, 0.25, (6, 8))
    y = rng.integers(0, 3, 6)
    loss = Loss("bce", link="logit")
    np.testing.assert_allclose(fast.predict(params, x), layered.predict(params, x), atol=1e-9)
    value_fast, grads_fast = fast.loss_and_grad(params, x, y, loss)
    value_layered, grads_layered = layered.loss_and_grad(params, x, y, loss)
    assert value_fast == pytest.approx(value_layered, rel=1e-9)
    for a, b in zip(grads_fast, grads_layered):
        np.testing.assert_allclose(a, b, atol=1e-9 * np.abs(b).max())
    assert (grads_fast[0][~spec.masks[0].theta] == 0).all()


def test_admm_removes_whole_kernel_rows_of_a_conv_layer():
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten

    cal = phax_reference_calibration()
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)[:200]
    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(10)))
    model = CrossbarNetwork(cal, spec, init_mean=-1.0)
    params = model.init_params(np.random.default_rng(0))
    recipe = TrainConfig(epochs=1, lr=0.05, loss_link="logit", progress=False)
    config = AdmmConfig(rho=0.1, rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe)
    out = admm_prune(model, params, x, data.labels[:200],
                     [LayerTarget("kernel_row", 0.5), LayerTarget()], config)
    mask = out.model.spec.masks[0].theta
    assert out.model.spec.masks[1] is None
    rows = mask[:, :9].reshape(2, 3, 3)
    assert (rows.all(axis=2) | ~rows.any(axis=2)).all()  # whole kernel rows, kept or removed
    assert rows.all(axis=2).sum() == 3 and (mask[:, 9:18] == mask[:, :9]).all()
    assert mask[:, -2:].all()


@pytest.mark.parametrize("evaluator", ["load-aware", "coupled"])
def test_objective_gradient_of_a_masked_cnn_matches_finite_differences(evaluator):
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten
    from memspice.tech import builtin

    cal = calibrate(builtin(), InverterSizing())
    spec = NetworkSpec((1, 5, 5), (Conv2d(2, 2), AvgPool2d(2), Flatten(), Dense(3)))
    rng = np.random.default_rng(4)
    masks = [np.ones(p.theta_shape, dtype=bool) for p in spec.plans]
    masks[0][1, [0, 4]] = False  # the ip/in pair of tap 0 of channel 1, at every position
    from memspice.train.sparsity import masked_spec

    model = CrossbarNetwork(cal, masked_spec(spec, masks), evaluator=evaluator)
    _, penalty = _penalty(spec, rng)
    objective = AdmmObjective(model, penalty)
    params = [rng.normal(-1.0, 1.0, p.theta_shape) for p in spec.plans]
    x = rng.uniform(-0.25, 0.25, (4, 25))
    y = rng.integers(0, 3, 4)
    loss = Loss("softmax_ce", link="logit")
    analytic = objective.loss_and_grad(params, x, y, loss)[1]
    numeric = central_gradient(lambda p: objective.loss_and_grad(p, x, y, loss)[0], params)
    assert relative_error(analytic, numeric) < 1e-6
    # a masked θ gets only the penalty's pull
    assert np.allclose(analytic[0][~masks[0]], penalty.value_and_grad(params)[1][0][~masks[0]])


def test_admm_on_conv_tiles_removes_a_channel_and_finishes_coupled():
    spec, model, params, x, labels, recipe = digits_conv_problem()
    params[0][2] -= 6.0  # channel 2 far below the others: the projection drops it whole
    config = AdmmConfig(rho=0.5, rounds=1, epochs_per_round=1, retrain_epochs=1, train=recipe,
                        levels=8, finish_evaluator="coupled", finish=recipe)
    out = admm_prune(model, params, x, labels,
                     [LayerTarget("tile", 0.6, (2, 1)), LayerTarget("tile", 0.5, (2, 1))], config)
    assert out.model.evaluator == "coupled"
    assert out.model.spec.plans[0].channels == 2 and out.kept_neurons[0].tolist() == [0, 1]
    assert out.model.spec.plans[1].taps == 2 * 9
    mask = out.model.spec.masks[0].theta
    assert (mask[:, :9] == mask[:, 9:18]).all() and (mask[:, -2] == mask[:, -1]).all()
    assert mask.sum() == 2 * 18  # 18 of the 30 tiles kept, all in channels 0 and 1
    assert len(out.rounds) == 1 and out.history is not None


@pytest.mark.parametrize("evaluator", ["static", "load-aware", "coupled"])
def test_an_unread_conv_channel_is_no_load_and_compacts_away(evaluator):
    """Absent devices are no load: a channel nobody reads (its taps masked in the next layer)
    gives the outputs of the network without it, in every evaluator."""
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten
    from memspice.tech import builtin
    from memspice.train.sparsity import compact, masked_spec

    cal = calibrate(builtin(), InverterSizing())
    spec = NetworkSpec((1, 6, 6), (Conv2d(3, 3), AvgPool2d(2), Conv2d(2, 2), Flatten(), Dense(3)))
    rng = np.random.default_rng(6)
    params = [rng.normal(-1.5, 1.0, p.theta_shape) for p in spec.plans]
    masks = [np.ones(p.theta_shape, dtype=bool) for p in spec.plans]
    k = spec.plans[1].taps  # 3 channels × 2 × 2
    unread = np.arange(k) // 4 == 1
    masks[1][:, np.concatenate([unread, unread, [False, False]])] = False
    masks[1][0, 0] = False  # and one device of the kept taps
    small, cut, _, kept = compact(spec, params, masks)
    assert kept[0].tolist() == [0, 2]
    x = rng.uniform(-0.25, 0.25, (5, 36))
    full = CrossbarNetwork(cal, masked_spec(spec, masks), evaluator=evaluator)
    smaller = CrossbarNetwork(cal, small, evaluator=evaluator)
    np.testing.assert_allclose(full.predict(params, x), smaller.predict(cut, x), atol=1e-9)


def test_projection_skips_what_reads_a_removed_channel_and_covers_outputs_with_a_path():
    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten

    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    targets = [LayerTarget("tile", 0.5, (2, 1)), LayerTarget("tile", 0.2, (2, 1))]
    groups = layer_groups(spec, targets)
    s = [np.full(p.theta_shape, 0.1) for p in spec.plans]
    s[0][0] = 0.9  # channel 0 keeps all 10 of the 20 conv tiles: channel 1 is removed
    s[1][:, 4:8] = 0.95  # the dense layer's largest taps read channel 1 (taps 4-7)
    s[1][1, -2:] = 1.0  # output 1's best structure is its bias pair
    z, keep = project(s, groups, targets, spec=spec)
    assert keep[0][0].all() and not keep[0][1].any()
    reads_1 = np.r_[4:8, 12:16]
    assert not keep[1][:, reads_1].any() and (z[1][:, reads_1] == 0).all()
    taps = keep[1][:, np.r_[0:4, 8:12]]
    assert taps.any(axis=1).all()  # every output reads a live neuron
    assert keep[1].sum() == 2 * 6  # ceil(0.2 × 27) = 6 tiles, the bias pair of output 1 among them
    assert keep[1][1, -2:].all()


@pytest.mark.parametrize("quantize_rounds, levels_seen", [(True, 8), (False, 0)])
def test_admm_rounds_train_on_the_level_grid(monkeypatch, quantize_rounds, levels_seen):
    """With levels, the rounds' objective quantizes σ (straight-through) like the retraining;
    ``quantize_rounds=False`` keeps them continuous."""
    import memspice.train.admm as admm_module

    seen = []
    real_train = admm_module.train

    def recording_train(model, *args, **kwargs):
        seen.append(model)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(admm_module, "train", recording_train)
    cal = phax_reference_calibration()
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)[:120]
    spec = NetworkSpec.dense((64, 6, 10))
    model = admm_module.make_model(cal, spec, init_mean=-1.0)
    params = model.init_params(np.random.default_rng(0))
    recipe = TrainConfig(epochs=1, lr=0.05, loss_link="logit", progress=False)
    config = AdmmConfig(rounds=1, epochs_per_round=1, retrain_epochs=1, levels=8, train=recipe,
                        quantize_rounds=quantize_rounds)
    admm_prune(model, params, x, data.labels[:120], [LayerTarget("row", 0.5), LayerTarget()],
               config)
    objective, retrained = seen
    assert isinstance(objective, AdmmObjective)
    assert objective.model.hardware.levels == levels_seen and retrained.hardware.levels == 8
