"""Memory estimates, checked before work starts: refuse a job that cannot fit, with the figure.

A 10⁶-unit hidden layer or 10⁸ memristor pulses would otherwise run for a while (in
``memspice run``, after earlier stages) and end in a ``MemoryError``. Each estimate counts the
large NumPy arrays (float64) that the trainer, the validator or the characterizer allocates,
within a small factor; the limit is the memory the machine has available now.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from memspice.errors import ConfigError

_FLOAT = 8  # bytes per float64


def available_bytes() -> int | None:
    """Memory available to a new allocation (``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1.5 GB`` style (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def require(estimate: float, what: str, available: int | None = None) -> None:
    """Raise :class:`ConfigError` when ``estimate`` bytes exceed the memory available.

    Args:
        estimate: bytes the job would allocate.
        what: the job, as the message names it ("training a 64-1000000-10 network …").
        available: bytes available (default: :func:`available_bytes`).
    """
    limit = available_bytes() if available is None else available
    if limit is not None and estimate > limit:
        raise ConfigError(f"{what} needs about {format_bytes(estimate)} of memory, but only "
                          f"{format_bytes(limit)} is available; make it smaller")


def network_parameters(topology: Sequence[int]) -> int:
    """Conductances of a crossbar network: every neuron has ``2(N + 1)`` devices."""
    return sum(int(m) * (2 * int(n) + 2) for n, m in zip(topology[:-1], topology[1:]))


def training_bytes(topology: Sequence[int], n_samples: int, batch_size: int, coupled: bool = False) -> float:
    """Arrays of one training run.

    Parameters, best parameters, gradients, two optimizer moments, an average and a checkpoint
    copy (7 × the parameters); the whole training set evaluated at once after every epoch (row
    voltages and column, ``outn``, ``outp`` per layer, forward and backward: 6 arrays per neuron
    and per input row); with the coupled model, the low-rank coupling solve per adjacent pair of
    layers (two ``samples × M × M_next`` arrays).
    """
    params = network_parameters(topology)
    rows = sum(2 * int(n) + 2 for n in topology[:-1])
    neurons = sum(int(m) for m in topology[1:])
    samples = max(int(n_samples), int(batch_size))
    total = 7 * params + samples * (rows + 6 * neurons)
    if coupled:
        total += 2 * samples * sum(int(a) * int(b) for a, b in zip(topology[1:-1], topology[2:]))
    return float(total * _FLOAT)


def validation_bytes(topology: Sequence[int], n_samples: int, batch_size: int) -> float:
    """Arrays of a SPICE validation: the model's voltages of every sample (column, ``outn``,
    ``outp`` per neuron, plus the SPICE results and the comparison: 8 per neuron), the inputs,
    and one batch's deck and results (every device and every saved node)."""
    neurons = sum(int(m) for m in topology[1:])
    samples = int(n_samples)
    batch = min(int(batch_size), samples)
    total = samples * (int(topology[0]) + 8 * neurons) + batch * (4 * neurons + int(topology[0]))
    total += 4 * network_parameters(topology)
    return float(total * _FLOAT)


def check_training(topology: Sequence[int], n_samples: int, batch_size: int, coupled: bool = False) -> None:
    """Refuse a training run that cannot fit in memory (see :func:`training_bytes`)."""
    shape = "-".join(str(int(t)) for t in topology)
    require(training_bytes(topology, n_samples, batch_size, coupled),
            f"training a {shape} network on {n_samples} samples")


def check_validation(topology: Sequence[int], n_samples: int, batch_size: int) -> None:
    """Refuse a validation that cannot fit in memory (see :func:`validation_bytes`)."""
    shape = "-".join(str(int(t)) for t in topology)
    require(validation_bytes(topology, n_samples, batch_size),
            f"validating a {shape} network on {n_samples} samples")


#: Time points of one pulse and its read (1 ns steps over 2 edges + width + gap, twice).
_POINTS_PER_PULSE = 60
#: Bytes per pulse beyond the time points: the PWL corner lists (Python floats), their deck text.
_DECK_BYTES_PER_PULSE = 600


def pulse_train_bytes(n_pulses: int, width_s: float = 20e-9) -> float:
    """A ``2·n_pulses`` memristor pulse train: PWL source, deck text, and the time points
    ngspice returns (three saved vectors plus time, and ngspice's own copy)."""
    points = 2 * int(n_pulses) * (_POINTS_PER_PULSE + max(0.0, width_s) / 1e-9)
    return float(2 * int(n_pulses) * _DECK_BYTES_PER_PULSE + points * 8 * _FLOAT)


def check_pulse_train(n_pulses: int, width_s: float = 20e-9) -> None:
    """Refuse a pulse train that cannot fit in memory (see :func:`pulse_train_bytes`)."""
    require(pulse_train_bytes(n_pulses, width_s), f"a memristor pulse train of 2 × {n_pulses} pulses")


def sweep_points(span: float, step: float, what: str, limit: int = 10_000_000) -> int:
    """Points of a sweep over ``span`` in steps of ``step``; refuse more than ``limit``."""
    if not step > 0:
        raise ConfigError(f"{what} must be positive, got {step}")
    points = int(abs(span) / step) + 1
    if points > limit:
        raise ConfigError(f"{what} {step:g} gives {points:,} sweep points (at most {limit:,}); use a larger step")
    return points
