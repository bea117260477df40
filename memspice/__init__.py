"""memspice: ngspice + NumPy toolkit for inverter-based memristive neural networks.

The names below are the public Python API. Every quantity is in SI units: volts, ohms,
siemens, metres, seconds, watts, joules. Importing the package stays light: each name is
imported on first use (PySpice, matplotlib and dask only by the features that need them).

Calibrate, train, validate:

- `calibrate(tech, sizing=InverterSizing(), ...)`: characterize the inverter in ngspice and
  fit the static, load-aware and coupled (inverter current table) models → `Calibration`.
- `train(calibration, x, labels, hidden=(32,), mode="coupled", ...)`: train a
  PHAX-constrained network with the defaults of `memspice run` → `TrainedNetwork`.
  (`memspice.train` is also the package of the trainer's modules; calling it runs this.)
- `default_train_config(**changes)`: those defaults as a `TrainConfig`, with changes.
- `validate_network(network, tech, x, labels, out_dir, ...)`: simulate every sample in
  ngspice and compare it with the model → `ValidationReport` (accuracy, agreement, per-layer
  errors, power, optional transient delay and energy).

Types:

- `Technology`, `Rails`, `InverterSizing`: MOSFET models at rails, temperature and corner;
  supply rails (V); transistor sizes (m).
- `Calibration`, `DeviceWindow`: fitted neuron models and the memristor conductance window (S).
- `TrainedNetwork`, `TrainConfig`, `HardwareConfig`: trained conductances per layer (S);
  training settings; levels and variation seen in training.
- `ValidationReport`, `Comparison`, `RunSettings`, `NonIdeality`: what a validation produced;
  its SPICE-vs-model figures; how it runs (batches, workers, timeout); device variation,
  stuck-at faults and wire resistance applied in SPICE only.
- `Dataset`: features in [0, 1] and integer labels.

Loaders and helpers:

- `builtin()`, `sky130(corner="tt", flavor="lvt")`, `user_library(path, nmos_model, pmos_model)`:
  technologies (rails in V, temperature in °C as SPICE takes it).
- `load_calibration(path)`, `save_calibration(calibration, path)`,
  `phax_reference_calibration()`: calibration files, and PHAX's published fits built in code.
- `load_network(directory)`, `save_network(network, directory)`: network NPZ + JSON.
- `load_dataset(name, mnist_dir=None)`, `train_test_split(dataset, test_fraction, seed)`,
  `features_to_voltages(features, vdd, vss)`, `accuracy(outputs, labels)`.

Errors: `MemspiceError` and its subclasses `ConfigError`, `NetlistError`, `FitError`,
`DataError`, `SimError`, `SimulatorNotFound`, `SimTimeout`, `SimFailed`.
"""

from __future__ import annotations

import importlib
from typing import Any

from memspice.errors import (
    ConfigError,
    DataError,
    FitError,
    MemspiceError,
    NetlistError,
    SimError,
    SimFailed,
    SimTimeout,
    SimulatorNotFound,
)

__version__ = "0.1.0"

#: Public name → module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "calibrate": "memspice.characterize.calibrate",
    "default_train_config": "memspice.api",
    "validate_network": "memspice.validate.api",
    "Technology": "memspice.tech.technology",
    "builtin": "memspice.tech.technology",
    "sky130": "memspice.tech.technology",
    "user_library": "memspice.tech.technology",
    "Rails": "memspice.circuit.wiring",
    "InverterSizing": "memspice.circuit.builders",
    "Calibration": "memspice.fit.calibration",
    "DeviceWindow": "memspice.fit.calibration",
    "load_calibration": "memspice.fit.calibration",
    "save_calibration": "memspice.fit.calibration",
    "phax_reference_calibration": "memspice.fit.calibration",
    "TrainedNetwork": "memspice.train.network_io",
    "load_network": "memspice.train.network_io",
    "save_network": "memspice.train.network_io",
    "TrainConfig": "memspice.train.trainer",
    "HardwareConfig": "memspice.train.hardware",
    "accuracy": "memspice.train.losses",
    "ValidationReport": "memspice.validate.api",
    "RunSettings": "memspice.validate.api",
    "Comparison": "memspice.validate.compare",
    "NonIdeality": "memspice.validate.nonideal",
    "Dataset": "memspice.datasets",
    "load_dataset": "memspice.datasets",
    "train_test_split": "memspice.datasets",
    "features_to_voltages": "memspice.datasets",
}

_ERRORS = ["ConfigError", "DataError", "FitError", "MemspiceError", "NetlistError", "SimError",
           "SimFailed", "SimTimeout", "SimulatorNotFound"]

__all__ = sorted([*_LAZY, "train", *_ERRORS, "__version__"])


def __getattr__(name: str) -> Any:
    """Import a public name on first access (PEP 562) so ``import memspice`` stays light."""
    if name == "train":
        # The subpackage memspice.train is callable (it runs memspice.api.train), so the name
        # stays valid after any ``import memspice.train.…`` rebinds it to the subpackage.
        return importlib.import_module("memspice.train")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memspice' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
