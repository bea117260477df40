"""Each simulator error class, triggered for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memspice.circuit.deck import Deck, Op, Tran
from memspice.circuit.elements import Capacitor, Resistor, VoltageSource
from memspice.errors import SimFailed, SimTimeout, SimulatorNotFound
from memspice.sim import SimOptions, simulate, simulate_many, simulate_text

pytestmark = pytest.mark.ngspice


def _divider() -> Deck:
    return Deck("divider", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "b", 1e3), Resistor("2", "b", "0", 1e3)),
                analyses=(Op(),))


def test_divider_works_and_run_dir_is_removed(tmp_path: Path) -> None:
    result = simulate(_divider(), SimOptions(work_dir=tmp_path))
    assert result.plot(0)["b"][0] == pytest.approx(0.5, abs=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_syntax_error_raises_sim_failed_with_line_and_kept_dir(tmp_path: Path) -> None:
    text = "bad deck\nV1 a 0 dc 1\nX1 a 0 no_such_subckt\n.op\n.end\n"
    with pytest.raises(SimFailed) as info:
        simulate_text(text, options=SimOptions(work_dir=tmp_path))
    assert "unknown subckt" in info.value.error_line.lower()
    assert info.value.run_dir is not None and (info.value.run_dir / "deck.cir").is_file()
    assert "no_such_subckt" in info.value.stdout


def test_missing_sweep_source_is_reported_even_though_ngspice_exits_zero(tmp_path: Path) -> None:
    text = "bad sweep\nV1 a 0 dc 1\nR1 a 0 1k\n.dc vnosuch 0 1 0.1\n.end\n"
    with pytest.raises(SimFailed, match="vnosuch|no such device"):
        simulate_text(text, options=SimOptions(work_dir=tmp_path))


def test_floating_node_is_reported(tmp_path: Path) -> None:
    deck = Deck("floating", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "0", 1e3),
                             Capacitor("1", "a", "b", 1e-12), Resistor("2", "b", "c", 1e3)), analyses=(Op(),))
    with pytest.raises(SimFailed, match="singular matrix"):
        simulate(deck, SimOptions(work_dir=tmp_path))


def test_timeout_kills_the_run(tmp_path: Path) -> None:
    deck = Deck("endless", (VoltageSource("1", "a", "0", 1.0), Resistor("1", "a", "0", 1e3)),
                analyses=(Tran(1e-15, 1.0),))
    start = time.monotonic()
    with pytest.raises(SimTimeout) as info:
        simulate(deck, SimOptions(timeout_s=1.0, work_dir=tmp_path))
    assert time.monotonic() - start < 10
    assert info.value.run_dir is not None and info.value.run_dir.is_dir()


def test_ngspice_absent_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFound, match="apt-get install ngspice"):
        simulate(_divider())


def test_one_failing_deck_does_not_stop_the_others() -> None:
    bad = Deck("bad", (VoltageSource("1", "a", "0", 1.0), Capacitor("1", "a", "b", 1e-12), Resistor("2", "b", "c", 1e3)),
               analyses=(Op(),))
    results = simulate_many([_divider(), bad, _divider()], SimOptions(keep="never"), workers=2)
    assert isinstance(results[1], SimFailed)
    assert results[0].plot(0)["b"][0] == pytest.approx(0.5)  # type: ignore[union-attr]
    assert results[2].plot(0)["b"][0] == pytest.approx(0.5)  # type: ignore[union-attr]


def test_shared_backend_reports_errors_too() -> None:
    text = "bad deck\nV1 a 0 dc 1\nX1 a 0 no_such_subckt\n.op\n.end\n"
    with pytest.raises(SimFailed):
        simulate_text(text, options=SimOptions(backend="shared", keep="never"))
    # and the library is still usable afterwards
    assert simulate(_divider(), SimOptions(backend="shared")).plot(0)["b"][0] == pytest.approx(0.5, abs=1e-12)


def test_every_backend_name_has_a_runner() -> None:
    from memspice.sim.options import BACKENDS
    from memspice.sim.runner import RUNNERS

    assert set(RUNNERS) == set(BACKENDS)


# ---- mistakes through the CLI: one line, exit 2, nothing lost ---------------------------------

ROOT = Path(__file__).resolve().parent.parent
DIVIDER_TEXT = "divider\nV1 a 0 dc 1\nR1 a b 1k\nR2 b 0 1k\n.op\n.end\n"
ENDLESS_TEXT = "endless\nV1 a 0 dc 1\nR1 a 0 1k\n.tran 1e-15 1\n.end\n"


def _cli(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "memspice.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=environment, timeout=120, check=False)


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memspice: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sim_deck_that_is_a_directory(tmp_path: Path) -> None:
    _one_error_line(_cli(["sim", str(tmp_path)]), "is a directory")


def test_netlist_and_sim_output_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.cir").write_text(DIVIDER_TEXT)
    (tmp_path / "out").mkdir()
    before = _snapshot(tmp_path)
    _one_error_line(_cli(["netlist", "inverter", "-o", str(tmp_path / "out")]), "is a directory")
    _one_error_line(_cli(["sim", str(tmp_path / "d.cir"), "-o", str(tmp_path / "out")]), "is a directory")
    assert _snapshot(tmp_path) == before


def test_regress_junit_that_is_a_directory_fails_before_simulating(tmp_path: Path) -> None:
    # with no ngspice at all, only a check made before any simulation can give this message
    proc = _cli(["regress", "--dir", str(ROOT / "netlists"), "--junit", str(tmp_path), "--ngspice", str(tmp_path / "none")])
    _one_error_line(proc, "is a directory")


@pytest.mark.parametrize("command", ["netlist", "sim"])
def test_read_only_destination(tmp_path: Path, command: str) -> None:
    (tmp_path / "d.cir").write_text(DIVIDER_TEXT)
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use a file system that takes no files
        target = Path("/proc/1/memspice-test/out.csv")
        if not Path("/proc/1").is_dir():
            pytest.skip("no read-only place for root on this system")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "out.csv"
    args = ["netlist", "inverter", "-o", str(target)] if command == "netlist" else ["sim", str(tmp_path / "d.cir"), "-o", str(target)]
    _one_error_line(_cli(args), "cannot write")
    assert not target.exists()


@pytest.mark.parametrize("how", ["default output", "explicit output", "included file"])
def test_sim_never_writes_over_its_inputs(tmp_path: Path, how: str) -> None:
    if how == "default output":
        deck = tmp_path / "deck.csv"  # the default output is DECK with .csv: the deck itself
        deck.write_text(DIVIDER_TEXT)
        args = ["sim", str(deck)]
    elif how == "explicit output":
        deck = tmp_path / "x.cir"
        deck.write_text(DIVIDER_TEXT)
        args = ["sim", str(deck), "-o", str(deck)]
    else:
        deck = tmp_path / "x.cir"
        deck.write_text(DIVIDER_TEXT.replace(".op", ".include models.lib\n.op"))
        (tmp_path / "models.lib").write_text("* models\n")
        args = ["sim", str(deck), "-o", str(tmp_path / "models.lib")]
    before = _snapshot(tmp_path)
    _one_error_line(_cli(args), "refusing to overwrite")
    assert _snapshot(tmp_path) == before


def test_missing_ngspice_leaves_no_run_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pytest.raises(SimulatorNotFound):
        simulate(_divider(), SimOptions(ngspice=str(tmp_path / "no-ngspice"), work_dir=work))
    assert list(work.iterdir()) == []
    (tmp_path / "d.cir").write_text(DIVIDER_TEXT)
    proc = _cli(["sim", str(tmp_path / "d.cir")], env={"PATH": str(Path(sys.executable).parent), "TMPDIR": str(work)})
    _one_error_line(proc, "not found on PATH")
    assert list(work.iterdir()) == []
    assert not (tmp_path / "d.csv").exists()


def test_shared_backend_honours_the_timeout(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(SimTimeout):
        simulate_text(ENDLESS_TEXT, options=SimOptions(backend="shared", timeout_s=1.0, work_dir=tmp_path, keep="never"))
    assert time.monotonic() - start < 30  # the deck alone would run for hours
    # the library is usable again afterwards
    assert simulate(_divider(), SimOptions(backend="shared")).plot(0)["b"][0] == pytest.approx(0.5, abs=1e-12)


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory lies under ``folder`` (ngspice runs in its run directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(folder)):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_kills_ngspice_and_cleans_up(tmp_path: Path, signum: int) -> None:
    if not Path("/proc/self/cwd").exists():
        pytest.skip("needs /proc to find ngspice")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "endless.cir").write_text(ENDLESS_TEXT)
    proc = subprocess.Popen([sys.executable, "-m", "memspice.cli", "sim", str(tmp_path / "endless.cir")], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(work)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # SIGINT as a terminal delivers it: a suite started in the background
                            # of a shell without job control inherits it ignored, and memspice
                            # rightly keeps an ignored SIGINT ignored
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 30
    while not _processes_in(work) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in(work), "ngspice did not start"
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # reap it here, so its pipes do not leak into later tests
        proc.kill()
        _, err = proc.communicate()
        for pid in _processes_in(work):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"memspice still ran 30 s after signal {signum}; its stderr: {err[-2000:]}")
    time.sleep(0.2)
    left = _processes_in(work)
    for pid in left:  # never leave an endless ngspice behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == (130 if signum == signal.SIGINT else 128 + signum), err
    assert "Traceback" not in err
    assert left == []
    assert list(work.iterdir()) == []
    assert not (tmp_path / "endless.csv").exists()


def test_validate_one_sample(tmp_path: Path) -> None:
    """A one-sample batch used to drive its inputs with a one-point pwl, which ngspice reads as NaN."""
    import json

    import numpy as np

    from memspice.fit.calibration import phax_reference_calibration
    from memspice.train.network_io import TrainedNetwork, save_network

    rng = np.random.default_rng(3)
    topology = (4, 3, 3)  # iris: 4 inputs, 3 classes
    g = tuple(rng.uniform(0.12e-6, 8e-6, (b, 2 * a + 2)) for a, b in zip(topology[:-1], topology[1:]))
    save_network(TrainedNetwork(topology, g, phax_reference_calibration()), tmp_path / "net")
    proc = _cli(["validate", str(tmp_path / "net"), "--dataset", "iris", "--samples", "1", "--transient", "0",
                 "--out", str(tmp_path / "v"), "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert "nan" not in proc.stdout.lower()
    assert summary


def test_atomic_writes_honour_the_umask_and_keep_a_replaced_file_mode(tmp_path: Path) -> None:
    from memspice.io import write_text_atomic

    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o604)
    write_text_atomic(kept, "new")
    assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o604


def test_several_outputs_are_written_all_or_nothing(tmp_path: Path) -> None:
    from memspice.errors import ConfigError
    from memspice.io import write_many_atomic

    def fail(tmp: Path) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(ConfigError, match="No space left"):
        write_many_atomic([(tmp_path / "a.csv", lambda tmp: tmp.write_text("a")), (tmp_path / "b.csv", fail)])
    assert list(tmp_path.iterdir()) == []


def test_one_sample_batch_matches_the_same_sample_in_a_larger_batch() -> None:
    import numpy as np

    from memspice.circuit.builders import InverterSizing
    from memspice.tech import builtin
    from memspice.validate.decks import NetworkCircuit, dc_arrays, dc_batch_deck

    rng = np.random.default_rng(4)
    g = (rng.uniform(0.12e-6, 8e-6, (3, 10)), rng.uniform(0.12e-6, 8e-6, (2, 8)))
    x = rng.uniform(-0.25, 0.25, (2, 4))
    circuit = NetworkCircuit(builtin(), InverterSizing(), g)
    one = dc_arrays(simulate(dc_batch_deck(circuit, x[:1])).plot(0), g, 1, x[:1])
    two = dc_arrays(simulate(dc_batch_deck(circuit, x)).plot(0), g, 2, x)
    for layer in range(2):
        assert np.all(np.isfinite(one[f"outp{layer}"]))
        np.testing.assert_allclose(one[f"outp{layer}"][0], two[f"outp{layer}"][0], atol=1e-6, rtol=0)


def test_netlist_never_writes_over_the_model_file_it_includes(tmp_path: Path) -> None:
    import shutil

    from memspice.tech.technology import builtin_models_dir

    lib = tmp_path / "mine.lib"
    shutil.copy(builtin_models_dir() / "builtin_mos.lib", lib)
    before = lib.read_bytes()
    proc = _cli(["netlist", "inverter", "--tech", "user", "--lib", str(lib), "--nmos", "memspice_nmos",
                 "--pmos", "memspice_pmos", "-o", str(lib)])
    _one_error_line(proc, "refusing to overwrite")
    assert lib.read_bytes() == before


def test_a_removed_run_directory_is_not_named_in_the_error(tmp_path: Path) -> None:
    text = "bad deck\nV1 a 0 dc 1\nX1 a 0 no_such_subckt\n.op\n.end\n"
    with pytest.raises(SimFailed) as info:
        simulate_text(text, options=SimOptions(work_dir=tmp_path, keep="never"))
    assert info.value.run_dir is None and "run directory" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
