"""The layer description: shapes, plans, TOML parsing, errors naming the layer, size check."""

import sys

import numpy as np
import pytest

from memspice.errors import ConfigError
from memspice.network import (
    AvgPool2d,
    Conv2d,
    CrossbarMask,
    Dense,
    Flatten,
    NetworkError,
    NetworkSpec,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LENET_LIKE = (Conv2d(4, 3), AvgPool2d(2), Conv2d(8, 3), AvgPool2d(2), Flatten(), Dense(10))


def test_shapes_and_plans_of_a_cnn():
    spec = NetworkSpec((1, 14, 14), LENET_LIKE)
    assert spec.shapes == ((1, 14, 14), (4, 12, 12), (4, 6, 6), (8, 4, 4), (8, 2, 2), (32,),
                           (10,))
    first, second, head = spec.plans
    assert (first.n_columns, first.devices_per_column, first.theta_shape) == (576, 20, (4, 20))
    # 2(k²·C_in + 1) devices per column; the folded 2×2 pool puts 4 devices on every tap.
    assert second.taps == 36 and second.fold == 4
    assert second.devices_per_column == 2 * 36 * 4 + 2
    assert second.theta_shape == (8, 74) and second.n_columns == 8 * 4 * 4
    assert head.source_shape == (8, 4, 4) and head.pooled_shape == (8, 2, 2)
    assert head.theta_shape == (10, 2 * 32 + 2) and head.devices_per_column == 2 * 32 * 4 + 2
    assert spec.topology is None and not spec.is_dense
    est = spec.estimate(batch_size=64)
    assert est.devices == sum(p.n_devices for p in spec.plans) == 576 * 20 + 128 * 290 + 10 * 258
    assert est.columns == 576 + 128 + 10


def test_dense_special_case():
    spec = NetworkSpec.dense((64, 32, 10))
    assert spec.is_dense and spec.topology == (64, 32, 10)
    assert [p.theta_shape for p in spec.plans] == [(32, 130), (10, 66)]
    assert spec.estimate().devices == 32 * 130 + 10 * 66


def test_padding_and_stride():
    spec = NetworkSpec((2, 7, 7), (Conv2d(3, 3, stride=2, padding=1), Flatten(), Dense(2)))
    assert spec.shapes[1] == (3, 4, 4)
    assert spec.plans[0].taps == 18


TOML = """
[network]
layers = [
  {kind = "conv2d", out_channels = 4, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "conv2d", out_channels = 8, kernel = 3},
  {kind = "avgpool2d", size = 2},
  {kind = "flatten"},
  {kind = "dense", units = 10},
]
"""


def test_toml_round_trip():
    table = tomllib.loads(TOML)["network"]
    spec = NetworkSpec.from_config(table, input_shape=(1, 14, 14))
    assert spec == NetworkSpec((1, 14, 14), LENET_LIKE)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    with_shape = dict(table, input_shape=[1, 14, 14])
    assert NetworkSpec.from_config(with_shape) == spec


@pytest.mark.parametrize("table, message", [
    ({"layers": [{"kind": "dense", "units": 3}], "inputs": 3}, "unknown key network.inputs"),
    ({"layers": [{"kind": "conv2d", "out_channels": 2, "kernal": 3}]},
     r"network.layers\[0\] \(conv2d\): unknown key 'kernal'"),
    ({"layers": [{"kind": "conv3d"}]}, r"network.layers\[0\]: kind must be one of"),
    ({"layers": [{"kind": "conv2d", "out_channels": 2}]},
     r"network.layers\[0\] \(conv2d\): missing key 'kernel'"),
    ({"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": 3, "stride": 0}]},
     r"network.layers\[0\] \(conv2d\): stride must be a positive integer, got 0"),
    ({"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": 3, "stride": 1.5}]},
     r"stride must be a positive integer, got 1.5"),
    ({"layers": [{"kind": "dense", "units": True}]}, "units must be a positive integer"),
    ({"layers": []}, "non-empty list"),
    ({"layers": [{"kind": "dense", "units": 3}], "input_shape": [1, 8, 9]},
     r"does not match the data's \[1, 8, 8\]"),
])
def test_toml_errors(table, message):
    with pytest.raises(NetworkError, match=message):
        NetworkSpec.from_config(table, input_shape=(1, 8, 8))


@pytest.mark.parametrize("layers, message", [
    ((Conv2d(2, 9), Flatten(), Dense(3)),
     r"network layer 0 \(conv2d\): kernel 9x9 is larger than its padded input 8x8"),
    ((Conv2d(2, 3), Conv2d(2, 3, in_channels=3), Flatten(), Dense(3)),
     r"network layer 1 \(conv2d\): expects 3 input channels but the layer before gives 2"),
    ((Conv2d(2, 3), Dense(3)),
     r"network layer 1 \(dense\): needs a vector input .* put a flatten layer before it"),
    ((Conv2d(2, 3), AvgPool2d(4), Flatten(), Dense(3)),
     r"network layer 1 \(avgpool2d\): window 4 with stride 4 does not fit a 6x6 input"),
    ((Conv2d(2, 3), Flatten(), AvgPool2d(2), Dense(3)),
     r"network layer 2 \(avgpool2d\): needs a \(C, H, W\) feature map"),
    ((Conv2d(2, 3), Flatten(), Dense(3), Conv2d(1, 1)),
     r"network layer 3 \(conv2d\): needs a \(C, H, W\) feature map"),
    ((Conv2d(2, 3), AvgPool2d(2), Flatten()), r"network layer 1 \(avgpool2d\): .*no dense or conv2d"),
    ((Conv2d(2, 3),), "output must be a vector"),
    ((Flatten(),), "at least one dense or conv2d layer"),
])
def test_bad_networks_name_the_layer(layers, message):
    with pytest.raises(NetworkError, match=message):
        NetworkSpec((1, 8, 8), layers)


def test_bad_layer_parameters():
    for make, message in [(lambda: Conv2d(2, 3, stride=0), "conv2d: stride must be a positive"),
                          (lambda: Conv2d(2, 3, padding=-1), "padding must be an integer >= 0"),
                          (lambda: AvgPool2d(0), "avgpool2d: size"),
                          (lambda: Dense(2.0), "dense: units")]:
        with pytest.raises(NetworkError, match=message):
            make()
    assert issubclass(NetworkError, ConfigError)


def test_too_large_network_is_refused_with_its_estimate():
    spec = NetworkSpec((3, 224, 224), (Conv2d(64, 3, padding=1), Conv2d(64, 3, padding=1),
                                       Flatten(), Dense(10)))
    with pytest.raises(NetworkError, match=r"network too large: [\d,]+ devices in [\d,]+ "
                                           r"columns, ≈ [\d.]+ GB for a batch of 64"):
        spec.check_size(batch_size=64)
    small = NetworkSpec((1, 14, 14), LENET_LIKE).check_size()
    assert small.peak_bytes < 2**30


def test_masks_are_checked_against_the_plans():
    spec = NetworkSpec((1, 6, 6), (Conv2d(2, 3), Flatten(), Dense(3)))
    good = CrossbarMask(theta=np.ones((2, 20), dtype=bool))
    assert spec.with_masks((good, None)).masks[0] == good
    with pytest.raises(NetworkError, match=r"θ mask has shape \(2, 21\), expected \(2, 20\)"):
        spec.with_masks((CrossbarMask(theta=np.ones((2, 21), dtype=bool)), None))
    empty_row = np.ones((2, 20), dtype=bool)
    empty_row[1] = False
    with pytest.raises(NetworkError, match="leaves a column with no device"):
        spec.with_masks((CrossbarMask(theta=empty_row), None))
    with pytest.raises(NetworkError, match="3 masks for 2 crossbar layers"):
        spec.with_masks((good, None, None))
    with pytest.raises(NetworkError, match="boolean"):
        CrossbarMask(theta=np.ones((2, 20)))


def test_models_and_wiring_refuse_a_too_large_network_before_allocating():
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.network import network_wiring
    from memspice.train.conv_model import CrossbarNetwork, TanhConvNet

    huge = NetworkSpec((3, 512, 512), (Conv2d(256, 5, padding=2), Flatten(), Dense(10)))
    for build in (lambda: CrossbarNetwork(phax_reference_calibration(), huge),
                  lambda: TanhConvNet(huge),
                  lambda: network_wiring(huge)):
        with pytest.raises(NetworkError, match="network too large"):
            build()


def test_summary_lists_every_layer_and_the_totals():
    text = NetworkSpec((1, 14, 14), LENET_LIKE).summary().splitlines()
    assert len(text) == 2 + len(LENET_LIKE) + 1
    assert text[2].split() == ["0", "conv2d", "4x12x12", "576", "20", "11,520", "80"]
    assert "folded" in text[3]
    assert text[-1] == "total: 51,220 devices, 714 columns, 1,332 trainable θ"
