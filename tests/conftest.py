"""Shared test set-up: load the memspice pytest plug-in when the package is not installed."""

from __future__ import annotations

from importlib.metadata import entry_points


def _plugin_installed() -> bool:
    return any(ep.value == "memspice.pytest_plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _plugin_installed() else ["memspice.pytest_plugin"]
