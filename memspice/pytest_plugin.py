"""pytest plug-in (registered through the ``pytest11`` entry point).

Gives a ``ngspice`` marker and ``--ngspice required|if_available|disabled``:

- ``required`` (default): tests marked ``ngspice`` run; a missing ngspice fails them.
- ``if_available``: they are skipped when ngspice is not on PATH.
- ``disabled``: they are always skipped.
"""

from __future__ import annotations

import shutil

import pytest

MODES = ("required", "if_available", "disabled")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memspice")
    group.addoption(
        "--ngspice",
        choices=MODES,
        default="required",
        help="run tests marked 'ngspice': required (default), if_available, or disabled",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ngspice: the test runs the real ngspice simulator")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--ngspice")
    if mode == "required":
        return
    if mode == "if_available" and shutil.which("ngspice") is not None:
        return
    reason = "ngspice tests disabled (--ngspice=disabled)" if mode == "disabled" else "ngspice not found on PATH"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "ngspice" in item.keywords:
            item.add_marker(skip)
