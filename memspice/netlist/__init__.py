"""Netlist emission: the only place that formats SPICE text."""

from memspice.netlist.emit import emit, fmt

__all__ = ["emit", "fmt"]
