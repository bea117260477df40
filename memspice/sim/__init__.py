"""Simulation: backends, run directories, raw-file parsing. Only this package starts ngspice."""

from memspice.sim.batch import find_ngspice
from memspice.sim.options import BACKENDS, SimOptions
from memspice.sim.rawfile import Plot, parse_raw
from memspice.sim.runner import SimResult, simulate, simulate_many, simulate_text

__all__ = ["BACKENDS", "Plot", "SimOptions", "SimResult", "find_ngspice", "parse_raw", "simulate", "simulate_many", "simulate_text"]
