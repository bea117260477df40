"""Validation runs for real: a killed ngspice mid-run, resume, and a Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memspice.fit.calibration import phax_reference_calibration
from memspice.tech import builtin
from memspice.train.network_io import TrainedNetwork, save_network
from memspice.validate.api import RunSettings, validate_network


def digits_sized_network(seed: int = 0) -> TrainedNetwork:
    rng = np.random.default_rng(seed)
    topology = (64, 32, 10)
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
    return TrainedNetwork(topology, g, phax_reference_calibration())


def _killing_ngspice(tmp_path: Path) -> Path:
    """An executable that runs the real ngspice, and SIGKILLs the first one it starts.

    The first call starts a watcher that waits until the shell has exec'd into ngspice (its
    /proc comm changes) and kills it with signal 9, so exactly one real ngspice dies mid-run,
    whatever the machine's speed. Polling /proc for a child from the test raced a 20-sample
    batch that can finish in a few milliseconds.
    """
    import shutil

    real = shutil.which("ngspice")
    assert real is not None
    marker = tmp_path / "killed-once"
    wrapper = tmp_path / "killing-ngspice"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -b ] && mkdir "{marker}" 2>/dev/null; then\n'
        '  ( until [ "$(cat /proc/$$/comm 2>/dev/null)" = ngspice ]; do :; done; kill -9 $$ ) &\n'
        "fi\n"
        f'exec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.ngspice
@pytest.mark.slow
def test_killed_ngspice_fails_one_batch_and_resume_redoes_only_it(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main

    save_network(digits_sized_network(), tmp_path / "net")
    out = tmp_path / "run"
    argv = ["validate", str(tmp_path / "net"), "--split", "all", "--samples", "80", "--batch-size", "20",
            "--workers", "1", "--out", str(out), "--json", "--ngspice", str(_killing_ngspice(tmp_path))]
    assert main(argv) == 1
    assert (tmp_path / "killed-once").is_dir(), "the wrapper started ngspice and killed it"
    captured = capsys.readouterr()
    assert "batch 0 failed" in captured.err and "signal 9" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "incomplete" and summary["batches_simulated"] == 3
    with np.load(out / "plan.npz") as plan_arrays:  # batches balance predicted work, so sizes differ a little
        first = len(plan_arrays["arr_0"])
    assert 0 < first < 80 and summary["n_samples"] == 80 - first
    assert [f["batch"] for f in summary["failed_batches"]] == [0]
    assert any((out / "failed").iterdir()), "the failed ngspice run directory is kept"

    # Without --resume or --force the earlier results are protected.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err

    plan = (out / "plan.npz").read_bytes()
    assert main([*argv, "--resume"]) == 0
    assert (out / "plan.npz").read_bytes() == plan, "a resumed run keeps the stored batch plan"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n_samples"] == 80
    assert summary["batches_reused"] == 3 and summary["batches_simulated"] == 1
    assert len(summary["dc_batch_elapsed_s"]) == 1, "only batches simulated in this run are timed"

    assert main([*argv, "--force"]) == 0
    fresh = json.loads((out / "summary.json").read_text())
    assert fresh["batches_simulated"] == 4
    assert fresh["layer_errors"] == summary["layer_errors"], "resumed and fresh runs give identical results"


@pytest.mark.ngspice
def test_dask_cluster_gives_identical_results(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    network = digits_sized_network(1)
    rng = np.random.default_rng(3)
    x, labels = rng.uniform(-0.25, 0.25, (40, 64)), rng.integers(0, 10, 40)
    local = validate_network(network, builtin(), x, labels, tmp_path / "local", write_files=False,
                             settings=RunSettings(batch_size=15, workers=2))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        # The address string is what `--scheduler` passes; the client is opened and closed inside.
        remote = validate_network(network, builtin(), x, labels, tmp_path / "dask", write_files=False,
                                  settings=RunSettings(batch_size=15, scheduler=cluster.scheduler_address))
    assert remote.complete and remote.summary["batches_simulated"] == 3
    for a, b in zip(local.spice, remote.spice):
        np.testing.assert_array_equal(a.outn, b.outn)
        np.testing.assert_array_equal(a.outp, b.outp)
    np.testing.assert_array_equal(local.power_w, remote.power_w)


@pytest.mark.ngspice
def test_the_chosen_ngspice_executable_runs_every_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from memspice.cli import main

    real = shutil.which("ngspice")
    assert real is not None
    calls = tmp_path / "calls.txt"
    wrapper = tmp_path / "my-ngspice"  # stands for a separately built simulator: logs, then runs the real one
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = -b ] && echo "$PWD" >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    save_network(digits_sized_network(2), tmp_path / "net")
    base = ["validate", str(tmp_path / "net"), "--split", "all", "--samples", "30", "--batch-size", "10",
            "--workers", "2", "--json"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--out", str(tmp_path / "chosen"), "--ngspice", str(wrapper)]) == 0
    assert len(calls.read_text().splitlines()) == 3  # one simulation per batch (besides asking its version)
    default, chosen = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("default", "chosen"))
    assert chosen["layer_errors"] == default["layer_errors"] and chosen["agreement"] == default["agreement"]
    capsys.readouterr()

    missing = tmp_path / "no-such-ngspice"
    assert main([*base, "--out", str(tmp_path / "missing"), "--ngspice", str(missing)]) != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert not (tmp_path / "missing" / "batches").exists(), "nothing is simulated with a missing simulator"


def test_run_settings_reject_an_empty_ngspice() -> None:
    from memspice.errors import ConfigError

    with pytest.raises(ConfigError, match="ngspice executable"):
        RunSettings(ngspice=" ")
