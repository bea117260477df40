"""Closing the loop between the trained model and its circuit.

- :mod:`memspice.loop.operating_points`: the circuit's own operating points from SPICE voltages;
- :mod:`memspice.loop.recalibrate`: refit the calibration where the model misses them;
- :mod:`memspice.loop.closed_loop`: recalibrate → fine-tune → re-validate, round by round;
- :mod:`memspice.loop.hybrid`: fine-tune the last layer on SPICE's hidden-layer outputs;
- :mod:`memspice.loop.corners`: train at one or several process corners, validate at all;
- :mod:`memspice.loop.trim`: the per-chip trim of a network's bias rows for its corner.
"""
