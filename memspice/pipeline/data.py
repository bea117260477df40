"""Datasets and technology as the pipeline configures them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from memspice.characterize.presets import default_sizing
from memspice.circuit.builders import InverterSizing
from memspice.circuit.wiring import Rails
from memspice.datasets import Dataset, benchmark_split, features_to_voltages, load_dataset
from memspice.pipeline.config import RunConfig
from memspice.tech import Technology, builtin, sky130, user_library

def technology(config: RunConfig) -> Technology:
    """The configured technology at the configured rails and temperature."""
    t = config.technology
    rails = Rails(t.vdd, t.vss)
    if t.name == "builtin":
        return builtin(rails=rails, temperature_c=t.temperature_c)
    if t.name == "sky130":
        return sky130(t.corner, flavor=t.flavor, rails=rails, temperature_c=t.temperature_c, path=t.pdk_path or None)  # type: ignore[arg-type]
    return user_library(t.lib, t.nmos, t.pmos, section=t.corner or None, as_subckt=t.subckt_devices,
                        length_unit_m=1e-6 if t.subckt_devices else 1.0, rails=rails, temperature_c=t.temperature_c)


def sizing(config: RunConfig) -> InverterSizing:
    """Configured sizes (µm → m), falling back to the technology's preset for zeros; ``mn``/``mp``
    (parallel devices) as configured."""
    preset = default_sizing(config.technology.name, config.technology.flavor)
    reference = (preset.wn_m, preset.wp_m, preset.ln_m, preset.lp_m)
    s = config.sizing
    given = (s.wn_um * 1e-6, s.wp_um * 1e-6, s.ln_um * 1e-6, s.lp_um * 1e-6)
    wn, wp, ln, lp = (g if g > 0 else r for g, r in zip(given, reference))
    return InverterSizing(wn, wp, ln, lp, s.mn, s.mp)


def split_dataset(config: RunConfig) -> tuple[Dataset, Dataset]:
    """(train, test) as configured, capped by ``max_train``/``max_test``."""
    d = config.dataset
    data = load_dataset(d.name, Path(d.mnist_dir) if d.mnist_dir else None)
    train, test = benchmark_split(data, d.test_fraction, d.seed)
    if d.max_train:
        train = train.subset(slice(0, d.max_train))
    if d.max_test:
        test = test.subset(slice(0, d.max_test))
    return train, test


def voltages(dataset: Dataset, rails: Rails) -> np.ndarray:
    """Input voltages of a dataset's features."""
    return features_to_voltages(dataset.features, rails.vdd, rails.vss)


def batch_size(config: RunConfig, n_samples: int) -> int:
    """The configured batch size, or for 0 the same number of batches for every worker, as few as
    keep them at most 900 samples each on average.

    Validation then cuts the batches at equal predicted Newton work, so single decks may hold a
    little more or less than this, and every worker gets the same work. (Before, 2,000 MNIST
    samples on 2 workers made 3 batches of ≤ 900: one worker ran two of them, and validation took
    111 s at 37 samples/s where 4 batches of 500 take about 45 s.)

    Measured (64-32-10, 1,797 samples, 2 workers): 666 samples/s at 250 per deck, 749 at 450,
    802 at 900 — longer sweeps amortize process start and keep consecutive samples similar.
    """
    if config.validation.batch_size:
        return config.validation.batch_size
    workers = config.validation.workers or os.cpu_count() or 1
    rounds = max(1, -(-n_samples // (workers * 900)))
    return max(1, -(-n_samples // (workers * rounds)))
