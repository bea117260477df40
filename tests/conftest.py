"""Shared test set-up: load the memspice pytest plug-in when the package is not installed."""

from __future__ import annotations

from importlib.metadata import entry_points


def _plugin_installed() -> bool:
    return any(ep.value == "memspice.pytest_plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _plugin_installed() else ["memspice.pytest_plugin"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_user_data_cache(tmp_path_factory, monkeypatch) -> None:
    """Tests never read the user's data cache or MNIST folder: results must not depend on the machine."""
    monkeypatch.setenv("MEMSPICE_DATA", str(tmp_path_factory.mktemp("memspice-data")))
    monkeypatch.delenv("MEMSPICE_MNIST_DIR", raising=False)
