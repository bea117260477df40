"""Structured pruning, quantization and CSrram clusters of trained networks, measured in SPICE.

The command (:mod:`memspice.prune.command`), the hardware and SPICE figures
(:mod:`memspice.prune.measure`) and the report (:mod:`memspice.prune.report`). The pruning
itself lives in :mod:`memspice.train.sparsity` and :mod:`memspice.train.admm`.
"""
