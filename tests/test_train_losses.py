"""Loss links: logits against rescaled outputs, stability, a saturated output neuron, config."""

import numpy as np
import pytest

from memspice.datasets import features_to_voltages, load_iris
from memspice.errors import ConfigError
from memspice.fit.calibration import phax_reference_calibration
from memspice.train.losses import LOSS_NAMES, Loss
from memspice.train.model import PhaxNetwork, TanhMLP
from memspice.train.trainer import TrainConfig, split_validation, train

CAL = phax_reference_calibration()


def test_logit_bce_of_the_float_baseline_is_its_output_bce():
    """For tanh(a), p = (1 + tanh a)/2 = sigmoid(2a): both links are the same loss."""
    model = TanhMLP((4, 5, 3), -0.25, 0.25)
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    x = rng.uniform(-0.25, 0.25, (8, 4))
    labels = rng.integers(0, 3, 8)
    value_out, grads_out = model.loss_and_grad(params, x, labels, Loss("bce"))
    value_logit, grads_logit = model.loss_and_grad(params, x, labels, Loss("bce", link="logit"))
    assert value_logit == pytest.approx(value_out, rel=1e-12)
    for a, b in zip(grads_out, grads_logit):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(np.tanh(model.predict_logits(params, x) / 2),
                               model.predict(params, x), rtol=1e-12)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_logit_losses_stay_finite_and_wrong_saturated_outputs_keep_their_gradient(name):
    z = np.array([[1e3, -1e3, -1e3], [-1e3, -1e3, 1e3]])
    labels = np.array([0, 1])  # sample 0 right, sample 1 wrong (class 1 at −1000, class 2 at +1000)
    value, grad = Loss(name, link="logit").logit_value_and_grad(z, labels)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if name == "bce":
        assert np.all(grad[0] == 0)
        assert value == pytest.approx(2000 / 6)
        np.testing.assert_allclose(grad[1], [0, -1 / 6, 1 / 6])
    if name == "softmax_ce":
        assert value == pytest.approx(1000)
        np.testing.assert_allclose(grad[1], [0, -0.5, 0.5])


def test_temperature_divides_the_logits():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (5, 4))
    labels = rng.integers(0, 4, 5)
    for name in LOSS_NAMES:
        hot, grad_hot = Loss(name, link="logit", temperature=2.0).logit_value_and_grad(z, labels)
        plain, grad_plain = Loss(name, link="logit").logit_value_and_grad(z / 2, labels)
        assert hot == pytest.approx(plain, rel=1e-14)
        np.testing.assert_allclose(grad_hot, grad_plain / 2, rtol=1e-14)


def _dead_output_network():
    """One layer, 4 inputs → 3 outputs; output 2 connects almost only to the vss bias row."""
    model = PhaxNetwork(CAL, (4, 3))
    theta = np.random.default_rng(2).normal(-1.0, 0.5, (3, 10))
    theta[2] = -3.0
    theta[2, 9] = 3.0  # bias row bn = vss
    x = np.random.default_rng(3).uniform(CAL.rails.vss, CAL.rails.vdd, (12, 4))
    labels = np.arange(12) % 3
    return model, [theta], x, labels


def test_logit_link_keeps_a_saturated_output_neuron_trainable():
    """The failure the logit link fixes: BCE on outputs leaves a neuron pinned at vss for good."""
    model, params, x, labels = _dead_output_network()
    assert np.all(model.trace(params, x).layers[-1].column[:, 2] < -0.1)  # tanh(193·0.1) ≈ −1
    _, (grad_out,) = model.loss_and_grad(params, x, labels, Loss("bce"))
    _, (grad_logit,) = model.loss_and_grad(params, x, labels, Loss("bce", link="logit"))
    live = np.abs(grad_out[:2]).max()
    assert np.abs(grad_out[2]).max() < 1e-12 * live  # vanished: Adam's ε swallows it
    assert np.abs(grad_logit[2]).max() > 1e-2 * np.abs(grad_logit[:2]).max()
    assert grad_logit[2, 9] > 0  # descent lowers the vss bias device, raising the column


def test_loss_and_train_config_reject_bad_link_settings():
    with pytest.raises(ConfigError, match="unknown loss link 'probit'"):
        Loss("bce", link="probit")  # type: ignore[arg-type]
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ConfigError, match="temperature must be positive and finite"):
            Loss("bce", link="logit", temperature=bad)
        with pytest.raises(ConfigError, match="logit_temperature must be positive and finite"):
            TrainConfig(loss_link="logit", logit_temperature=bad)
    with pytest.raises(ConfigError, match="unknown loss link"):
        TrainConfig(loss_link="logits")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="logit_temperature needs loss_link='logit'"):
        TrainConfig(logit_temperature=2.0)


class _OutputsOnly:
    """A model without logits (like the closed-loop hybrids)."""

    output_range = (-1.0, 1.0)

    def init_params(self, rng):
        return [np.zeros(1)]

    def predict(self, params, x):
        return np.zeros((len(x), 2))

    def loss_and_grad(self, params, x, labels, loss, rng=None):
        return 0.0, [np.zeros(1)]


def test_logit_link_needs_a_model_with_logits():
    x, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(ConfigError, match="_OutputsOnly has no logits"):
        train(_OutputsOnly(), x, y, TrainConfig(loss_link="logit", progress=False))


def test_validation_loss_is_the_logit_loss():
    data = load_iris()
    x = features_to_voltages(data.features, CAL.rails.vdd, CAL.rails.vss)
    model = PhaxNetwork(CAL, (4, 6, 3), init_mean=-1.0)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.02, loss_link="logit",
                         logit_temperature=1.5, progress=False, val_fraction=0.2, seed=4)
    result = train(model, x, data.labels, config)
    _, val_idx = split_validation(len(x), 0.2, 4)
    expected = Loss("bce", link="logit", temperature=1.5).logit_value_and_grad(
        model.predict_logits(result.params, x[val_idx]), data.labels[val_idx])[0]
    assert result.history["val_loss"].iloc[result.best_epoch - 1] == pytest.approx(expected, rel=1e-12)
