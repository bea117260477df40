"""The reference documentation builds from the docstrings with ``mkdocs build --strict``.

A docstring that mkdocstrings cannot parse, a page missing from ``mkdocs.yml`` or a broken
link between pages fails the build, so the docs cannot rot silently.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("mkdocstrings_handlers.python",
                        reason="mkdocstrings[python] is not installed (pip install -e '.[dev]')")
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "WARNING" not in out.stderr, out.stderr[-4000:]
    page = (site / "api" / "memspice" / "index.html").read_text(encoding="utf-8")
    # The package page documents the public entry points from their docstrings.
    for name in ("validate_network", "calibrate", "memspice.api.train", "default_train_config"):
        assert name in page
    validation = (site / "api" / "validation" / "index.html").read_text(encoding="utf-8")
    assert "Simulate a trained network on samples in SPICE" in validation
    # Sphinx roles in docstrings are shown as plain code, not as ":func:" text.
    assert ":func:" not in page and ":class:" not in validation


README = ROOT / "README.md"


def test_readme_is_documentation_not_a_diary() -> None:
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    for section in ("Install", "Quickstart", "Concepts", "Commands", "Python API", "Benchmarks",
                    "More documentation", "Citations", "License"):
        assert section in headings, f"README lacks a '## {section}' section"
    body = text.split("\n## Benchmarks", 1)[0]
    assert len(body.split()) < 1600, "README grew past ~1,500 words before the reference sections"
    # History belongs in CHANGELOG.md, tracker numbers and machine paths nowhere.
    assert not re.search(r"\bre-run after\b|\bcommit [0-9a-f]{7,40}\b", text, flags=re.IGNORECASE)
    assert not re.search(r"\bissue #?\d+", text, flags=re.IGNORECASE)
    assert "/work/" not in text and "../shared" not in text


def test_readme_local_links_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "expected links to LICENSE, CHANGELOG.md and docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
