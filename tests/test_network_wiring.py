"""Per-device wiring: dense = today's wiring.py, conv replicas, folded pooling, masks, loads."""

import numpy as np
import pytest

from memspice.circuit.wiring import layer_shapes, row_nodes
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import (
    AvgPool2d,
    Conv2d,
    CrossbarMask,
    Dense,
    Flatten,
    NetworkSpec,
    crossbar_wiring,
    fan_out,
    network_wiring,
)
from memspice.train.conv_model import CrossbarNetwork

VDD, VSS = 0.25, -0.25


@pytest.mark.parametrize("topology", [(4, 3), (64, 32, 10), (5, 7, 6, 2)])
def test_dense_spec_is_exactly_todays_wiring(topology):
    spec = NetworkSpec.dense(topology)
    for layer, (shape, wiring) in enumerate(zip(layer_shapes(topology), network_wiring(spec))):
        n, m = shape.n_inputs, shape.n_outputs
        assert spec.plans[layer].theta_shape == shape.matrix_shape
        assert wiring.source.shape == shape.matrix_shape
        # device k of every column is fed by row k in wiring.py's order ...
        assert np.array_equal(wiring.source, np.tile(np.arange(shape.n_rows), (m, 1)))
        nodes = row_nodes(layer, n)
        assert len(nodes) == shape.n_rows and nodes[2 * n :] == ("vdd", "vss")
        # ... and carries matrix entry (j, k): the θ matrix *is* the conductance matrix.
        assert np.array_equal(wiring.theta_index,
                              np.arange(m * shape.n_rows).reshape(shape.matrix_shape))
        assert np.all(wiring.scale == 1.0) and np.all(wiring.present)
        g = np.random.default_rng(layer).uniform(1e-7, 8e-6, shape.matrix_shape)
        assert np.array_equal(wiring.conductances(g), g)


def test_conv_columns_replicate_the_kernel_per_position():
    spec = NetworkSpec((2, 5, 5), (Conv2d(3, 3, padding=1), Flatten(), Dense(2)))
    wiring = network_wiring(spec)[0]
    plan = spec.plans[0]
    assert wiring.source.shape == (3 * 25, 2 * (9 * 2 + 1))
    # every column of channel c carries θ row c, in the same order
    per_channel = wiring.theta_index.reshape(3, 25, -1)
    assert np.all(per_channel == per_channel[:, :1])
    assert np.array_equal(per_channel[1, 0], plan.theta_shape[1] + np.arange(plan.theta_shape[1]))
    # column (c=0, row 0, col 0): taps of channel 0 rows -1..1, cols -1..1 (padding → 0 V)
    src = wiring.source[0, :18]
    expected = [wiring.zero_row] * 4 + [0, 1] + [wiring.zero_row] + [5, 6]
    assert list(src[:9]) == expected
    assert list(src[9:18]) == [wiring.zero_row] * 4 + [25, 26, wiring.zero_row, 30, 31]
    n_minus = wiring.source[0, 18:36]
    assert list(n_minus[4:6]) == [50, 51]  # in rows: S + source
    assert list(wiring.source[0, -2:]) == [100, 101]


def _pool_reference(x, size, step):
    b, c, h, w = x.shape
    ho, wo = (h - size) // step + 1, (w - size) // step + 1
    out = np.zeros((b, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * step : i * step + size, j * step : j * step + size].mean(
                axis=(2, 3))
    return out


def _conv_columns_reference(pos, neg, sigma, kernel, stride, padding):
    """Unfolded conv with bias rows, position by position (the obvious loops)."""
    b, c, h, w = pos.shape
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    pos, neg = np.pad(pos, pad), np.pad(neg, pad)
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    weights = sigma / sigma.sum(axis=1, keepdims=True)
    k = c * kernel * kernel
    out = np.zeros((b, sigma.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = (slice(None), slice(None), slice(i * stride, i * stride + kernel),
                   slice(j * stride, j * stride + kernel))
            rows = np.concatenate([pos[win].reshape(b, k), neg[win].reshape(b, k),
                                   np.full((b, 1), VDD), np.full((b, 1), VSS)], axis=1)
            out[:, :, i, j] = rows @ weights.T
    return out.reshape(b, -1)


@pytest.mark.parametrize("pools, conv", [
    ((AvgPool2d(2),), Conv2d(3, 3)),
    ((AvgPool2d(2),), Conv2d(2, 2, stride=2, padding=1)),
    ((AvgPool2d(3, stride=1), AvgPool2d(2)), Conv2d(2, 2)),
])
def test_folded_pool_equals_pool_then_conv(pools, conv):
    source_shape = (2, 8, 8)
    spec = NetworkSpec(source_shape, (*pools, conv, Flatten(), Dense(2)))
    plan = spec.plans[0]
    wiring = crossbar_wiring(plan)
    rng = np.random.default_rng(7)
    pos = rng.uniform(VSS, VDD, (3, *source_shape))
    neg = rng.uniform(VSS, VDD, (3, *source_shape))  # independent: outn is not −outp
    sigma = rng.uniform(1e-7, 8e-6, plan.theta_shape)
    folded = wiring.column_voltages(wiring.conductances(sigma), pos.reshape(3, -1),
                                    neg.reshape(3, -1), VDD, VSS)
    p, n = pos, neg
    for pool in pools:
        p, n = _pool_reference(p, pool.size, pool.step), _pool_reference(n, pool.size, pool.step)
    reference = _conv_columns_reference(p, n, sigma, conv.kernel, conv.stride, conv.padding)
    assert np.abs(folded - reference).max() <= 1e-12
    # Σσ unchanged by folding: the column's devices add up to the θ row's σ.
    g = wiring.conductances(sigma).reshape(plan.channels, plan.positions, -1)
    assert np.allclose(g.sum(axis=2), sigma.sum(axis=1)[:, None], rtol=1e-14)


def test_folded_pool_equals_pool_then_dense():
    spec = NetworkSpec((2, 4, 4), (AvgPool2d(2), Flatten(), Dense(3)))
    plan = spec.plans[0]
    wiring = crossbar_wiring(plan)
    assert wiring.source.shape == (3, 2 * 8 * 4 + 2)
    rng = np.random.default_rng(8)
    pos, neg = rng.uniform(VSS, VDD, (2, 2, 4, 4)), rng.uniform(VSS, VDD, (2, 2, 4, 4))
    sigma = rng.uniform(1e-7, 8e-6, plan.theta_shape)
    folded = wiring.column_voltages(wiring.conductances(sigma), pos.reshape(2, -1),
                                    neg.reshape(2, -1), VDD, VSS)
    p, n = _pool_reference(pos, 2, 2).reshape(2, -1), _pool_reference(neg, 2, 2).reshape(2, -1)
    rows = np.concatenate([p, n, np.full((2, 1), VDD), np.full((2, 1), VSS)], axis=1)
    reference = rows @ (sigma / sigma.sum(axis=1, keepdims=True)).T
    assert np.abs(folded - reference).max() <= 1e-12


def test_model_and_folded_circuit_agree_through_a_whole_stack():
    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(3, 3),
                                   AvgPool2d(2, stride=1), Flatten(), Dense(3)))
    model = CrossbarNetwork(phax_reference_calibration(), spec, init_std=0.7)
    rng = np.random.default_rng(9)
    g, _ = model.conductances(model.init_params(rng))
    x = rng.uniform(VSS, VDD, (5, 64))
    trace = model.forward(g, x)
    for state, device in zip(trace.layers, model.device_columns(g, x)):
        assert np.abs(state.column - device).max() <= 1e-12


def test_masked_devices_are_absent_not_g_min():
    spec = NetworkSpec((1, 4, 4), (Conv2d(2, 3), Flatten(), Dense(2)))
    plan = spec.plans[0]
    theta_mask = np.ones(plan.theta_shape, dtype=bool)
    theta_mask[0, [0, 9]] = False  # tap 0 of kernel 0, both polarities
    device_mask = np.ones((plan.n_columns, plan.devices_per_column), dtype=bool)
    device_mask[5, -1] = False  # one column's bias_n device
    wiring = crossbar_wiring(plan, CrossbarMask(theta_mask, device_mask))
    rng = np.random.default_rng(10)
    sigma = rng.uniform(1e-7, 8e-6, plan.theta_shape)
    g = wiring.conductances(sigma)
    assert np.all(g[:4, 0] == 0) and np.all(g[:4, 9] == 0) and np.all(g[4:, 0] > 0)
    assert g[5, -1] == 0 and np.count_nonzero(g == 0) == 4 * 2 + 1
    pos = rng.uniform(VSS, VDD, (1, 16))
    v = wiring.column_voltages(g, pos, -pos, VDD, VSS)
    # column 0 by hand over its present devices only
    keep = g[0] > 0
    rows = wiring.row_source_voltages(pos, -pos, VDD, VSS)[0, wiring.source[0]]
    assert v[0, 0] == pytest.approx((g[0, keep] * rows[keep]).sum() / g[0, keep].sum(), abs=1e-15)


def test_fan_out_is_each_neurons_load_in_devices():
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), Conv2d(3, 3), Flatten(), Dense(2)))
    second = network_wiring(spec)[1]
    load = fan_out(second).reshape(2, 4, 4)
    # a neuron feeds every window covering it, once per output channel: a corner one 1·3,
    # a central one 2·2·3 on this small map (k²·C_out far from the edges of a larger one)
    assert load[0, 0, 0] == 3 and load[0, 1, 1] == 4 * 3 and load.max() == 2 * 2 * 3
    dense = network_wiring(NetworkSpec.dense((4, 5, 3)))[1]
    assert np.all(fan_out(dense) == 3)


def test_row_column_conductance_is_the_layers_linear_part():
    from memspice.network import row_column_conductance

    spec = NetworkSpec((2, 6, 6), (Conv2d(2, 3, padding=1), AvgPool2d(2), Conv2d(2, 2),
                                   Flatten(), Dense(2)))
    rng = np.random.default_rng(11)
    for plan, wiring in zip(spec.plans, network_wiring(spec)):
        g = wiring.conductances(rng.uniform(1e-7, 8e-6, plan.theta_shape))
        c = row_column_conductance(wiring, g)
        assert c.shape == (2 * plan.n_sources + 3, plan.n_columns)
        pos = rng.uniform(VSS, VDD, (3, plan.n_sources))
        neg = rng.uniform(VSS, VDD, (3, plan.n_sources))
        rows = wiring.row_source_voltages(pos, neg, VDD, VSS)
        sparse = (c.T @ rows.T).T / np.asarray(c.sum(axis=0))
        assert np.abs(sparse - wiring.column_voltages(g, pos, neg, VDD, VSS)).max() <= 1e-15
        # a source reaches exactly the columns fan_out counts devices for
        reached = np.diff(c.indptr)[: plan.n_sources]
        assert np.all((reached > 0) == (fan_out(wiring) > 0))


@pytest.mark.parametrize("layers", [
    (Conv2d(2, 3, padding=1), Flatten()),
    (AvgPool2d(2), Conv2d(2, 2, padding=1), Flatten()),
])
def test_per_device_gradient_reduces_to_the_shared_theta_gradient(layers):
    from memspice.network import theta_gradient

    spec = NetworkSpec((2, 6, 6), layers)
    model = CrossbarNetwork(phax_reference_calibration(), spec)
    wiring = model.wiring()[0]
    rng = np.random.default_rng(12)
    sigma = rng.uniform(1e-7, 8e-6, spec.plans[0].theta_shape)
    x = rng.uniform(VSS, VDD, (3, spec.n_inputs))
    trace = model.forward([sigma], x)
    a = rng.standard_normal(trace.layers[0].column.shape)  # L = Σ a·V_column
    shared = model.backward(trace, np.zeros_like(trace.output), grad_column=a)[0]
    # per device: ∂L/∂G_md = Σ_b a_bm (R_bmd − V_bm) / S_m
    g = wiring.conductances(sigma)
    rows = wiring.row_source_voltages(x, -x, VDD, VSS)[:, wiring.source]
    v = wiring.column_voltages(g, x, -x, VDD, VSS)
    per_device = np.einsum("bm,bmd->md", a, rows - v[:, :, None]) / g.sum(axis=1)[:, None]
    np.testing.assert_allclose(theta_gradient(wiring, per_device), shared, rtol=1e-10,
                               atol=1e-12 * np.abs(shared).max())
