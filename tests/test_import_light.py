"""`import memspice` stays light: no PySpice, matplotlib or dask until a feature needs them.

The public API (`memspice.__all__`) is imported lazily, name by name, and every name is
documented in the package docstring.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import memspice


def test_import_memspice_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, memspice, memspice.cli, memspice.sim, memspice.tech, memspice.circuit.builders\n"
        "heavy = [m for m in ('PySpice', 'matplotlib', 'dask', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve_lazily_without_heavy_packages() -> None:
    code = (
        "import sys, memspice\n"
        "assert 'memspice.validate.api' not in sys.modules and 'memspice.api' not in sys.modules\n"
        "values = [getattr(memspice, name) for name in memspice.__all__]\n"
        "heavy = [m for m in ('PySpice', 'matplotlib', 'dask', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_is_listed_and_documented() -> None:
    assert sorted(dir(memspice)) == sorted(memspice.__all__)
    doc = memspice.__doc__ or ""
    for name in memspice.__all__:
        if not name.startswith("__"):
            assert f"`{name}" in doc, f"{name} is not described in memspice's docstring"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        memspice.no_such_name  # noqa: B018


def test_train_stays_callable_after_its_subpackage_is_imported() -> None:
    import memspice.train.trainer  # rebinds memspice.train to the subpackage

    assert callable(memspice.train)
    assert memspice.train.trainer.TrainConfig is memspice.TrainConfig
    from memspice import train

    assert callable(train)
