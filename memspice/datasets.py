"""Datasets for training: scikit-learn digits (embedded), iris, breast cancer, and MNIST IDX.

Every loader returns features scaled to [0, 1]; :func:`features_to_voltages` maps them to
input voltages in [vss, vdd]. MNIST is parsed from standard IDX files (gzip or raw) with NumPy.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memspice.errors import ConfigError, DataError

DATASET_NAMES: tuple[str, ...] = ("digits", "iris", "breast_cancer", "mnist")

#: Largest IDX file read (uncompressed), in bytes: MNIST's largest is 47 MB, EMNIST's ~0.6 GB.
MAX_IDX_BYTES = 2**30

# IDX type codes (third magic byte) → big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True, slots=True)
class Dataset:
    """Features in [0, 1] and integer labels.

    Attributes:
        name: dataset name.
        features: ``(n, d)`` float64 in [0, 1].
        labels: ``(n,)`` int64 in ``[0, n_classes)``.
        n_classes: number of classes.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or len(self.features) != len(self.labels):
            raise DataError(
                f"dataset {self.name}: features {self.features.shape} do not match "
                f"labels {self.labels.shape}"
            )
        if len(self.labels) == 0:
            raise DataError(f"dataset {self.name} is empty")
        if not np.all(np.isfinite(self.features)):
            bad = int(np.count_nonzero(~np.isfinite(self.features).all(axis=1)))
            raise DataError(f"dataset {self.name}: {bad} samples have NaN or infinite features")
        if self.features.min() < -1e-9 or self.features.max() > 1 + 1e-9:
            raise DataError(f"dataset {self.name}: features span [{self.features.min():g}, "
                            f"{self.features.max():g}], outside [0, 1]")
        if self.labels.dtype.kind not in "iu":
            raise DataError(f"dataset {self.name}: labels must be integers, got {self.labels.dtype}")
        if self.labels.min() < 0 or self.labels.max() >= self.n_classes:
            raise DataError(f"dataset {self.name}: labels span [{self.labels.min()}, {self.labels.max()}], "
                            f"outside the {self.n_classes} classes [0, {self.n_classes - 1}]")

    @property
    def n_features(self) -> int:
        """Feature count ``d``."""
        return int(self.features.shape[1])

    def subset(self, index: np.ndarray | slice) -> Dataset:
        """The samples at ``index``."""
        return Dataset(self.name, self.features[index], self.labels[index], self.n_classes)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def load_digits() -> Dataset:
    """scikit-learn's 8×8 digits (1797 images, ships with scikit-learn), pixels / 16."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return Dataset("digits", bunch.data.astype(np.float64) / 16.0,
                   bunch.target.astype(np.int64), 10)


def load_iris() -> Dataset:
    """Iris (150 × 4), each feature min-max scaled over the dataset."""
    from sklearn.datasets import load_iris as sk_iris

    bunch = sk_iris()
    return Dataset("iris", _minmax(bunch.data.astype(np.float64)),
                   bunch.target.astype(np.int64), 3)


def load_breast_cancer() -> Dataset:
    """Wisconsin breast cancer (569 × 30), each feature min-max scaled over the dataset."""
    from sklearn.datasets import load_breast_cancer as sk_bc

    bunch = sk_bc()
    return Dataset("breast_cancer", _minmax(bunch.data.astype(np.float64)),
                   bunch.target.astype(np.int64), 2)


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into an array.

    Format: two zero bytes, a type byte (0x08 = uint8, …), a dimension count byte, then one
    big-endian uint32 per dimension, then the data in C order.

    Raises:
        DataError: missing file, bad magic, unknown type code, or truncated data.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_IDX_BYTES:
            raise DataError(f"{path} is larger than {MAX_IDX_BYTES // 2**20} MB; the largest MNIST file is 47 MB")
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"IDX file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise DataError(f"expected an IDX file, got a directory: {path}") from exc
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                raw = stream.read(MAX_IDX_BYTES + 1)  # a small file can expand without bound
            if len(raw) > MAX_IDX_BYTES:
                raise DataError(f"{path} expands to more than {MAX_IDX_BYTES // 2**20} MB; the largest MNIST "
                                "file is 47 MB")
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is a corrupt gzip file: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = math.prod(dims)
    if len(raw) - header < count * dtype.itemsize:
        raise DataError(
            f"{path}: IDX data truncated (header says {dims}, "
            f"{len(raw) - header} bytes of data present)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def average_pool(images: np.ndarray, factor: int) -> np.ndarray:
    """``factor × factor`` average pooling of ``(n, h, w)`` images (h, w divisible by factor)."""
    n, h, w = images.shape
    if factor < 1 or h % factor or w % factor:
        raise ConfigError(f"cannot pool {h}×{w} images by {factor}")
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def load_mnist(directory: Path, split: str = "auto", pool: int = 2) -> Dataset:
    """MNIST from IDX files in ``directory``, pooled ``pool × pool`` and scaled to [0, 1].

    Args:
        directory: folder holding ``{train,t10k}-images-idx3-ubyte[.gz]`` and the matching
            ``-labels-idx1-ubyte[.gz]``.
        split: ``"train"``, ``"t10k"`` or ``"auto"`` (t10k if present, else train).
        pool: average-pooling factor (2 → 14×14; 1 → 28×28).

    Raises:
        DataError: the directory does not exist or holds no matching IDX pair, or the image
            and label files disagree.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"MNIST directory does not exist: {directory}")
    prefixes = ("t10k", "train") if split == "auto" else (split,)
    for prefix in prefixes:
        images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
        if images_path and labels_path:
            break
    else:
        raise DataError(
            f"no MNIST IDX files in {directory} (looked for "
            f"{'/'.join(prefixes)}-images-idx3-ubyte[.gz] and -labels-idx1-ubyte[.gz])"
        )
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"MNIST files disagree: images {images.shape} from {images_path.name}, "
            f"labels {labels.shape} from {labels_path.name}"
        )
    if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
        raise DataError(f"MNIST files hold {images.dtype} images and {labels.dtype} labels; "
                        f"expected unsigned bytes ({images_path.name}, {labels_path.name})")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels span [{labels.min()}, {labels.max()}], outside the 10 digit "
                        "classes [0, 9]")
    pooled = average_pool(images.astype(np.float64) / 255.0, pool)
    return Dataset("mnist", pooled.reshape(len(pooled), -1), labels.astype(np.int64), 10)


def load_dataset(name: str, mnist_dir: Path | None = None) -> Dataset:
    """Load a dataset by name (one of :data:`DATASET_NAMES`).

    Raises:
        ConfigError: unknown name.
        DataError: MNIST without a directory (``mnist_dir``, ``$MEMSPICE_MNIST_DIR``) and
            nothing in the cache (:mod:`memspice.data_cache`).
    """
    if name == "digits":
        return load_digits()
    if name == "iris":
        return load_iris()
    if name == "breast_cancer":
        return load_breast_cancer()
    if name == "mnist":
        from memspice.data_cache import resolve_mnist_dir

        return load_mnist(resolve_mnist_dir(mnist_dir))
    raise ConfigError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")


def train_test_split(
    dataset: Dataset, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Seeded, stratified split into (train, test)."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(dataset.labels):
        members = np.flatnonzero(dataset.labels == cls)
        n_test = int(round(test_fraction * len(members)))
        test_parts.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test_parts))
    train = np.setdiff1d(np.arange(len(dataset.labels)), test)
    if len(test) == 0 or len(train) == 0:
        raise DataError(f"dataset {dataset.name} too small to split at {test_fraction}")
    return dataset.subset(train), dataset.subset(test)


#: The MNIST benchmark split of one 10,000-image IDX set: the first 8,000 train, the last 2,000 test.
MNIST_TRAIN = 8000


def benchmark_split(data: Dataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``(train, test)``: MNIST's benchmark split (first 8,000 / last 2,000) when ``data`` is the
    10,000-image set, else a seeded stratified :func:`train_test_split`."""
    if data.name == "mnist" and len(data.labels) == 10_000:
        return data.subset(slice(0, MNIST_TRAIN)), data.subset(slice(MNIST_TRAIN, None))
    return train_test_split(data, test_fraction, seed)


#: The eight one-pixel moves ``(down, right)`` of :func:`shift_images`.
SHIFT_MOVES: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def shift_images(x: np.ndarray, labels: np.ndarray, image_shape: tuple[int, ...], copies: int, seed: int = 0,
                 fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Training-data augmentation: ``x`` followed by ``copies`` one-pixel shifted copies of it.

    Each image gets ``copies`` different moves out of the eight one-pixel moves (:data:`SHIFT_MOVES`,
    horizontal, vertical and diagonal), drawn by a seeded permutation per image; the pixels a move
    uncovers take ``fill`` (the background: 0 for features in [0, 1], ``vss`` for input voltages).

    Args:
        x: ``(n, d)`` flattened images, ``d = prod(image_shape)``.
        labels: ``(n,)``.
        image_shape: ``(h, w)`` or ``(channels, h, w)``.
        copies: shifted copies per image, in [0, 8] (0 returns the inputs unchanged).
        seed: seed of the moves.
        fill: value of the uncovered pixels.

    Returns:
        ``(x', labels')`` with ``n · (copies + 1)`` rows: the originals first, then copy 1 of every
        image, and so on.

    Raises:
        ConfigError: ``copies`` outside [0, 8], or ``x`` not of ``image_shape``.
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or not 0 <= copies <= len(SHIFT_MOVES):
        raise ConfigError(f"shifted copies must be an integer in [0, {len(SHIFT_MOVES)}], got {copies!r}")
    x = np.asarray(x)
    labels = np.asarray(labels)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or x.ndim != 2 or x.shape[1] != math.prod(shape) or len(x) != len(labels):
        raise ConfigError(f"cannot shift inputs {x.shape} (labels {labels.shape}) as images of shape {image_shape}")
    if copies == 0:
        return x, labels
    n, (_, h, w) = len(x), shape
    padded = np.full((n, shape[0], h + 2, w + 2), fill, dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x.reshape(n, *shape)
    rng = np.random.default_rng(seed)
    moves = np.argsort(rng.random((n, len(SHIFT_MOVES))), axis=1)[:, :copies]
    blocks = [x]
    for j in range(copies):
        block = np.empty((n, *shape), dtype=x.dtype)
        for m, (dy, dx) in enumerate(SHIFT_MOVES):
            rows = moves[:, j] == m
            block[rows] = padded[rows, :, 1 - dy: 1 - dy + h, 1 - dx: 1 - dx + w]
        blocks.append(block.reshape(n, -1))
    return np.concatenate(blocks), np.tile(labels, copies + 1)


def features_to_voltages(features: np.ndarray, vdd: float, vss: float) -> np.ndarray:
    """Map features in [0, 1] linearly onto input voltages in [vss, vdd] (V)."""
    return vss + (vdd - vss) * np.asarray(features, dtype=np.float64)
