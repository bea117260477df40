"""Hostile decks, directory names and init files: nothing a deck brings runs a program.

The attack tests write real hostile files, run the real CLI with the real ngspice and check
that the file a ``shell`` line would create does not appear. Each attack is first shown to
work when control code is allowed on purpose, so the tests cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memspice.circuit.deck import Deck, Include, ModelRoot, Op
from memspice.circuit.elements import Resistor, VoltageSource
from memspice.errors import ConfigError, MemspiceError, NetlistError
from memspice.sim import SimOptions, simulate_text
from memspice.sim.deckcheck import ControlCodeRefused, scan_deck, scan_text
from memspice.sim.rundir import populate_run_dir

ROOT = Path(__file__).resolve().parent.parent
NETLISTS = ROOT / "netlists"
#: Values that must never reach deck text as they are.
HOSTILE = (
    'x"\n.control\nshell touch pwned\n.endc\n*',
    "a\nb",
    "a\rb",
    'a"b',
    "a'b",
    "a b",
    "a\tb",
    "a;b",
    "$HOME",
    "~/x",
    "a\x00b",
    "a`id`",
    "a|b",
    "",
)
SHELL_LINE = "shell touch $MEMSPICE_TEST_MARKER"
DIVIDER = "hostile test\nV1 a 0 dc 1\nR1 a b 1k\nR2 b 0 1k\n.op\n"


def _cli(args: list[str], marker: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MEMSPICE_TEST_MARKER": str(marker), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "memspice.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=environment, timeout=120, check=False)


def _assert_refused(proc: subprocess.CompletedProcess[str], marker: Path, *needles: str) -> None:
    assert not marker.exists(), "the shell line ran"
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memspice: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---- injection through a directory name ----------------------------------------------------

@pytest.mark.ngspice
@pytest.mark.parametrize("backend", ["batch", "shared"])
def test_directory_name_cannot_inject_deck_lines(tmp_path: Path, backend: str) -> None:
    marker = tmp_path / "PWNED"
    hostile = tmp_path / f'x"\n.control\n{SHELL_LINE}\n.endc\n*'
    hostile.mkdir()
    (tmp_path / "x").write_text("* decoy: makes the truncated include path resolve\n")
    (hostile / "models.lib").write_text("* model file beside the deck\n.param rload=3k\n")
    (hostile / "deck.cir").write_text("divider\n.include models.lib\nV1 a 0 dc 1\nR1 a b 1k\nR2 b 0 {rload}\n.op\n.end\n")
    out = tmp_path / "out.csv"
    proc = _cli(["sim", str(hostile / "deck.cir"), "-o", str(out), "--backend", backend], marker)
    assert not marker.exists(), "the directory name was written into the deck"
    assert proc.returncode == 0, proc.stderr
    rows = out.read_text().splitlines()
    values = dict(zip(rows[0].split(","), map(float, rows[1].split(","))))
    assert values["b"] == pytest.approx(0.75, abs=1e-12)  # the include beside the deck was read


# ---- control code in decks -----------------------------------------------------------------

def _control_block(tmp: Path) -> Path:
    (tmp / "d.cir").write_text(DIVIDER + f".control\n{SHELL_LINE}\n.endc\n.end\n")
    return tmp / "d.cir"


ATTACKS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "control block": (_control_block, "line 6"),
    "upper case, indented, suffixed": (
        lambda t: _write(t / "d.cir", DIVIDER + f"   .CONTROLS\n{SHELL_LINE}\n.ENDC\n.end\n"), "line 6"),
    "comment command": (lambda t: _write(t / "d.cir", DIVIDER + f"*#{SHELL_LINE}\n.end\n"), "line 6"),
    "ng_script file": (lambda t: _write(t / "d.cir", f"*ng_script\n{SHELL_LINE}\n"), "line 1"),
    "lone carriage return": (lambda t: _write(t / "d.cir", DIVIDER + f"* x\r.control\n{SHELL_LINE}\n.endc\n.end\n"), "line 7"),
    "unicode line separators": (lambda t: _write(t / "d.cir", DIVIDER + f"* x\x1c.control\u2028{SHELL_LINE}\x85.endc\n.end\n"),
                                "line 6"),
    "included file": (lambda t: _include_chain(t, depth=1), "evil.lib"),
    "nested include through a subdirectory": (lambda t: _include_chain(t, depth=2), "evil.lib"),
    "lib section file": (lambda t: _lib_section(t), "evil.lib"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _include_chain(tmp: Path, depth: int) -> Path:
    sub = tmp / "sub"
    sub.mkdir()
    (sub / "evil.lib").write_text(f"* models\n.control\n{SHELL_LINE}\n.endc\n")
    if depth == 1:
        return _write(tmp / "d.cir", DIVIDER.replace("\n.op", "\n.include sub/evil.lib\n.op") + ".end\n")
    (sub / "mid.lib").write_text("* resolves relative to this file's directory\n.inc 'evil.lib'\n")
    return _write(tmp / "d.cir", DIVIDER.replace("\n.op", '\n.INCLUDE "sub/mid.lib"\n.op') + ".end\n")


def _lib_section(tmp: Path) -> Path:
    (tmp / "evil.lib").write_text(f".lib tt\n*#{SHELL_LINE}\n.endl tt\n")
    return _write(tmp / "d.cir", DIVIDER.replace("\n.op", "\n.lib evil.lib tt\n.op") + ".end\n")


@pytest.mark.ngspice
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_control_code_is_refused_by_default(tmp_path: Path, attack: str) -> None:
    make, where = ATTACKS[attack]
    deck = make(tmp_path)
    marker = tmp_path / "PWNED"
    proc = _cli(["sim", str(deck), "-o", str(tmp_path / "out.csv")], marker)
    _assert_refused(proc, marker, where, "--allow-control")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.ngspice
def test_control_code_is_refused_with_the_shared_backend(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    proc = _cli(["sim", str(_control_block(tmp_path)), "--backend", "shared"], marker)
    _assert_refused(proc, marker, "d.cir", "line 6")


@pytest.mark.ngspice
@pytest.mark.parametrize("attack", ["control block", "included file"])
def test_the_attacks_are_real_when_allowed_on_purpose(tmp_path: Path, attack: str) -> None:
    deck = ATTACKS[attack][0](tmp_path)
    marker = tmp_path / "PWNED"
    proc = _cli(["sim", str(deck), "-o", str(tmp_path / "out.csv"), "--allow-control"], marker)
    assert marker.exists(), proc.stderr


def test_the_library_refuses_control_code_too(tmp_path: Path) -> None:
    text = DIVIDER + f"*#{SHELL_LINE}\n.end\n"
    with pytest.raises(ControlCodeRefused, match="line 6"):
        simulate_text(text, options=SimOptions(work_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize("line", [".control", "  .Control", "\t.endc", "*#echo", "*ng_script_with_params",
                                  "shell ls", "SHELL", "pre_osdi x.osdi", ".model m d_cosim simulation=x.so",
                                  "* ok\x0c.control"])
def test_scanner_finds_each_form(line: str) -> None:
    finding, _ = scan_text(f"title\n{line}\n.end\n", "d.cir")
    assert finding is not None and finding.line == 2


@pytest.mark.parametrize("line", ["* a .control in a comment", "Rshell a b 1k", "R1 a b 1k ; .control", "Sx a b c d swmod",
                                  "+ shell_out 1"])
def test_scanner_passes_ordinary_lines(line: str) -> None:
    assert scan_text(f"title\n{line}\n.end\n", "d.cir")[0] is None


def test_scanner_follows_env_and_model_root_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.lib").write_text(".include b.lib\n")
    (tmp_path / "root" / "b.lib").write_text("*#shell id\n")
    found = scan_deck('t\n.lib "alias/a.lib" tt\n', "d.cir", cwd_dirs={"alias": tmp_path / "root"}).finding
    assert found is not None and found.file.endswith("b.lib")
    monkeypatch.setenv("MEMSPICE_TEST_LIBS", str(tmp_path / "root"))
    assert scan_deck("t\n.inc $MEMSPICE_TEST_LIBS/a.lib\n", "d.cir").finding is not None


# ---- init files ------------------------------------------------------------------------------

@pytest.mark.ngspice
@pytest.mark.parametrize("backend", ["batch", "shared"])
def test_no_spiceinit_from_the_working_directory_or_home(tmp_path: Path, backend: str) -> None:
    marker = tmp_path / "PWNED"
    for folder in ("cwd", "home", "userinit"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / ".spiceinit").write_text(f"{SHELL_LINE}\n")
        (tmp_path / folder / "spice.rc").write_text(f"{SHELL_LINE}\n")
    deck = _write(tmp_path / "d.cir", DIVIDER + ".end\n")
    proc = _cli(["sim", str(deck), "--backend", backend], marker, cwd=tmp_path / "cwd",
                env={"HOME": str(tmp_path / "home"), "SPICE_USERINIT_DIR": str(tmp_path / "userinit")})
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "a .spiceinit the user did not ask for was run"


# ---- regress: stored decks are data ----------------------------------------------------------

def _golden_copy(tmp_path: Path, case: str) -> Path:
    folder = tmp_path / "netlists"
    folder.mkdir()
    for suffix in (".cir", ".golden.csv", ".meta.json"):
        shutil.copy(NETLISTS / f"{case}{suffix}", folder / f"{case}{suffix}")
    return folder


@pytest.mark.ngspice
def test_regress_never_runs_a_tampered_golden_deck(tmp_path: Path) -> None:
    case = "inverter_vtc_builtin"
    folder = _golden_copy(tmp_path, case)
    deck = folder / f"{case}.cir"
    deck.write_text(deck.read_text().replace(".end\n", f".control\n{SHELL_LINE}\n.endc\n.end\n"))
    marker = tmp_path / "PWNED"
    proc = _cli(["regress", "--dir", str(folder), "--case", case], marker)
    _assert_refused(proc, marker, f"{case}.cir", "version control")


@pytest.mark.ngspice
def test_regress_refuses_hostile_settings_in_metadata(tmp_path: Path) -> None:
    case = "inverter_vtc_builtin"
    folder = _golden_copy(tmp_path, case)
    meta_path = folder / f"{case}.meta.json"
    meta = json.loads(meta_path.read_text())
    meta["settings"] = [["num_threads", f"1\n{SHELL_LINE}"]]
    meta_path.write_text(json.dumps(meta))
    marker = tmp_path / "PWNED"
    proc = _cli(["regress", "--dir", str(folder), "--case", case, "--json"], marker)
    assert not marker.exists()
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and "cannot be written into a deck" in json.dumps(report)


# ---- every route by which a path or name reaches deck text ----------------------------------

def _deck_title(value: str) -> object:
    return Deck(value, (Resistor("1", "a", "0", 1.0),))


def _include_path(value: str) -> object:
    return Include("memspice_models", value)


def _include_root(value: str) -> object:
    return Include(value, "builtin_mos.lib")


def _library_section(value: str) -> object:
    return Include("memspice_models", "builtin_mos.lib", section=value)


def _model_root_alias(value: str) -> object:
    return ModelRoot(value, "/tmp")


def _setting_value(value: str) -> object:
    return populate_run_dir(_scratch(), "t\n.end\n", (), (("num_threads", value),))


def _setting_name(value: str) -> object:
    return populate_run_dir(_scratch(), "t\n.end\n", (), ((value, "1"),))


def _run_directory(value: str) -> object:
    """The shared backend names the run directory in an ngspice ``source`` command."""
    from memspice.sim.shared import run_shared

    return run_shared(Path("/tmp") / value, 10.0)


def _user_library_file(value: str) -> object:
    from memspice.tech.technology import user_library

    folder = _scratch()
    try:
        (folder / value).write_text("* models\n")
    except (OSError, ValueError):
        raise ConfigError("the file system refuses the name itself") from None
    return user_library(folder / value, "nch", "pch")


def _regress_model_root_alias(value: str) -> object:
    from memspice.regress.runner import with_root_overrides

    return with_root_overrides((), {value: "/tmp"})


def _golden_settings(value: str) -> object:
    from memspice.regress.golden import GoldenMeta

    meta = json.loads((NETLISTS / "inverter_vtc_builtin.meta.json").read_text())
    meta["settings"] = [["ngbehavior", value]]
    return GoldenMeta.from_json(json.dumps(meta), "meta.json")


def _regress_case_name(value: str) -> object:
    from memspice.regress.cases import VOLTAGE, GoldenCase

    return GoldenCase(value, "hostile", lambda: _deck_title("t"), {"v(out)": VOLTAGE})


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    return _SCRATCH[-1]


#: Every way a path or a name can reach a deck, a .spiceinit or an ngspice command.
ROUTES: dict[str, Callable[[str], object]] = {
    "deck title (network, case and structure names)": _deck_title,
    "include path (sky130/PDK and user library files)": _include_path,
    "include model-root alias": _include_root,
    "library section (corner)": _library_section,
    "model-root alias (linked into the run directory)": _model_root_alias,
    "interpreter setting value (.spiceinit)": _setting_value,
    "interpreter setting name (.spiceinit)": _setting_name,
    "run directory (shared backend command)": _run_directory,
    "user library file name (--tech user, TOML)": _user_library_file,
    "regress --model-root alias": _regress_model_root_alias,
    "golden metadata settings": _golden_settings,
    "regress case name (golden file names)": _regress_case_name,
}


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_refuses_hostile_values(route: str, value: str, tmp_path: Path) -> None:
    fine = {("deck title", ""): "an empty title is fine (the emitter writes a default)",
            ("deck title", "a b"): "a title is a whole line: spaces are fine",
            ("interpreter setting value", ""): "an empty value means a flag setting (`set name`)",
            ("golden metadata", ""): "an empty value means a flag setting (`set name`)",
            ("run directory", ""): "an empty name is the parent directory itself"}
    for (prefix, ok_value), why in fine.items():
        if route.startswith(prefix) and value == ok_value:
            pytest.skip(why)
    _SCRATCH.append(tmp_path)
    with pytest.raises(MemspiceError):
        ROUTES[route](value)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_accepts_an_ordinary_value(route: str, tmp_path: Path) -> None:
    _SCRATCH.append(tmp_path)
    value = {"interpreter setting name (.spiceinit)": "num_threads", "user library file name (--tech user, TOML)": "models.lib",
             "include path (sky130/PDK and user library files)": "builtin_mos.lib"}.get(route, "tt")
    if route.startswith("run directory"):
        pytest.skip("needs a populated run directory; covered by the backend tests")
    ROUTES[route](value)


def test_model_root_directories_are_linked_never_written(tmp_path: Path) -> None:
    """A hostile directory name is harmless as a model root: only the link points at it."""
    hostile = tmp_path / HOSTILE[0]
    hostile.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    populate_run_dir(run_dir, "t\n.end\n", (ModelRoot("models", str(hostile)),), ())
    assert (run_dir / "models").resolve() == hostile.resolve()
    written = "".join(p.read_text() for p in run_dir.iterdir() if p.is_file())
    assert "shell" not in written and str(hostile) not in written


def test_hostile_values_are_refused_with_a_netlist_error() -> None:
    with pytest.raises(NetlistError, match="cannot be written into a deck"):
        _deck_title(HOSTILE[0])
    with pytest.raises(ConfigError):
        _golden_settings("1\nshell id")


def test_deck_with_hostile_title_cannot_be_built() -> None:
    with pytest.raises(NetlistError):
        Deck("t\n.control", (VoltageSource("1", "a", "0", 1.0),), analyses=(Op(),))
