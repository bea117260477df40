"""`import memspice` stays light: no PySpice, matplotlib or dask until a feature needs them."""

from __future__ import annotations

import subprocess
import sys


def test_import_memspice_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, memspice, memspice.cli, memspice.sim, memspice.tech, memspice.circuit.builders\n"
        "heavy = [m for m in ('PySpice', 'matplotlib', 'dask', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
