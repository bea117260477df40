"""A pruning budget counted in devices (or in weights), shared by the layers of a network.

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

A budget in **weights** (``unit="weights"``) counts every θ entry once, wherever it is built:
how weight-counting papers (Yuan et al.'s LeNet-5 at 17.7×) count compression. The same
ranking then prefers no layer by its cost: it keeps the structures of largest ``‖s‖²`` per θ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

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


#: What a budget counts: every memristor built, or every θ entry (a conv θ once).
BudgetUnit = Literal["devices", "weights"]
BUDGET_UNITS: tuple[str, ...] = ("devices", "weights")


def theta_costs(plan: CrossbarPlan, unit: BudgetUnit = "devices") -> np.ndarray:
    """What keeping each θ entry costs in ``unit``: :func:`theta_device_costs`, or 1 per θ."""
    if unit == "weights":
        return np.ones(plan.theta_shape)
    if unit != "devices":
        raise SparsityError(f"a budget counts devices or weights, got {unit!r}")
    return theta_device_costs(plan)


def check_weight_compression(ratio: float, spec: NetworkSpec) -> float:
    """``ratio`` as a weight compression of ``spec``: a number from 1 to the network's θ count
    (the largest keeps one θ).

    Raises:
        SparsityError: not a number, below 1, or above the θ count.
    """
    value = check_compression(ratio, "a weight compression")
    total = sum(int(np.prod(p.theta_shape)) for p in spec.plans)
    if value > total:
        raise SparsityError(f"a weight compression must be at most {total} (the network's θ "
                            f"count: one θ kept), got {ratio!r}")
    return value


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
                     fixed_density: Sequence[float], compression: float,
                     unit: BudgetUnit = "devices") -> list[float]:
    """Densities of the budgeted layers that fit ``dense devices / compression`` devices (or
    ``dense θ / compression`` θ with ``unit="weights"``).

    Args:
        spec: the (unmasked) network.
        values: per layer, the values ranked (``s``, shape ``plan.theta_shape``).
        groups: per layer, structure labels (:func:`memspice.train.sparsity.structure_groups`)
            or None for an unpruned layer.
        budgeted: per layer, whether its structures compete for the shared budget.
        fixed_density: per layer, the density of a pruned layer that is not budgeted (its
            devices are charged as that share of its structured devices).
        compression: dense devices over the devices allowed (≥ 1), or θ over θ.
        unit: what the budget counts, ``"devices"`` or ``"weights"``.

    Returns:
        Per layer, the density to project with (``fixed_density`` for layers not budgeted).
        A budgeted layer keeps at least one structure, so a budget below that minimum is
        exceeded rather than emptying a layer.

    Raises:
        SparsityError: a compression below 1, a budgeted layer without structures.
    """
    compression = check_compression(compression)
    plans = spec.plans
    costs = [theta_costs(p, unit) for p in plans]
    budget = sum(float(c.sum()) for c in costs) / compression
    items: list[tuple[float, float, int]] = []  # (score, devices, layer)
    spent = 0.0
    for layer, (plan, cost, v, g, b, d) in enumerate(zip(plans, costs, values, groups, budgeted,
                                                          fixed_density)):
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
