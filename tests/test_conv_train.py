"""A small CNN trains through the existing trainer, PHAX-constrained and as a float baseline."""

import numpy as np
import pytest

from memspice.datasets import features_to_voltages, load_digits
from memspice.fit.calibration import phax_reference_calibration
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train.conv_io import TrainedCrossbarNetwork, load_layered_network, save_layered_network
from memspice.train.conv_model import CrossbarNetwork, TanhConvNet
from memspice.train.losses import accuracy
from memspice.train.mapping import theta_to_conductance
from memspice.train.trainer import TrainConfig, train

SPEC = NetworkSpec((1, 8, 8), (Conv2d(4, 3), AvgPool2d(2), Flatten(), Dense(10)))


@pytest.fixture(scope="module")
def digits():
    cal = phax_reference_calibration()
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)
    return cal, x[:1400], data.labels[:1400], x[1400:], data.labels[1400:]


def test_phax_cnn_and_float_baseline_learn_digits(digits, tmp_path):
    cal, x, y, x_test, y_test = digits
    phax = CrossbarNetwork(cal, SPEC, init_mean=-1.0)
    config = TrainConfig(epochs=5, lr=0.05, loss_link="logit", progress=False)
    result = train(phax, x, y, config)
    phax_acc = accuracy(phax.predict(result.params, x_test), y_test)
    baseline = TanhConvNet(SPEC, cal.rails.vss, cal.rails.vdd)
    float_result = train(baseline, x, y, TrainConfig(epochs=5, lr=0.01, loss_link="logit",
                                                     progress=False))
    float_acc = accuracy(baseline.predict(float_result.params, x_test), y_test)
    assert phax_acc > 0.8 and float_acc > 0.8, (phax_acc, float_acc)
    # the trained network survives a round trip through its file
    g = tuple(theta_to_conductance(t, phax.window) for t in result.params)
    save_layered_network(TrainedCrossbarNetwork(SPEC, g, cal), tmp_path)
    loaded = load_layered_network(tmp_path, cal)
    np.testing.assert_array_equal(loaded.predict(x_test), phax.predict(result.params, x_test))
