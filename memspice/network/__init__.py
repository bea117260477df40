"""Network descriptions: layers, shapes, crossbar plans and per-device wiring.

One description serves every stage: the trainer, the evaluators, the netlist builders,
validation and network files. See ``docs/network.md``.
"""

from memspice.network.layers import (
    LAYER_KINDS,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    NetworkError,
    layer_from_dict,
    layer_to_dict,
)
from memspice.network.spec import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    CrossbarMask,
    CrossbarPlan,
    NetworkSpec,
    SizeEstimate,
)
from memspice.network.wiring import (
    CrossbarWiring,
    crossbar_wiring,
    fan_out,
    network_wiring,
    row_column_conductance,
    theta_gradient,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT_BYTES",
    "LAYER_KINDS",
    "AvgPool2d",
    "Conv2d",
    "CrossbarMask",
    "CrossbarPlan",
    "CrossbarWiring",
    "Dense",
    "Flatten",
    "Layer",
    "NetworkError",
    "NetworkSpec",
    "SizeEstimate",
    "crossbar_wiring",
    "fan_out",
    "layer_from_dict",
    "layer_to_dict",
    "network_wiring",
    "row_column_conductance",
    "theta_gradient",
]
