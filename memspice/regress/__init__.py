"""Netlist regression: golden decks, golden signal tables with tolerances, drift reports.

Library entry points are :func:`memspice.regress.runner.check` and
:func:`memspice.regress.runner.update`; the CLI is ``memspice regress``.
"""
