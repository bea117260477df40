"""A pruning budget counted in devices, shared by the layers of a network.

A θ entry of a conv layer is built once per output position (and once per pool window folded
into its taps), so pruning it saves ``positions·fold`` devices (a bias entry ``positions``),
while a dense-layer θ saves ``fold``. :func:`theta_device_costs` gives that cost per entry.

:func:`budget_densities` turns one budget of devices for the whole network into a density per
budgeted layer: it keeps the structures of largest ``‖s‖² / devices`` (the greedy solution of
"keep as much of ``Σ‖s‖²`` as fits in the budget", a knapsack, which is the Euclidean
projection onto "at most this many devices" up to the last item that fits), over every
budgeted layer at once, so a cheap dense-layer weight outranks a conv weight of the same size.
Each layer then keeps that many structures through its own projection
(:func:`memspice.train.admm.project`), which also keeps every output neuron connected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from memspice.network.spec import CrossbarPlan, NetworkSpec
from memspice.train.sparsity import SparsityError


def theta_device_costs(plan: CrossbarPlan) -> np.ndarray:
    """Devices built per θ entry, ``plan.theta_shape`` float: ``positions·fold`` for a tap
    (each output position has its own copy, each folded pool window its own device),
    ``positions`` for a bias entry. Sums to ``plan.n_devices``."""
    k = plan.taps
    cost = np.full(plan.theta_shape, float(plan.positions * plan.fold))
    cost[:, 2 * k :] = float(plan.positions)
    return cost


def check_compression(ratio: float, what: str = "a device compression") -> float:
    """``ratio`` as a float ≥ 1 (``what`` names it in the error).

    Raises:
        SparsityError: not a finite number ≥ 1.
    """
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise SparsityError(f"{what} must be a number ≥ 1, got {ratio!r}") from None
    if not (math.isfinite(value) and value >= 1.0):
        raise SparsityError(f"{what} must be ≥ 1, got {ratio!r}")
    return value


def budget_densities(spec: NetworkSpec, values: Sequence[np.ndarray],
                     groups: Sequence[np.ndarray | None], budgeted: Sequence[bool],
                     fixed_density: Sequence[float], compression: float) -> list[float]:
    """Densities of the budgeted layers that fit ``dense devices / compression`` devices.

    Args:
        spec: the (unmasked) network.
        values: per layer, the values ranked (``s``, shape ``plan.theta_shape``).
        groups: per layer, structure labels (:func:`memspice.train.sparsity.structure_groups`)
            or None for an unpruned layer.
        budgeted: per layer, whether its structures compete for the shared budget.
        fixed_density: per layer, the density of a pruned layer that is not budgeted (its
            devices are charged as that share of its structured devices).
        compression: dense devices over the devices allowed (≥ 1).

    Returns:
        Per layer, the density to project with (``fixed_density`` for layers not budgeted).
        A budgeted layer keeps at least one structure, so a budget below that minimum is
        exceeded rather than emptying a layer.

    Raises:
        SparsityError: a compression below 1, a budgeted layer without structures.
    """
    compression = check_compression(compression)
    plans = spec.plans
    budget = sum(p.n_devices for p in plans) / compression
    items: list[tuple[float, float, int]] = []  # (score, devices, layer)
    spent = 0.0
    for layer, (plan, v, g, b, d) in enumerate(zip(plans, values, groups, budgeted, fixed_density)):
        cost = theta_device_costs(plan)
        if g is None:
            if b:
                raise SparsityError(f"network layer {plan.index}: a device budget needs a structure")
            spent += float(cost.sum())
            continue
        spent += float(cost[g < 0].sum())  # entries in no structure are always built
        labels = g[g >= 0]
        n = int(labels.max()) + 1
        devices = np.bincount(labels, weights=cost[g >= 0], minlength=n)
        if not b:
            spent += d * float(devices.sum())
            continue
        norms = np.bincount(labels, weights=np.asarray(v, dtype=np.float64)[g >= 0] ** 2,
                            minlength=n)
        items.extend((float(norms[i] / devices[i]), float(devices[i]), layer)
                     for i in range(n) if devices[i] > 0)
    counts = {layer: 0 for layer, b in enumerate(budgeted) if b}
    totals = dict.fromkeys(counts, 0)
    for _, _, layer in items:
        totals[layer] += 1
    left = budget - spent
    for score, devices, layer in sorted(items, key=lambda item: -item[0]):
        if devices <= left:
            counts[layer] += 1
            left -= devices
    return [max(counts[layer], 1) / totals[layer] if layer in counts else float(fixed_density[layer])
            for layer in range(len(plans))]
