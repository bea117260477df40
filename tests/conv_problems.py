"""Small conv problems shared by tests: a digits conv pruning problem and a tiny CNN file."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from memspice.datasets import features_to_voltages, load_digits
from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from memspice.train.trainer import TrainConfig


class ConvProblem(NamedTuple):
    spec: NetworkSpec
    model: object
    params: list
    x: np.ndarray
    labels: np.ndarray
    recipe: TrainConfig


def digits_conv_problem(samples: int = 160) -> ConvProblem:
    """``conv 3 k3 → pool 2 → dense 10`` on 8×8 digits, built-in card, load-aware, θ mean −2,
    seeded parameters, and a one-epoch softmax cross-entropy recipe."""
    from memspice.characterize.calibrate import calibrate
    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin
    from memspice.train.conv_model import CrossbarNetwork

    cal = calibrate(builtin(), InverterSizing())
    data = load_digits()
    x = features_to_voltages(data.features, cal.rails.vdd, cal.rails.vss)[:samples]
    spec = NetworkSpec((1, 8, 8), (Conv2d(3, 3), AvgPool2d(2), Flatten(), Dense(10)))
    model = CrossbarNetwork(cal, spec, evaluator="load-aware", init_mean=-2.0)
    params = model.init_params(np.random.default_rng(0))
    recipe = TrainConfig(epochs=1, lr=0.02, batch_size=32, loss="softmax_ce", loss_link="logit",
                         progress=False)
    return ConvProblem(spec, model, params, x, data.labels[:samples], recipe)


#: A tiny CNN (conv 2 k3 → pool 2 → dense 10) as a ``[network]`` TOML file, for the
#: command-line fault tests.
TINY_CNN_TOML = """\
[network]
layers = [
  {kind = "conv2d", out_channels = 2, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "flatten"},
  {kind = "dense", units = 10},
]
"""
