"""The ``[network]`` table of a ``memspice run`` configuration, checked against the dataset.

The network is either ``[training] hidden`` (dense) or a ``[network]`` table
(:meth:`memspice.network.NetworkSpec.from_config`), whose input shape is the dataset's
(:data:`DATASET_SHAPES`). A table of ``flatten`` and ``dense`` layers only is the dense
network (:func:`dense_layers`); one with conv or pooling layers is trained by
:mod:`memspice.pipeline.layered_train`.
"""

from __future__ import annotations

from typing import Any

from memspice.errors import ConfigError

#: What a network sees of each dataset: input shape (C, H, W) or (N,), and classes.
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 14, 14), 10),
    "iris": ((4,), 3),
    "breast_cancer": ((30,), 2),
}
#: Datasets of images, which ``[training] shifts`` can shift.
IMAGE_DATASETS: tuple[str, ...] = tuple(name for name, (shape, _) in DATASET_SHAPES.items() if len(shape) == 3)


def dense_layers(spec: Any) -> tuple[int, ...] | None:
    """The units of a network made only of ``flatten`` and ``dense`` layers (no masks), else None."""
    from memspice.network import Dense, Flatten

    if any(m is not None for m in spec.masks) or not all(isinstance(l, (Dense, Flatten)) for l in spec.layers):
        return None
    return tuple(l.units for l in spec.layers if isinstance(l, Dense))


def check_network_size(spec: Any, batch_size: int) -> None:
    """:meth:`NetworkSpec.check_size`, its error naming the layer with the most devices.

    Raises:
        NetworkError: the estimate exceeds the limit.
    """
    from memspice.network import NetworkError

    try:
        spec.check_size(batch_size)
    except NetworkError as exc:
        big = max(spec.plans, key=lambda p: p.n_devices)
        raise NetworkError(f"{exc} (the largest is network layer {big.index} ({big.kind}): {big.n_devices:,} "
                           f"devices in {big.n_columns:,} columns)") from None


#: Training modes of networks with conv or pooling layers.
LAYERED_MODES = ("static", "coupled")


def dataset_network(table: Any, dataset: str, batch_size: int) -> Any:
    """The :class:`~memspice.network.NetworkSpec` of a ``[network]`` table on ``dataset``'s input
    shape, ending in its classes, within memory for ``batch_size``.

    Raises:
        NetworkError: naming the key or the layer.
    """
    from memspice.network import NetworkError, NetworkSpec

    input_shape, n_classes = DATASET_SHAPES[dataset]
    spec = NetworkSpec.from_config(table, input_shape)
    last = spec.plans[-1]
    if spec.n_outputs != n_classes:
        raise NetworkError(f"network layer {last.index} ({last.kind}) has {spec.n_outputs} outputs, but "
                           f"dataset {dataset} has {n_classes} classes")
    check_network_size(spec, batch_size)
    return spec


def network_spec(table: Any, dataset: str, training: Any, loop_enabled: bool) -> Any:
    """Check a ``[network]`` table against the dataset, the training settings and memory.

    Args:
        table: the parsed ``[network]`` table.
        dataset: the dataset's name (it gives the input shape and the classes).
        training: the ``[training]`` section (``batch_size``, ``mode``, ``shifts``).
        loop_enabled: ``loop.enabled``.

    Returns:
        The :class:`~memspice.network.NetworkSpec`.

    Raises:
        ConfigError: a network that cannot be built (naming the layer), does not end in the
            dataset's classes, is too large, or asks for what layered networks do not have.
    """
    spec = dataset_network(table, dataset, training.batch_size)
    if dense_layers(spec) is None:
        if training.mode not in LAYERED_MODES:
            raise ConfigError(f"training.mode must be {' or '.join(LAYERED_MODES)} for a [network] with conv or "
                              f"pooling layers, got {training.mode!r}")
        if loop_enabled:
            raise ConfigError("loop.enabled must be false for a [network] with conv or pooling layers (the closed "
                              "loop takes dense networks; set [loop] enabled = false), got True")
        if training.drive_power_weight_per_mw:
            raise ConfigError("training.drive_power_weight_per_mw needs a dense network (the driver-power term is "
                              f"not built for conv or pooling layers), got {training.drive_power_weight_per_mw}")
        if training.distill_weight:
            raise ConfigError("training.distill_weight needs a dense network (distillation is not built for conv "
                              f"or pooling layers), got {training.distill_weight}")
    elif training.shifts and dataset not in IMAGE_DATASETS:
        raise ConfigError(f"training.shifts needs a dataset of images ({' or '.join(IMAGE_DATASETS)}), not "
                          f"{dataset}")
    return spec
