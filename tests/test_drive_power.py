"""The input drivers' static power as a training term: closed form, gradient, SPICE."""

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.train.drive_power import input_drive_power, input_drive_power_and_grad
from memspice.train.losses import Loss
from memspice.train.mapping import ConductanceWindow, theta_to_conductance
from memspice.train.model import PhaxNetwork

from gradcheck import assert_full_gradient, central_gradient


def _layer(rng, n_inputs=5, n_columns=3):
    window = ConductanceWindow(1.2e-7, 8e-6)
    g = theta_to_conductance(rng.normal(-1.0, 1.5, (n_columns, 2 * n_inputs + 2)), window)
    x = rng.uniform(-0.25, 0.25, (4, n_inputs))
    return g, x


def test_power_is_what_each_driver_delivers_into_its_row():
    rng = np.random.default_rng(0)
    g, x = _layer(rng)
    vdd, vss = 0.25, -0.25
    want = np.zeros(len(x))
    for b, sample in enumerate(x):
        rows = np.concatenate([sample, -sample, [vdd, vss]])
        v_col = g @ rows / g.sum(axis=1)  # the column draws no current: KCL at the gate
        for r in range(2 * x.shape[1]):  # the input drivers only, not the rails' bias rows
            want[b] += rows[r] * np.sum(g[:, r] * (rows[r] - v_col))
    np.testing.assert_allclose(input_drive_power(g, x, vdd, vss), want, rtol=1e-12)
    assert np.all(want > 0)


def test_power_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    g, x = _layer(rng)
    _, grad = input_drive_power_and_grad(g, x, 0.25, -0.25)
    numeric = central_gradient(lambda p: float(np.mean(input_drive_power(p[0], x, 0.25, -0.25))), [g.copy()],
                               step=1e-10)
    np.testing.assert_allclose(grad, numeric[0], rtol=1e-6, atol=1e-9 * np.abs(numeric[0]).max())


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ConfigError, match="do not fit"):
        input_drive_power(np.ones((3, 10)), np.zeros((2, 5)), 0.25, -0.25)


@pytest.mark.parametrize("link", ["output", "logit"])
def test_network_loss_adds_the_weighted_power_and_its_exact_gradient(link):
    cal = phax_reference_calibration()
    weight = 2e5  # 1/W: the 2 µW of this small layer weigh about a third of the loss
    plain = PhaxNetwork(cal, (4, 3, 2), init_std=0.7)
    model = PhaxNetwork(cal, (4, 3, 2), init_std=0.7, drive_power_weight_per_w=weight)
    rng = np.random.default_rng(2)
    params = model.init_params(rng)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (5, 4))
    labels = rng.integers(0, 2, 5)
    loss = Loss("bce", link=link)
    base, base_grads = plain.loss_and_grad(params, x, labels, loss)
    value, grads = model.loss_and_grad(params, x, labels, loss)
    g0 = theta_to_conductance(params[0], model.window)
    power = float(np.mean(input_drive_power(g0, x, cal.rails.vdd, cal.rails.vss)))
    assert value == pytest.approx(base + weight * power, rel=1e-12)
    assert weight * power > 0.01 * base  # the term is not negligible in this check
    np.testing.assert_array_equal(grads[1], base_grads[1])  # only the first crossbar's drivers
    assert_full_gradient(model, params, x, labels, loss)
    # a step against the power term alone lowers the drivers' power
    lowered = [params[0] - 0.5 * np.sign(grads[0] - base_grads[0]), params[1]]
    g_low = theta_to_conductance(lowered[0], model.window)
    assert np.mean(input_drive_power(g_low, x, cal.rails.vdd, cal.rails.vss)) < power


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match="drive_power_weight_per_w"):
        PhaxNetwork(phax_reference_calibration(), (4, 2), drive_power_weight_per_w=-1.0)


@pytest.mark.ngspice
def test_power_equals_the_drivers_power_spice_measures(tmp_path):
    from memspice.tech import builtin
    from memspice.train.network_io import TrainedNetwork
    from memspice.validate.api import RunSettings, validate_network

    cal = phax_reference_calibration()
    rng = np.random.default_rng(3)
    window = ConductanceWindow(cal.device.g_min_siemens, cal.device.g_max_siemens)
    g = [theta_to_conductance(rng.normal(-1.0, 1.0, shape), window) for shape in ((4, 14), (3, 10))]
    network = TrainedNetwork((6, 4, 3), g, cal)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (6, 6))
    report = validate_network(network, builtin(), x, rng.integers(0, 3, 6), tmp_path / "val", write_files=False,
                              settings=RunSettings(batch_size=6, workers=1))
    order = np.argsort(report.sample_index)
    np.testing.assert_allclose(report.input_power_w[order], input_drive_power(g[0], x, cal.rails.vdd, cal.rails.vss),
                               rtol=1e-4)
