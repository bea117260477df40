"""The coupled conv evaluator solves large batches in chunks: each sample's answer is its own."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train import conv_coupled
from memspice.train.conv_model import CrossbarNetwork
from memspice.train.losses import Loss

from analytic_inverter import synthetic_calibration


@pytest.fixture(scope="module")
def calibration():
    return synthetic_calibration()


def test_chunked_solves_equal_one_batch(calibration, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), AvgPool2d(2), Flatten(), Dense(3)))
    model = CrossbarNetwork(calibration, spec, evaluator="coupled", init_mean=-1.0)
    rng = np.random.default_rng(3)
    params = model.init_params(rng)
    x = rng.uniform(-0.25, 0.25, (7, spec.n_inputs))
    labels = rng.integers(0, 3, 7)
    loss = Loss("bce", link="logit")
    whole = model.loss_and_grad(params, x, labels, loss)
    whole_out = model.predict(params, x)
    monkeypatch.setattr(conv_coupled, "_SOLVE_CHUNK", 3)
    chunked = model.loss_and_grad(params, x, labels, loss)
    np.testing.assert_allclose(model.predict(params, x), whole_out, rtol=0, atol=1e-12)
    assert abs(chunked[0] - whole[0]) < 1e-12
    for a, b in zip(chunked[1], whole[1]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())
