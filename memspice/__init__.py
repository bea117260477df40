"""memspice: ngspice + NumPy toolkit for inverter-based memristive neural networks.

Importing the package stays light: PySpice, matplotlib and dask are imported lazily by the
modules that need them.
"""

from memspice.errors import (
    ConfigError,
    FitError,
    MemspiceError,
    NetlistError,
    SimError,
    SimFailed,
    SimTimeout,
    SimulatorNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "FitError",
    "MemspiceError",
    "NetlistError",
    "SimError",
    "SimFailed",
    "SimTimeout",
    "SimulatorNotFound",
    "__version__",
]
