"""Per-device draws for layered networks: every physical device programmed on its own."""

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, CrossbarMask, Dense, Flatten, NetworkSpec
from memspice.network.wiring import network_wiring
from memspice.train.conv_io import TrainedCrossbarNetwork
from memspice.train.hardware import FaultMap
from memspice.train.layered_devices import (
    DeviceSettings,
    device_shapes,
    draw_devices,
    seeded_device_faults,
)
from memspice.train.mapping import theta_to_conductance
from memspice.validate.nonideal import NonIdeality, apply_device_nonidealities

SPEC = NetworkSpec((1, 10, 10), (Conv2d(4, 3), AvgPool2d(2), Flatten(), Dense(5)))


def _network(spec=SPEC, seed=0, theta_scale=1.0):
    cal = phax_reference_calibration()
    rng = np.random.default_rng(seed)
    net = TrainedCrossbarNetwork(spec, tuple(np.ones(p.theta_shape) for p in spec.plans), cal)
    g = tuple(theta_to_conductance(theta_scale * rng.standard_normal(p.theta_shape), net.window)
              for p in spec.plans)
    return TrainedCrossbarNetwork(spec, g, cal)


def test_variation_and_faults_have_the_drawn_statistics():
    # θ near 0: σ mid-window, so a 10 % lognormal spread is never clipped
    net = _network(theta_scale=0.01)
    target = net.device_conductances()
    draw = draw_devices(net, DeviceSettings(variation_sigma=0.1, seed=1))
    ratio = np.concatenate([np.log(g[t > 0] / t[t > 0]) for g, t in zip(draw.conductances, target)])
    assert ratio.size > 3000
    assert abs(ratio.mean()) < 4 * 0.1 / np.sqrt(ratio.size)
    assert abs(ratio.std() - 0.1) < 0.005
    assert draw.n_stuck == 0
    faulty = draw_devices(net, DeviceSettings(fault_rate=0.2, seed=2))
    present = sum(int(w.present.sum()) for w in network_wiring(net.spec))
    high = sum(int(h.sum()) for h in faulty.stuck_high)
    low = sum(int(lo.sum()) for lo in faulty.stuck_low)
    for count, rate in ((high, 0.1), (low, 0.1), (high + low, 0.2)):
        assert abs(count / present - rate) < 4 * np.sqrt(rate * (1 - rate) / present)
    # a stuck device sits exactly at the top or bottom of its own (scaled) window
    for wiring, g, h, lo in zip(network_wiring(net.spec), faulty.conductances,
                                faulty.stuck_high, faulty.stuck_low):
        np.testing.assert_array_equal(g[h], wiring.scale[h] * net.window.g_max_siemens)
        np.testing.assert_array_equal(g[lo], wiring.scale[lo] * net.window.g_min_siemens)


def test_kernel_replicas_and_folded_pool_devices_are_drawn_independently():
    net = _network()
    ideal = draw_devices(net, DeviceSettings())
    varied = draw_devices(net, DeviceSettings(variation_sigma=0.05, seed=3))
    layers = zip(network_wiring(net.spec), ideal.conductances, varied.conductances,
                 net.device_conductances())
    for wiring, g0, g, target in layers:
        # the ideal devices of one θ are equal (after scale); the drawn ones are not
        np.testing.assert_array_equal(g0, target)
        for t in np.unique(wiring.theta_index)[:20]:
            same = (wiring.theta_index == t) & wiring.present
            assert same.sum() > 1
            assert np.ptp(g0[same] / wiring.scale[same]) == 0
            assert len(np.unique(g[same])) == same.sum()
    # the dense layer reads a folded pool: its 4 devices per tap differ from each other
    dense = network_wiring(net.spec)[1]
    assert dense.plan.fold == 4
    first_tap = varied.conductances[1][0, :4]
    assert len(np.unique(first_tap)) == 4


def test_masked_devices_stay_absent_and_are_never_stuck():
    theta_mask = np.ones(SPEC.plans[0].theta_shape, dtype=bool)
    theta_mask[2, 3] = False
    device_mask = np.ones((SPEC.plans[1].n_columns, SPEC.plans[1].devices_per_column), dtype=bool)
    device_mask[1, 10:30] = False
    spec = SPEC.with_masks((CrossbarMask(theta=theta_mask), CrossbarMask(device=device_mask)))
    net = _network(spec)
    draw = draw_devices(net, DeviceSettings(levels=8, variation_sigma=0.2, fault_rate=0.5, seed=4))
    for wiring, g, h, lo in zip(network_wiring(spec), draw.conductances, draw.stuck_high,
                                draw.stuck_low):
        assert (~wiring.present).any()
        assert np.all(g[~wiring.present] == 0)
        assert np.all(g[wiring.present] > 0)
        assert not (h | lo)[~wiring.present].any()
    assert np.all(draw.conductances[1][1, 10:30] == 0)


def test_same_seed_same_draw_other_seed_other_draw():
    net = _network()
    settings = DeviceSettings(levels=8, variation_sigma=0.1, fault_rate=0.1, seed=5)
    a, b = draw_devices(net, settings), draw_devices(net, settings)
    c = draw_devices(net, DeviceSettings(levels=8, variation_sigma=0.1, fault_rate=0.1, seed=6))
    for ga, gb, gc, ha, hb in zip(a.conductances, b.conductances, c.conductances, a.stuck_high,
                                  b.stuck_high):
        np.testing.assert_array_equal(ga, gb)
        np.testing.assert_array_equal(ha, hb)
        assert not np.array_equal(ga, gc)


def test_levels_are_exact_and_a_differential_pair_gives_2n_minus_1_signed_levels():
    net = _network(theta_scale=3.0)
    draw = draw_devices(net, DeviceSettings(levels=8))
    w = net.window
    step = (w.g_max_siemens - w.g_min_siemens) / 7
    for wiring, g in zip(network_wiring(net.spec), draw.conductances):
        per_device = g[wiring.present] / wiring.scale[wiring.present]
        k = (per_device - w.g_min_siemens) / step
        np.testing.assert_allclose(k, np.round(k), atol=1e-9)
        assert set(np.round(k).astype(int)) <= set(range(8))
    # ip − in of one tap: at most 15 distinct signed differences, and they are on the grid
    g0 = draw.conductances[0]
    taps = SPEC.plans[0].taps
    diff = (g0[:, :taps] - g0[:, taps : 2 * taps]) / step
    np.testing.assert_allclose(diff, np.round(diff), atol=1e-9)
    assert set(np.round(diff).astype(int).ravel()) <= set(range(-7, 8))


def test_a_known_device_fault_map_is_applied_and_checked():
    net = _network()
    faults = seeded_device_faults(net, 0.3, seed=7)
    assert [m.shape for m in faults.stuck_high] == list(device_shapes(net))
    draw = draw_devices(net, DeviceSettings(variation_sigma=0.1, seed=8), faults)
    for known, got in zip(faults.stuck_high + faults.stuck_low, draw.stuck_high + draw.stuck_low):
        np.testing.assert_array_equal(known, got)
    wrong = FaultMap(tuple(m[:, :-1] for m in faults.stuck_high),
                     tuple(m[:, :-1] for m in faults.stuck_low))
    with pytest.raises(ConfigError, match="layer 0"):
        draw_devices(net, DeviceSettings(), wrong)


@pytest.mark.parametrize("kwargs", [{"levels": 1}, {"levels": -2}, {"variation_sigma": -0.1},
                                    {"fault_rate": 1.5}, {"variation_sigma": float("nan")}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        DeviceSettings(**kwargs)


def test_dense_validation_draw_is_unchanged_by_the_shared_helpers():
    # the dense draw, written out as it was before the helpers were shared
    rng = np.random.default_rng(9)
    g = [rng.uniform(1e-6, 7e-6, (4, 8)), rng.uniform(1e-6, 7e-6, (3, 10))]
    spec = NonIdeality(variation_sigma=0.2, fault_rate=0.3, seed=10)
    draw = apply_device_nonidealities(g, spec)
    ref = np.random.default_rng([10, 5])
    for gi, got, high in zip(g, draw.conductances, draw.stuck_high):
        want = np.clip(gi * np.exp(0.2 * ref.standard_normal(gi.shape)), spec.g_min_siemens,
                       spec.g_max_siemens)
        u = ref.random(gi.shape)
        want = np.where(u < 0.15, spec.g_max_siemens, np.where(u < 0.3, spec.g_min_siemens, want))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(high, u < 0.15)


@pytest.fixture(scope="module")
def spice_calibration():
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin

    # a 5 mV current table: the bicubic's interpolation error stays well below 10 µV
    return calibrate(builtin(), InverterSizing(), current_step_v=0.005)


@pytest.mark.ngspice
def test_model_with_drawn_devices_matches_spice(spice_calibration):
    from memspice.circuit.builders import InverterSizing
    from memspice.loop.layered_spice import simulate_devices
    from memspice.tech import builtin
    from memspice.train.layered_devices import device_trace

    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    cal = spice_calibration
    rng = np.random.default_rng(12)
    net = _network(spec, seed=12)
    net = TrainedCrossbarNetwork(spec, net.conductances, cal)
    draw = draw_devices(net, DeviceSettings(levels=8, variation_sigma=0.1, fault_rate=0.05, seed=13))
    assert draw.n_stuck > 0
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (5, spec.n_inputs))
    spice = simulate_devices(net, draw.conductances, builtin(), InverterSizing(), x, batch_size=3,
                             workers=1, columns=True, precise=True)
    model = device_trace(net, draw.conductances, x)
    ideal = device_trace(net, net.device_conductances(), x)
    for state, ideal_state, layer in zip(model.layers, ideal.layers, spice):
        for name in ("column", "outn", "outp"):
            assert np.abs(getattr(state, name) - getattr(layer, name)).max() <= 1e-5, name
        # the drawn devices move the circuit far more than the model's error
        assert np.abs(ideal_state.outp - layer.outp).max() > 1e-3
