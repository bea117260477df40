"""pytest plug-in (registered through the ``pytest11`` entry point).

Gives a ``ngspice`` marker and ``--memspice-ngspice required|if_available|disabled`` (every
option is prefixed ``--memspice-`` so that it cannot collide with a project's own ``--ngspice``):

- ``required`` (default): tests marked ``ngspice`` run; a missing ngspice fails them.
- ``if_available``: they are skipped when ngspice is not on PATH.
- ``disabled``: they are always skipped.

And two golden fixtures, regenerated only on purpose with ``--memspice-update-goldens``:

- ``netlist_regression``: ``netlist_regression.check(deck_or_text, golden_path)`` compares
  netlist text with a stored file after normalization (whitespace, comment lines) and fails
  with a unified diff.
- ``spice_regression``: ``spice_regression.check(deck, golden_csv, tolerances)`` simulates a
  deck and compares the named signals with a stored table (``|new − golden| ≤ abs + rel·|golden|``).

Golden paths are absolute or relative to the directory of the requesting test file, never
to the working directory. memspice's regression modules are imported only when a fixture is
used, so loading the plug-in stays light.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from memspice.circuit.deck import Deck
    from memspice.regress.golden import Tolerance
    from memspice.sim import SimOptions, SimResult

MODES = ("required", "if_available", "disabled")
NGSPICE_FLAG = "--memspice-ngspice"
UPDATE_FLAG = "--memspice-update-goldens"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memspice")
    group.addoption(
        NGSPICE_FLAG,
        choices=MODES,
        default="required",
        help="run tests marked 'ngspice': required (default), if_available, or disabled",
    )
    group.addoption(
        UPDATE_FLAG,
        action="store_true",
        default=False,
        help="regenerate the golden files used by netlist_regression and spice_regression (on purpose)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ngspice: the test runs the real ngspice simulator")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption(NGSPICE_FLAG)
    if mode == "required":
        return
    if mode == "if_available" and shutil.which("ngspice") is not None:
        return
    reason = f"ngspice tests disabled ({NGSPICE_FLAG}=disabled)" if mode == "disabled" else "ngspice not found on PATH"
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "ngspice" in item.keywords:
            item.add_marker(skip)


def _resolve(golden: str | os.PathLike[str], base: Path) -> Path:
    path = Path(golden)
    return path if path.is_absolute() else base / path


class NetlistRegression:
    """Compare netlist text with a stored golden file (see :func:`netlist_regression`)."""

    def __init__(self, base_dir: Path, update: bool) -> None:
        self.base_dir = base_dir
        self.update = update

    def check(self, netlist: Deck | str, golden: str | os.PathLike[str]) -> None:
        """Fail with a unified diff unless ``netlist`` matches ``golden`` after normalization.

        Args:
            netlist: a :class:`~memspice.circuit.deck.Deck` (emitted here) or netlist text.
            golden: golden file; absolute or relative to the test file's directory.
        """
        from memspice.io import write_text_atomic
        from memspice.netlist.emit import emit
        from memspice.regress.compare import netlist_diff

        text = netlist if isinstance(netlist, str) else emit(netlist)
        path = _resolve(golden, self.base_dir)
        if self.update:
            write_text_atomic(path, text)
            return
        if not path.is_file():
            pytest.fail(f"golden netlist {path} does not exist; create it with pytest {UPDATE_FLAG}", pytrace=False)
        diff = netlist_diff(path.read_text(), text, f"{path.name} (golden)", "generated")
        if diff:
            pytest.fail(f"netlist differs from golden {path} (normalized; regenerate on purpose with "
                        f"{UPDATE_FLAG}):\n{diff}", pytrace=False)


class SpiceRegression:
    """Simulate a deck and compare signals with a stored table (see :func:`spice_regression`)."""

    def __init__(self, base_dir: Path, update: bool, work_dir: Path) -> None:
        self.base_dir = base_dir
        self.update = update
        self.work_dir = work_dir

    def check(
        self,
        deck: Deck,
        golden: str | os.PathLike[str],
        tolerances: Mapping[str, Tolerance | float | tuple[float, float]],
        *,
        analysis: int = 0,
        options: SimOptions | None = None,
    ) -> SimResult:
        """Simulate ``deck`` and fail unless every signal in ``tolerances`` matches ``golden``.

        Args:
            deck: the deck to simulate.
            golden: CSV table (first column: sweep value or time); absolute or relative to
                the test file's directory.
            tolerances: signal → :class:`~memspice.regress.golden.Tolerance`, an absolute
                tolerance (signal unit), or ``(absolute, relative)``.
            analysis: which analysis (plot) to compare.
            options: simulation options (default: failed run directories kept under the
                test's ``tmp_path``).

        Returns:
            The simulation result, for further assertions.
        """
        from memspice.regress.compare import compare_signals, result_table
        from memspice.regress.golden import read_table, write_table
        from memspice.io import write_atomic
        from memspice.sim import SimOptions, simulate

        limits = {name: _tolerance(spec, name) for name, spec in tolerances.items()}
        if not limits:
            raise ValueError("spice_regression.check needs at least one signal tolerance")
        result = simulate(deck, options or SimOptions(work_dir=self.work_dir))
        if analysis >= len(result.plots):
            pytest.fail(f"the deck produced {len(result.plots)} analyses; asked for index {analysis}", pytrace=False)
        vectors = result.plots[analysis].vectors
        path = _resolve(golden, self.base_dir)
        if self.update:
            table = result_table(vectors, next(iter(vectors)), list(limits))
            write_atomic(path, lambda tmp: write_table(tmp, table))
            return result
        if not path.is_file():
            pytest.fail(f"golden table {path} does not exist; create it with pytest {UPDATE_FLAG}", pytrace=False)
        table = read_table(path)
        checks = compare_signals(table, str(table.columns[0]), vectors, limits)
        failed = [c for c in checks if not c.passed]
        if failed:
            lines = [
                f"  {c.signal}: {c.note}" if c.note else
                f"  {c.signal}: max deviation {c.max_deviation:.3e} at {table.columns[0]}={c.at_x:.6g} "
                f"exceeds {c.tolerance.describe()} (x{c.worst_ratio:.1f})"
                for c in failed
            ]
            pytest.fail(f"signals drifted from golden {path}:\n" + "\n".join(lines), pytrace=False)
        return result


def _tolerance(spec: object, name: str) -> Tolerance:
    from memspice.regress.golden import Tolerance

    if isinstance(spec, Tolerance):
        return spec
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Tolerance(float(spec))
    if isinstance(spec, tuple) and len(spec) == 2:
        return Tolerance(float(spec[0]), float(spec[1]))
    raise TypeError(f"tolerance of {name!r} must be a Tolerance, a number or (abs, rel), got {spec!r}")


@pytest.fixture
def netlist_regression(request: pytest.FixtureRequest) -> NetlistRegression:
    """Text goldens: ``netlist_regression.check(deck_or_text, "golden.cir")``."""
    return NetlistRegression(Path(request.path).parent, bool(request.config.getoption(UPDATE_FLAG)))


@pytest.fixture
def spice_regression(request: pytest.FixtureRequest, tmp_path: Path) -> SpiceRegression:
    """Signal goldens: ``spice_regression.check(deck, "golden.csv", {"o1": 1e-4})``."""
    return SpiceRegression(Path(request.path).parent, bool(request.config.getoption(UPDATE_FLAG)), tmp_path)
