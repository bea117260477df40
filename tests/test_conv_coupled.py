"""The coupled evaluator of layer-described networks: equal to the dense one on dense
networks, the true load of every conv output, exact implicit gradients through
conv → pool → conv → pool → dense, trainable, and equal to ngspice's node voltages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.network.wiring import fan_out, network_wiring
from memspice.train.conv_coupled import LayeredCoupledEvaluator, load_of, row_column_matrix
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.coupled import CoupledEvaluator
from memspice.train.coupled_solve import Linearization, Load, SparseLoad
from memspice.train.losses import LOSS_LINKS, LOSS_NAMES, Loss

from analytic_inverter import VDD, VSS, synthetic_calibration
from gradcheck import central_gradient

# conv(pad 1) → pool → conv → pool → flatten → dense: padding (a 0 V row), folding and sharing.
STACK = NetworkSpec((1, 8, 8), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 3),
                                AvgPool2d(2), Flatten(), Dense(3)))


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


def _data(spec, seed, batch=4):
    rng = np.random.default_rng(seed)
    return rng, rng.uniform(VSS, VDD, (batch, spec.n_inputs)), rng.integers(0, 3, batch)


def test_dense_network_equals_the_dense_coupled_evaluator(calibration):
    spec = NetworkSpec.dense((6, 4, 3))
    model = CrossbarNetwork(calibration, spec, evaluator="coupled")
    rng, x, labels = _data(spec, 0, batch=5)
    params = model.init_params(rng)
    g, _ = model.conductances(params)
    dense = CoupledEvaluator(calibration)
    ours, theirs = model.forward(g, x), dense.forward(g, x)
    for a, b in zip(ours.layers, theirs.layers):
        for name in ("column", "outn", "outp"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
    for link in LOSS_LINKS:
        loss = Loss("bce", link=link)
        if link == "logit":
            z = model.logit_gain * (ours.layers[-1].column - calibration.activation.noninverting.c3)
            _, grad_z = loss.logit_value_and_grad(z, labels)
            args = (np.zeros_like(ours.output), grad_z * model.logit_gain)
        else:
            args = (loss.value_and_grad(ours.output, labels, VSS, VDD)[1], None)
        # The dense evaluator's backward reuses its last Newton linearization (one < 1e-10 V step
        # before the solution); without it, it linearizes at the solution as this one does.
        at_solution = dataclasses.replace(theirs, solver_state=())
        for a, b in zip(model.backward(ours, *args), dense.backward(at_solution, *args)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
    # and the static evaluator of the same model differs (the load is real)
    static = CrossbarNetwork(calibration, spec).forward(g, x)
    assert np.abs(static.layers[0].outp - ours.layers[0].outp).max() > 1e-3


def test_load_sees_every_driven_device_and_padding_only_in_totals(calibration):
    wirings = network_wiring(STACK)
    rng = np.random.default_rng(3)
    devices = [rng.uniform(1e-7, 5e-6, w.source.shape) for w in wirings]
    nxt = wirings[1]
    matrix = row_column_matrix(nxt, devices[1])
    load = load_of(matrix, VDD, VSS)
    n = nxt.plan.n_sources
    # each neuron's outp drives exactly its fan-out of devices, summed into its load
    by_source = np.bincount(nxt.source.ravel(), weights=devices[1].ravel(),
                            minlength=nxt.n_row_sources)
    np.testing.assert_allclose(load.p_p.sum(axis=0), by_source[:n], rtol=1e-13)
    np.testing.assert_allclose(load.p_n.sum(axis=0), by_source[n : 2 * n], rtol=1e-13)
    # a 3×3 conv on a 4×4 pooled map (2×2 outputs, 2 channels): an inner pooled position is
    # read by 4 windows, a corner by 1; one device per window (the pool spreads over sources)
    assert fan_out(nxt).max() == 2 * 4 and fan_out(nxt).min() == 2 * 1
    np.testing.assert_allclose(load.total, devices[1].sum(axis=1), rtol=1e-13)
    # layer 1 has no padding; layer 0's padding devices go to the 0 V row, in its totals only
    first = row_column_matrix(wirings[0], devices[0])
    assert first[:, wirings[0].zero_row].max() > 0
    assert np.all(matrix[:, nxt.zero_row] == 0)


def _directional(f, params, directions, step=1e-4):
    """Richardson-extrapolated central differences of ``f`` along each direction."""
    out = []
    for v in directions:
        estimates = []
        for h in (step, step / 2):
            up = f([p + h * d for p, d in zip(params, v)])
            down = f([p - h * d for p, d in zip(params, v)])
            estimates.append((up - down) / (2 * h))
        out.append((4 * estimates[1] - estimates[0]) / 3)
    return np.array(out)


@pytest.mark.parametrize("link", LOSS_LINKS)
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_theta_gradient_matches_directional_differences(calibration, loss_name, link):
    theta_mask = np.ones(STACK.plans[1].theta_shape, dtype=bool)
    theta_mask[0, 3:7] = False  # part of kernel 0 removed at every position
    spec = STACK.with_masks((None, CrossbarMask(theta=theta_mask), None))
    model = CrossbarNetwork(calibration, spec, evaluator="coupled", init_std=0.7)
    rng, x, labels = _data(spec, 1)
    params = model.init_params(rng)
    loss = Loss(loss_name, link=link)
    _, grads = model.loss_and_grad(params, x, labels, loss)
    assert np.all(grads[1][~theta_mask] == 0)
    directions = [[rng.standard_normal(p.shape) for p in params] for _ in range(4)]
    analytic = np.array([sum(np.sum(g * d) for g, d in zip(grads, v)) for v in directions])
    numeric = _directional(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params,
                           directions)
    assert np.abs(analytic - numeric).max() <= 1e-6 * np.abs(numeric).max()


@pytest.mark.slow
def test_theta_gradient_matches_finite_differences_entry_by_entry(calibration):
    model = CrossbarNetwork(calibration, STACK, evaluator="coupled", init_std=0.7)
    rng, x, labels = _data(STACK, 2)
    params = model.init_params(rng)
    loss = Loss("bce", link="logit")
    _, grads = model.loss_and_grad(params, x, labels, loss)
    numeric = central_gradient(lambda p: model.loss_and_grad(p, x, labels, loss)[0], params)
    a = np.concatenate([g.ravel() for g in grads])
    n = np.concatenate([g.ravel() for g in numeric])
    assert np.linalg.norm(a - n) <= 1e-6 * np.linalg.norm(n)


def test_sparse_load_gives_the_dense_load_results(calibration):
    wirings = network_wiring(STACK)
    rng = np.random.default_rng(5)
    devices = [np.where(w.present, rng.uniform(1e-7, 5e-6, w.source.shape), 0.0)
               for w in wirings]
    dense = LayeredCoupledEvaluator(calibration, wirings, sparse_loads=False)
    sparse = LayeredCoupledEvaluator(calibration, wirings, sparse_loads=True)
    matrices = [row_column_matrix(w, g) for w, g in zip(wirings, devices)]
    load = sparse._load(matrices, 0)
    assert isinstance(load, SparseLoad) and load.width < load.p_n.shape[1]  # really sparse
    assert type(dense._load(matrices, 0)) is not SparseLoad
    x = rng.uniform(VSS, VDD, (5, STACK.n_inputs))
    ours, theirs = sparse.forward_devices(devices, x), dense.forward_devices(devices, x)
    for a, b in zip(ours.layers, theirs.layers):
        for name in ("column", "outn", "outp"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
    grad_output = rng.standard_normal(ours.output.shape)
    for a, b in zip(sparse.backward_devices(ours, grad_output),
                    dense.backward_devices(theirs, grad_output)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("grouped", [True, False])
def test_sparse_load_factor_equals_the_dense_one(grouped):
    rng = np.random.default_rng(7)
    k, m, batch = 12, 40, 3
    if grouped:  # 4 read sets shared by 3 columns each, shuffled (conv channels)
        reads = np.repeat(rng.random((4, m)) < 0.3, 3, axis=0)[rng.permutation(k)]
    else:  # every column its own set, of different sizes
        reads = rng.random((k, m)) < rng.uniform(0.1, 0.5, (k, 1))
    p_n = np.where(reads & (rng.random((k, m)) < 0.8), rng.uniform(1e-7, 5e-6, (k, m)), 0.0)
    p_p = np.where(reads, rng.uniform(1e-7, 5e-6, (k, m)), 0.0)
    args = (p_n, p_p, rng.normal(0, 1e-6, k), p_n.sum(axis=1) + p_p.sum(axis=1) + 1e-6)
    dense, sparse = Load(*args), SparseLoad(*args)
    assert (sparse.columns.shape[1] == 3) == grouped and sparse.width < m
    lin = Linearization(-rng.uniform(1e-6, 1e-4, (batch, m)), rng.normal(0, 1e-5, (batch, m)),
                        -rng.uniform(1e-6, 1e-4, (batch, m)), rng.normal(0, 1e-5, (batch, m)))
    want, got = dense.factor(lin), sparse.factor(lin)
    np.testing.assert_allclose(got.capacitance, want.capacitance, rtol=0,
                               atol=1e-13 * np.abs(want.capacitance).max())
    r = rng.standard_normal((batch, 2 * m))
    for transpose in (False, True):
        x = want.solve_stacked(r, transpose)
        np.testing.assert_allclose(got.solve_stacked(r, transpose), x, rtol=0,
                                   atol=1e-12 * np.abs(x).max())


def test_evaluator_choice_and_errors(calibration):
    with pytest.raises(ConfigError, match="inverter current"):
        CrossbarNetwork(phax_reference_calibration(), STACK, evaluator="coupled")
    with pytest.raises(ConfigError, match="'load-aware' evaluator"):
        CrossbarNetwork(calibration, STACK, evaluator="load-aware")
    evaluator = LayeredCoupledEvaluator(calibration, network_wiring(STACK))
    with pytest.raises(ConfigError, match="64 inputs"):
        evaluator.forward([np.ones(p.theta_shape) * 1e-6 for p in STACK.plans], np.zeros((2, 5)))


def test_small_cnn_trains_on_digits_with_the_coupled_evaluator(calibration):
    from memspice.datasets import features_to_voltages, load_digits
    from memspice.train.losses import accuracy
    from memspice.train.trainer import TrainConfig, train

    spec = NetworkSpec((1, 8, 8), (Conv2d(4, 3), AvgPool2d(2), Flatten(), Dense(10)))
    data = load_digits()
    x = features_to_voltages(data.features, calibration.rails.vdd, calibration.rails.vss)
    model = CrossbarNetwork(calibration, spec, evaluator="coupled", init_mean=-1.0)
    result = train(model, x[:400], data.labels[:400],
                   TrainConfig(epochs=2, lr=0.05, loss_link="logit", progress=False))
    acc = accuracy(model.predict(result.params, x[1400:]), data.labels[1400:])
    assert acc > 0.3, acc  # chance is 0.1; two short epochs


@pytest.fixture(scope="module")
def spice_calibration():
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin

    # A 10 mV current table (the default keeps 25 mV): this network's neurons sit in their
    # steep region, where the bicubic's interpolation error reaches ~0.1 mV at 25 mV steps.
    return calibrate(builtin(), InverterSizing(), current_step_v=0.005)


@pytest.mark.ngspice
def test_every_layer_matches_spice_node_voltages(spice_calibration):
    from dataclasses import replace

    from memspice.circuit.builders import PRECISE_OPTIONS, InverterSizing
    from memspice.circuit.wiring import column_node, output_node
    from memspice.sim import simulate
    from memspice.tech import builtin
    from memspice.train.conv_circuit import batch_deck
    from memspice.train.conv_io import TrainedCrossbarNetwork
    from memspice.train.mapping import theta_to_conductance

    cal = spice_calibration
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    model = CrossbarNetwork(cal, spec, evaluator="coupled")
    rng = np.random.default_rng(11)
    sigma = tuple(theta_to_conductance(rng.standard_normal(p.theta_shape), model.window)
                  for p in spec.plans)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (4, spec.n_inputs))
    network = TrainedCrossbarNetwork(spec, sigma, cal)
    deck = replace(batch_deck(network, builtin(), InverterSizing(), x), options=PRECISE_OPTIONS)
    plot = simulate(deck).plot(0)
    trace = model.forward(list(sigma), x)
    static = CrossbarNetwork(cal, spec).forward(list(sigma), x)
    for index, (state, plan) in enumerate(zip(trace.layers, spec.plans)):
        for name, node in (("column", lambda m: column_node(index, m)),
                           ("outn", lambda m: output_node(index, m, "n")),
                           ("outp", lambda m: output_node(index, m, "p"))):
            spice = np.stack([np.asarray(plot[node(m)]) for m in range(plan.n_columns)], axis=1)
            assert np.abs(getattr(state, name) - spice).max() <= 1e-5, (index, name)
    # the static model misses the load by far more than that
    spice_out = np.stack([np.asarray(plot[output_node(0, m, "p")]) for m in range(32)], axis=1)
    assert np.abs(static.layers[0].outp - spice_out).max() > 1e-3
