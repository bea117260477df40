"""Packaging: optional packages are extras, and each one missing is a clear message, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memspice.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}


def test_heavy_optional_packages_are_extras_and_dev_pulls_them():
    core = _names(PROJECT["project"]["dependencies"])
    extras = PROJECT["project"]["optional-dependencies"]
    assert "pyspice" not in core and "markdown" not in core
    assert _names(extras["shared"]) == {"pyspice"} and _names(extras["html"]) == {"markdown"}
    assert all(extras.values()), "an empty extra"
    dev = " ".join(extras["dev"])
    for extra in ("shared", "html", "parquet", "distributed"):
        assert extra in dev, f"the dev extra (what the tests install) lacks {extra}"


def test_every_package_data_pattern_matches_a_file():
    for package, patterns in PROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), f"{package}/{pattern} matches nothing"


def test_shared_backend_without_pyspice_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from memspice.sim import shared

    monkeypatch.setattr(shared, "_INSTANCE", None)
    monkeypatch.setitem(sys.modules, "PySpice", None)
    deck = tmp_path / "inv.cir"
    assert main(["netlist", "inverter", "-o", str(deck)]) == 0
    capsys.readouterr()
    assert main(["sim", str(deck), "--backend", "shared", "-o", str(tmp_path / "inv.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error: ") and err.count("\n") == 1
    assert "pip install 'memspice[shared]'" in err and "--backend batch" in err
    assert not (tmp_path / "inv.csv").exists()


def test_html_report_without_markdown_says_how_to_get_it(tmp_path, monkeypatch):
    from memspice.pipeline import report

    monkeypatch.setitem(sys.modules, "markdown", None)
    paths = report.write_report(tmp_path, {"train": {"elapsed_s": 1.0, "note": "<b>"}}, "[training]\nepochs = 1\n")
    assert "| train | 1.0 |" in paths["report_md"].read_text()
    page = paths["report_html"].read_text()
    assert "pip install 'memspice[html]'" in page and "| train | 1.0 |" in page
    assert "&lt;b&gt;" in page and "<b>" not in page


def test_parquet_without_pyarrow_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "char"
    assert main(["characterize", "--format", "parquet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memspice: error: ") and "pip install 'memspice[parquet]'" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", [["train"], ["validate", "net"], ["run"], ["data", "mnist"], ["loop", "net"],
                                     ["hybrid", "net"], ["corners"]])
def test_quiet_is_spelled_alike_everywhere(command):
    from memspice.cli import build_parser

    parser = build_parser()
    for flag in ("-q", "--quiet"):
        assert parser.parse_args([*command, flag]).quiet is True


def test_plugin_options_do_not_collide_with_a_projects_own(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('''
def pytest_addoption(parser):
    parser.addoption("--ngspice", default="ngspice", help="the project's own simulator path")
''')
    pytester.makepyfile(test_mine='''
import pytest

def test_own_option(request):
    assert request.config.getoption("--ngspice") == "/opt/ngspice"

@pytest.mark.ngspice
def test_marked():
    pass
''')
    result = pytester.runpytest_inprocess("-p", "memspice.pytest_plugin", "-p", "no:cacheprovider",
                                          "--ngspice", "/opt/ngspice", "--memspice-ngspice", "disabled")
    result.assert_outcomes(passed=1, skipped=1)
