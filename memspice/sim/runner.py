"""The one place that starts ngspice: write deck → run backend → parse, in a run directory.

Every run follows the same fixed sequence in its own directory (``deck.cir``, ``.spiceinit``,
``out.raw``, ``ngspice.log``, model roots linked by alias); the directory is removed in
``finally`` unless the run failed (it is kept and named in the error) or ``keep='always'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from memspice.circuit.deck import Deck, ModelRoot
from memspice.errors import SimError, SimFailed, SimTimeout, SimulatorNotFound
from memspice.netlist.emit import emit
from memspice.sim.batch import run_batch
from memspice.sim.deckcheck import refuse_control_code
from memspice.sim.options import SimOptions
from memspice.sim.rawfile import Plot
from memspice.sim.rundir import make_run_dir, populate_run_dir, remove_run_dir

Runner = Callable[[Path, float, SimOptions], tuple[list[Plot], str]]


def _run_batch(run_dir: Path, timeout_s: float, options: SimOptions) -> tuple[list[Plot], str]:
    return run_batch(run_dir, timeout_s, options.ngspice)


def _run_shared(run_dir: Path, timeout_s: float, options: SimOptions) -> tuple[list[Plot], str]:
    from memspice.sim.shared import run_shared  # PySpice is imported only when this backend runs

    return run_shared(run_dir, timeout_s)


#: Backends by the name ``SimOptions.backend`` takes; each runs ``deck.cir`` in a run directory.
RUNNERS: dict[str, Runner] = {"batch": _run_batch, "shared": _run_shared}


@dataclass(frozen=True)
class SimResult:
    """Results of one run.

    Attributes:
        plots: one :class:`Plot` per analysis, in deck order.
        output: everything ngspice printed.
        elapsed_s: wall-clock time of the run (s).
        run_dir: the kept run directory, or ``None`` when it was removed.
    """

    plots: list[Plot]
    output: str
    elapsed_s: float
    run_dir: Path | None

    def plot(self, index: int = 0) -> Plot:
        """The ``index``-th plot (deck order)."""
        return self.plots[index]

    def frame(self, index: int = 0) -> pd.DataFrame:
        """The ``index``-th plot as a DataFrame, one column per vector."""
        plot = self.plots[index]
        return pd.DataFrame({name: values for name, values in plot.vectors.items()})


def simulate(deck: Deck, options: SimOptions = SimOptions()) -> SimResult:
    """Emit and simulate ``deck``.

    Raises:
        SimulatorNotFound: ngspice (or libngspice for ``shared``) is missing.
        SimTimeout: the run outlived ``options.timeout_s``.
        SimFailed: ngspice reported an error or wrote no/short results.
    """
    return simulate_text(emit(deck), deck.model_roots, deck.settings, options)


def simulate_text(
    deck_text: str,
    model_roots: tuple[ModelRoot, ...] = (),
    settings: tuple[tuple[str, str], ...] = (),
    options: SimOptions = SimOptions(),
) -> SimResult:
    """Simulate netlist text (used for decks read from files and for goldens).

    Unless ``options.allow_control``, the deck and every file it includes are checked for
    ngspice control code first (:mod:`memspice.sim.deckcheck`); nothing runs if any is found.

    Raises:
        ControlCodeRefused: the deck or an included file carries control code.
        SimulatorNotFound, SimTimeout, SimFailed: as :func:`simulate`.
    """
    run_dir = make_run_dir(options.work_dir)
    keep = options.keep == "always"
    start = time.monotonic()
    try:
        populate_run_dir(run_dir, deck_text, model_roots, settings)
        if not options.allow_control:
            refuse_control_code(deck_text, "deck text", deck_dir=run_dir, cwd_dirs={".": run_dir})
        plots, output = RUNNERS[options.backend](run_dir, options.timeout_s, options)
    except SimulatorNotFound:
        raise  # nothing ran: the run directory would only be litter
    except SimError as exc:
        keep = keep or options.keep == "on_failure"
        if not keep:
            raise _without_run_dir(exc) from None  # the message must not name a removed directory
        raise
    finally:
        if not keep:
            remove_run_dir(run_dir)
    return SimResult(plots, output, time.monotonic() - start, run_dir if keep else None)


def _without_run_dir(exc: SimError) -> SimError:
    """The same failure, naming no run directory (used when that directory is removed)."""
    if isinstance(exc, SimTimeout) and exc.run_dir is not None:
        return SimTimeout(exc.seconds)
    if isinstance(exc, SimFailed) and exc.run_dir is not None:
        return SimFailed(exc.error_line, None, exc.stdout, exc.stderr)
    return exc


def _simulate_one(args: tuple[Deck, SimOptions]) -> SimResult | SimError:
    deck, options = args
    try:
        return simulate(deck, options)
    except SimError as exc:
        return exc


def simulate_many(
    decks: Sequence[Deck],
    options: SimOptions = SimOptions(),
    workers: int | None = None,
) -> list[SimResult | SimError]:
    """Simulate many decks in parallel ngspice processes (batch backend).

    A failing deck does not stop the others: its slot holds the :class:`SimError`.

    Args:
        workers: worker processes (default: CPU count).
    """
    if options.backend != "batch":
        return [_simulate_one((deck, options)) for deck in decks]
    import os

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(decks) or 1))
    if n_workers == 1:
        return [_simulate_one((deck, options)) for deck in decks]
    from concurrent.futures import ThreadPoolExecutor

    # ngspice runs in its own process already; threads only wait on it, so a thread pool
    # gives process-level parallelism without pickling decks.
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(_simulate_one, [(deck, options) for deck in decks]))
