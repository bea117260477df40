"""Settling delay is measured against the DC operating point, so it does not depend on the period."""

from __future__ import annotations

import numpy as np
import pytest

from memspice.circuit.builders import InverterSizing
from memspice.tech import builtin
from memspice.validate.api import dc_reference
from memspice.validate.decks import NetworkCircuit, TransientSpec
from memspice.validate.execute import BatchJob, ExecutionResult, run_job
from memspice.fit.calibration import phax_reference_calibration
from memspice.train.network_io import TrainedNetwork

TOPOLOGY = (4, 3, 2)


def switching_network() -> TrainedNetwork:
    """Every neuron dominated by the ``ip`` row of input 0 (8 µS vs 0.12 µS elsewhere), so all
    outputs swing rail to rail when input 0 changes sign."""
    g_min, g_max = 0.12e-6, 8e-6
    layers = []
    for n, m in zip(TOPOLOGY[:-1], TOPOLOGY[1:]):
        g = np.full((m, 2 * n + 2), g_min)
        g[:, 0] = g_max
        layers.append(g)
    return TrainedNetwork(TOPOLOGY, tuple(layers), phax_reference_calibration())


def alternating_inputs() -> np.ndarray:
    """Samples whose input 0 alternates between +0.2 V and −0.2 V (sample 0 follows the
    mid-rail reset step and may not switch)."""
    return np.array([[0.2, 0.1, -0.1, 0.0], [-0.2, 0.1, -0.1, 0.0], [0.2, -0.1, 0.1, 0.0]])

pytestmark = pytest.mark.ngspice


def _delays(period_s: float) -> np.ndarray:
    network = switching_network()
    x = alternating_inputs()
    circuit = NetworkCircuit(builtin(), InverterSizing(), network.conductances)
    dc = run_job(BatchJob(0, np.arange(3), x, circuit, "dc"))
    reference = np.column_stack([dc["outp1"], dc["outn1"]])
    tran = run_job(BatchJob(0, np.arange(3), x, circuit, "transient", TransientSpec(period_s, 0.01e-9),
                            reference=reference))
    return tran["delay_s"]


def test_delay_does_not_grow_with_the_period() -> None:
    short, long = _delays(50e-9), _delays(400e-9)
    assert np.all(np.isfinite(short)) and np.all(np.isfinite(long))
    assert np.all(short[1:] > 1e-9)  # samples 1 and 2 flip input 0, so every output switches
    np.testing.assert_allclose(short, long, atol=1e-9)  # within the 0.4 ns time resolution + ramp


def test_a_period_too_short_to_settle_is_reported_as_not_settled() -> None:
    delays = _delays(0.3e-9)
    assert np.isnan(delays).any()


def test_dc_reference_maps_batches_back_to_samples() -> None:
    batch = {"sample_index": np.array([2, 0]), "outp1": np.array([[1.0], [2.0]]),
             "outn1": np.array([[-1.0], [-2.0]])}
    dc = ExecutionResult({0: batch}, [], [], [0], 0.0)
    reference = dc_reference(dc, 3, 1)
    np.testing.assert_array_equal(reference[0], [2.0, -2.0])
    np.testing.assert_array_equal(reference[2], [1.0, -1.0])
    assert np.isnan(reference[1]).all()


def test_the_cli_transient_defaults_are_the_transient_spec_defaults() -> None:
    from memspice.cli import build_parser
    from memspice.validate import command

    spec = TransientSpec()
    assert command.DEFAULT_PERIOD_NS * 1e-9 == pytest.approx(spec.period_s, rel=1e-12)
    assert command.DEFAULT_RISE_NS * 1e-9 == pytest.approx(spec.rise_s, rel=1e-12)
    assert command.DEFAULT_POINTS_PER_PERIOD == spec.points_per_period
    args = build_parser().parse_args(["validate", "somewhere"])
    assert (args.period, args.rise) == (command.DEFAULT_PERIOD_NS, command.DEFAULT_RISE_NS)
    assert args.points_per_period == command.DEFAULT_POINTS_PER_PERIOD


def test_the_default_time_step_gives_the_delays_and_energies_of_a_ten_times_finer_one() -> None:
    """Subthreshold outputs that settle in 50-60 ns: the default step bound is accurate enough."""
    rng = np.random.default_rng(5)
    topology = (16, 8, 4)
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
    network = TrainedNetwork(topology, g, phax_reference_calibration())
    x0 = rng.uniform(-0.25, 0.25, topology[0])
    x = np.array([x0, -x0, x0])  # samples 1 and 2 flip every input
    circuit = NetworkCircuit(builtin(), InverterSizing(), network.conductances)
    dc = run_job(BatchJob(0, np.arange(3), x, circuit, "dc"))
    reference = np.column_stack([dc["outp1"], dc["outn1"]])
    default = TransientSpec()
    fine = TransientSpec(default.period_s, default.rise_s, 10 * default.points_per_period)
    a, b = (run_job(BatchJob(0, np.arange(3), x, circuit, "transient", spec, reference=reference))
            for spec in (default, fine))
    assert np.all(b["delay_s"][1:] > 20e-9), "the flipped samples switch"
    np.testing.assert_allclose(a["delay_s"], b["delay_s"], rtol=0.01, atol=0.2e-9)
    np.testing.assert_allclose(a["energy_j"], b["energy_j"], rtol=1e-5)
    np.testing.assert_allclose(a["energy_to_settle_j"], b["energy_to_settle_j"], rtol=0.01)
