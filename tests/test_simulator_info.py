"""Which ngspice memspice runs, what it is told about itself, and results across builds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from memspice.errors import SimulatorNotFound
from memspice.regress.golden import Environment, GoldenMeta
from memspice.sim.info import (
    ENV_VAR,
    MIN_MAJOR,
    UnsupportedSimulator,
    configured_ngspice,
    find_ngspice,
    parse_build_options,
    parse_version,
    resolve_ngspice,
    simulator_info,
)

REPO = Path(__file__).resolve().parents[1]

#: ngspice 46's `version -f` for a build like scripts/build_ngspice.sh makes (abridged).
FULL_46 = """******
** ngspice-46 : Circuit level simulation program
** Compiled with KLU Direct Linear Solver
** The U. C. Berkeley CAD Group
**
** XSPICE extensions included
** Relevant compilation options (refer to user's manual):
** OpenMP multithreading for BSIM3, BSIM4 enabled
** X11 interface not compiled into ngspice
** --enable-predictor
**
******
"""
#: Debian 12's ngspice 39.3 (abridged).
FULL_39 = """******
** ngspice-39 : Circuit level simulation program
** The U. C. Berkeley CAD Group
** CIDER 1.b1 (CODECS simulator) included
** XSPICE extensions included
** Relevant compilation options (refer to user's manual):
** OpenMP multithreading for BSIM3, BSIM4 enabled
**
******
"""


def test_versions_and_build_options_are_read_from_ngspice_reports() -> None:
    assert parse_version(FULL_46) == ("46", 46)
    assert parse_version("** ngspice-45.2 : Circuit level simulation program") == ("45.2", 45)
    assert parse_build_options(FULL_46) == {"klu": True, "predictor": True, "openmp": True}
    assert parse_build_options(FULL_39) == {"klu": False, "predictor": False, "openmp": True}
    with pytest.raises(UnsupportedSimulator, match="not ngspice"):
        parse_version("GNU bash, version 5.2")


def test_resolution_order_explicit_then_configured_then_environment_then_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_ngspice() == "ngspice"
    monkeypatch.setenv(ENV_VAR, "/opt/env/ngspice")
    assert resolve_ngspice() == "/opt/env/ngspice"
    with configured_ngspice("/opt/config/ngspice"):
        assert resolve_ngspice() == "/opt/config/ngspice"
        assert resolve_ngspice("/opt/flag/ngspice") == "/opt/flag/ngspice"
    assert resolve_ngspice() == "/opt/env/ngspice"
    with pytest.raises(SimulatorNotFound, match=rf"from \${ENV_VAR}.*does not exist"):
        find_ngspice()


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def test_something_that_is_not_ngspice_is_one_clear_error(tmp_path: Path) -> None:
    fake = _script(tmp_path / "not-ngspice", 'echo "GNU bash, version 5.2"\n')
    with pytest.raises(UnsupportedSimulator, match="is not ngspice"):
        simulator_info(str(fake))


def test_an_ngspice_older_than_supported_is_one_clear_error(tmp_path: Path) -> None:
    # no such old build exists here: this stand-in only answers `-v` as ngspice 30 would
    old = _script(tmp_path / "old-ngspice", 'echo "** ngspice-30 : Circuit level simulation program"\n')
    with pytest.raises(UnsupportedSimulator, match=f"ngspice-30; memspice needs ngspice {MIN_MAJOR} or newer"):
        simulator_info(str(old))


def test_cli_rejects_a_foreign_simulator_with_one_line_and_writes_nothing(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from memspice.cli import main
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.train.network_io import TrainedNetwork, save_network

    g = (np.full((3, 130), 1e-6), np.full((10, 8), 1e-6))  # 64 inputs: the digits data set
    save_network(TrainedNetwork((64, 3, 10), g, phax_reference_calibration()), tmp_path / "net")
    fake = _script(tmp_path / "fake", "echo hello\n")
    out = tmp_path / "out"
    code = main(["validate", str(tmp_path / "net"), "--split", "all", "--samples", "5", "--out", str(out),
                 "--ngspice", str(fake)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("memspice: error:") and "is not ngspice" in err[0]
    assert not out.exists(), "nothing is written"


def test_build_options_travel_in_golden_environment_records() -> None:
    old = Environment("39", {"m/a.lib": "0" * 64}, "Sparse, OpenMP")
    new = Environment("46", {"m/a.lib": "0" * 64}, "KLU, predictor, OpenMP")
    assert new.changes_from(old) == ["ngspice version 39 -> 46", "ngspice build Sparse, OpenMP -> KLU, predictor, OpenMP"]
    assert Environment("39", {}, "KLU").changes_from(Environment("39", {}, "")) == []  # not recorded before
    meta = GoldenMeta("c", "d", 0, "v-sweep", {}, (), new)
    assert GoldenMeta.from_json(meta.to_json(), "c").environment == new
    assert "build" not in json.loads(GoldenMeta("c", "d", 0, "x", {}, (), Environment("39")).to_json())["environment"]


def test_simulator_key_in_the_pipeline_configuration(tmp_path: Path) -> None:
    from memspice.pipeline.config import load_config

    path = tmp_path / "run.toml"
    path.write_text('[simulator]\nngspice = "tools/ngspice"\n')
    assert load_config(path).simulator.ngspice == str(tmp_path / "tools" / "ngspice")
    path.write_text('[simulator]\nngspice = "ngspice-46"\n')
    assert load_config(path).simulator.ngspice == "ngspice-46"  # a name stays a name (looked up on PATH)
    assert load_config(None).simulator.ngspice == ""


@pytest.mark.ngspice
def test_the_stock_ngspice_describes_itself(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    info = simulator_info()
    assert os.path.isabs(info.executable) and info.major >= MIN_MAJOR
    assert info.describe().startswith(f"ngspice-{info.version} (")
    assert set(info.record()) == {"version", "klu", "predictor", "openmp"}
    link = tmp_path / "my-ngspice"  # another name for the same binary, chosen by the environment
    link.symlink_to(shutil.which("ngspice") or "ngspice")
    monkeypatch.setenv(ENV_VAR, str(link))
    assert simulator_info().executable == str(link)
    assert simulator_info().record() == info.record()


@pytest.mark.ngspice
def test_stage_fingerprints_follow_the_simulator_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dataclasses

    from memspice.pipeline.config import RunConfig, SimulatorConfig
    from memspice.pipeline.run import stages

    monkeypatch.delenv(ENV_VAR, raising=False)
    stage = stages()[0]
    stock = RunConfig()
    missing = dataclasses.replace(stock, simulator=SimulatorConfig(ngspice=str(tmp_path / "none")))
    from memspice.pipeline.stages import fingerprint

    assert fingerprint(stage, stock, {}) == fingerprint(stage, stock, {})
    assert fingerprint(stage, stock, {}) != fingerprint(stage, missing, {})


def _built_ngspice() -> str | None:
    """An ngspice with KLU: $MEMSPICE_NGSPICE or scripts/build_ngspice.sh's default prefix."""
    for candidate in (os.environ.get(ENV_VAR, ""), str(REPO / ".ngspice" / "46" / "bin" / "ngspice")):
        if candidate and os.access(candidate, os.X_OK):
            try:
                if simulator_info(candidate).klu:
                    return candidate
            except SimulatorNotFound:
                continue
    return None


needs_build = pytest.mark.skipif(_built_ngspice() is None,
                                 reason="no ngspice build with KLU (scripts/build_ngspice.sh, or MEMSPICE_NGSPICE)")


@pytest.mark.ngspice
@needs_build
def test_klu_is_a_simulator_setting_not_deck_text(tmp_path: Path) -> None:
    from memspice.circuit.builders import InverterSizing, inverter_chain_deck
    from memspice.circuit.deck import Op
    from memspice.netlist.emit import emit
    from memspice.sim import SimOptions, simulate
    from memspice.sim.rundir import DECK_NAME, SIM_OPTIONS_NAME
    from memspice.tech import builtin

    deck = inverter_chain_deck(builtin(), InverterSizing(), [Op()], input_v=0.01)
    built = simulate(deck, SimOptions(keep="always", work_dir=tmp_path / "built", ngspice=_built_ngspice()))
    stock = simulate(deck, SimOptions(keep="always", work_dir=tmp_path / "stock", ngspice=shutil.which("ngspice")))
    assert built.run_dir is not None and stock.run_dir is not None
    assert (built.run_dir / DECK_NAME).read_text() == (stock.run_dir / DECK_NAME).read_text() == emit(deck)
    assert "klu" in (built.run_dir / SIM_OPTIONS_NAME).read_text()
    assert "Using KLU as Direct Linear Solver" in built.output  # ngspice says which solver it used
    assert simulator_info(shutil.which("ngspice")).klu or not (stock.run_dir / SIM_OPTIONS_NAME).exists()
    assert abs(built.plot(0)["o1"][0] - stock.plot(0)["o1"][0]) < 1e-6


@pytest.mark.ngspice
@needs_build
def test_a_validation_batch_gives_the_same_outputs_with_both_builds(tmp_path: Path) -> None:
    from memspice.fit.calibration import phax_reference_calibration
    from memspice.tech import builtin
    from memspice.train.network_io import TrainedNetwork
    from memspice.validate.api import RunSettings, validate_network

    rng = np.random.default_rng(7)
    topology = (64, 32, 10)
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
    network = TrainedNetwork(topology, g, phax_reference_calibration())
    x, labels = rng.uniform(-0.25, 0.25, (60, 64)), rng.integers(0, 10, 60)
    reports = {}
    for name, exe in (("stock", shutil.which("ngspice")), ("built", _built_ngspice())):
        reports[name] = validate_network(network, builtin(), x, labels, tmp_path / name, write_files=False,
                                         settings=RunSettings(batch_size=30, workers=2, ngspice=exe))
        assert reports[name].complete
    assert reports["built"].summary["simulator"]["klu"] and reports["built"].summary["simulator"]["predictor"]
    for a, b in zip(reports["stock"].spice, reports["built"].spice):
        np.testing.assert_allclose(a.outp, b.outp, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.outn, b.outn, rtol=0, atol=1e-6)


# ---- scripts/build_ngspice.sh: its refusals (the build itself takes minutes and is not a test) ----

BUILD_SCRIPT = REPO / "scripts" / "build_ngspice.sh"


def _build(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    import subprocess

    full = {k: v for k, v in os.environ.items() if not k.startswith("NGSPICE_")}
    full.update({"NGSPICE_PREFIX": str(tmp_path / "prefix" / "46"), **env})
    proc = subprocess.run(["bash", str(BUILD_SCRIPT), *args], capture_output=True, text=True, env=full, timeout=120,
                          check=False)
    return proc.returncode, proc.stderr


def test_build_script_refuses_a_missing_tarball(tmp_path: Path) -> None:
    code, err = _build(tmp_path, str(tmp_path / "ngspice-46.tar.gz"))
    assert code != 0 and err.strip().splitlines()[-1].startswith("build-ngspice: error: ngspice source not found")
    assert not (tmp_path / "prefix").exists()


def test_build_script_refuses_a_checksum_mismatch(tmp_path: Path) -> None:
    import hashlib

    tarball = tmp_path / "ngspice-46.tar.gz"
    tarball.write_bytes(b"not the release")
    code, err = _build(tmp_path, str(tarball), NGSPICE_SHA256="0" * 64)
    got = hashlib.sha256(b"not the release").hexdigest()
    assert code != 0 and f"checksum mismatch for {tarball}: expected SHA-256 {'0' * 64}, got {got}" in err
    # the download path checks the pinned release checksum before unpacking anything
    code, err = _build(tmp_path, NGSPICE_URL=tarball.as_uri())
    assert code != 0 and f"checksum mismatch for {tarball.as_uri()}" in err
    assert not any((tmp_path / "prefix").iterdir()), "the failed download is removed"


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "make", "bison", "flex", "autoconf", "automake",
                                                           "libtoolize")),
                    reason="the build tools are not installed (the script would install them)")
def test_a_build_that_fails_halfway_leaves_the_previous_one(tmp_path: Path) -> None:
    previous = tmp_path / "prefix" / ".46-previous" / "bin"
    previous.mkdir(parents=True)
    (previous / "ngspice").write_text("#!/bin/sh\necho previous\n")
    (previous / "ngspice").chmod(0o755)
    (tmp_path / "prefix" / "46").symlink_to(".46-previous")
    tree = tmp_path / "broken-src"
    tree.mkdir()
    _script(tree / "configure", "echo 'configure: error: broken on purpose' >&2\nexit 1\n")
    code, err = _build(tmp_path, str(tree))
    assert code != 0 and "build-ngspice: error: configure failed" in err
    assert os.readlink(tmp_path / "prefix" / "46") == ".46-previous"
    assert sorted(p.name for p in (tmp_path / "prefix").iterdir()) == [".46-previous", "46"], "no leftovers"


def test_build_script_never_replaces_a_directory_it_did_not_make(tmp_path: Path) -> None:
    foreign = tmp_path / "prefix" / "46" / "bin"
    foreign.mkdir(parents=True)
    (foreign / "ngspice").write_text("someone else's\n")
    tarball = tmp_path / "ngspice-46.tar.gz"
    tarball.write_bytes(b"any source")
    code, err = _build(tmp_path, str(tarball))
    assert code != 0 and "exists and is not a build of this script" in err
    assert (foreign / "ngspice").read_text() == "someone else's\n"
