"""Dataset loaders, the IDX parser and their errors."""

import gzip

import numpy as np
import pytest

from memspice.datasets import (
    average_pool,
    features_to_voltages,
    load_breast_cancer,
    load_dataset,
    load_digits,
    load_mnist,
    read_idx,
    train_test_split,
)
from memspice.errors import ConfigError, DataError


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(">u1").tobytes()


def _write_mnist(directory, n=6, gz=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    for stem, arr in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_is_parsed_pooled_and_scaled(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    assert data.features.shape == (6, 196)
    expected = images[:, :2, :2].astype(float).mean(axis=(1, 2)) / 255
    np.testing.assert_allclose(data.features[:, 0], expected)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(read_idx(tmp_path / ("t10k-images-idx3-ubyte" +
                                                        (".gz" if gz else ""))), images)


def test_idx_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(DataError, match="no MNIST IDX files"):
        load_mnist(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 3)))[:-2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(short)
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")


def test_mismatched_mnist_files_are_a_data_error(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((3, 28, 28))))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4)))
    with pytest.raises(DataError, match="disagree"):
        load_mnist(tmp_path)


def test_sklearn_sets_are_scaled_to_unit_range():
    for data in (load_digits(), load_breast_cancer(), load_dataset("iris")):
        assert data.features.min() >= 0 and data.features.max() <= 1
        assert data.features.max() == 1
    assert load_digits().features.shape == (1797, 64)


def test_split_and_voltage_mapping():
    data = load_digits()
    train, test = train_test_split(data, 0.2, seed=1)
    assert len(train.labels) + len(test.labels) == 1797
    assert abs(len(test.labels) - 360) <= 10
    again, _ = train_test_split(data, 0.2, seed=1)
    np.testing.assert_array_equal(train.labels, again.labels)
    v = features_to_voltages(np.array([[0.0, 0.5, 1.0]]), 0.25, -0.25)
    np.testing.assert_allclose(v, [[-0.25, 0.0, 0.25]])
    with pytest.raises(ConfigError):
        load_dataset("cifar")
    with pytest.raises(ConfigError):
        average_pool(np.zeros((1, 5, 5)), 2)


def test_the_benchmark_split_is_mnists_first_8000_and_last_2000_else_a_stratified_split() -> None:
    from memspice.datasets import Dataset, benchmark_split

    labels = np.arange(10_000) % 10
    mnist = Dataset("mnist", np.arange(10_000, dtype=float)[:, None] / 10_000, labels, 10)  # features in [0, 1]
    train, test = benchmark_split(mnist)
    assert np.array_equal(train.features[:, 0], np.arange(8000) / 10_000)
    assert np.array_equal(test.features[:, 0], np.arange(8000, 10_000) / 10_000)
    small = Dataset("mnist", mnist.features[:500], labels[:500], 10)  # not the 10,000-image set
    train, test = benchmark_split(small, 0.2, 0)
    assert len(test.labels) == 100 and sorted(np.bincount(test.labels)) == [10] * 10
