"""Run directories: one per run, fixed file names, model roots linked by alias."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from memspice.circuit.deck import ALLOWED_SETTINGS, ModelRoot
from memspice.circuit.values import check_deck_text
from memspice.errors import NetlistError, SimError

DECK_NAME = "deck.cir"
RAW_NAME = "out.raw"
LOG_NAME = "ngspice.log"
SPICEINIT_NAME = ".spiceinit"
#: Simulator settings that must be circuit options (KLU): a second ngspice input file after the deck.
SIM_OPTIONS_NAME = "simulator.cir"
#: Settings every run gets unless the deck sets them. Debian's ngspice evaluates BSIM devices
#: with OpenMP threads; with one ngspice process per core those threads oversubscribe the
#: cores and spin-wait. Measured on 2 cores, 8 decks of 250 samples (64-32-10): two processes
#: at a time took 43 s with ngspice's default threads and 2.2 s with one thread each; one
#: process alone gains nothing from the threads (3.8 s either way).
DEFAULT_SETTINGS: tuple[tuple[str, str], ...] = (("num_threads", "1"),)


def make_run_dir(work_dir: Path | None, prefix: str = "run") -> Path:
    """Create a fresh, uniquely named run directory."""
    parent = None if work_dir is None else Path(work_dir)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"memspice-{prefix}-", dir=parent))


def populate_run_dir(
    run_dir: Path,
    deck_text: str,
    model_roots: tuple[ModelRoot, ...],
    settings: tuple[tuple[str, str], ...],
) -> Path:
    """Write the deck, the ``.spiceinit`` and the model-root links; return the deck path.

    Model-root directories are linked, never written into text, so any directory name is
    safe; aliases and settings pass :func:`~memspice.circuit.values.check_deck_text`, and only
    settings memspice knows reach the ``.spiceinit``.

    Raises:
        NetlistError: an alias or setting that cannot be written safely.
        SimError: a model root points to a missing directory.
    """
    for root in model_roots:
        alias = check_deck_text(root.alias, "model root alias")
        if "/" in alias or alias in (".", ".."):
            raise NetlistError(f"model root alias {alias!r} must be a plain name")
        target = Path(root.directory)
        if not target.is_dir():
            raise SimError(f"model root {root.alias!r} points to a missing directory: {target}")
        os.symlink(target, run_dir / alias, target_is_directory=True)
    given = {key for key, _ in settings}
    known = ALLOWED_SETTINGS | {key for key, _ in DEFAULT_SETTINGS}
    for key, value in settings:
        check_deck_text(key, "interpreter setting")
        if key not in known:
            raise NetlistError(f"interpreter setting {key!r} is not one memspice allows ({', '.join(sorted(known))})")
        if value:
            check_deck_text(value, f"value of setting {key}")
    merged = (*settings, *(item for item in DEFAULT_SETTINGS if item[0] not in given))
    lines = [f"set {k}={v}" if v else f"set {k}" for k, v in merged]
    (run_dir / SPICEINIT_NAME).write_text("\n".join(lines) + "\n")
    deck_path = run_dir / DECK_NAME
    deck_path.write_text(deck_text)
    return deck_path


def write_simulator_options(run_dir: Path, lines: tuple[str, ...]) -> Path:
    """Write the simulator's own ``.options`` lines (not the deck's) into the run directory.

    ngspice reads all its input files as one deck, so these apply to ``deck.cir`` without
    changing its text. A leading blank line keeps them apart from a deck without a final newline.
    """
    path = run_dir / SIM_OPTIONS_NAME
    path.write_text("\n" + "\n".join(lines) + "\n")
    return path


def remove_run_dir(run_dir: Path) -> None:
    """Delete a run directory (links are removed, never followed)."""
    shutil.rmtree(run_dir, ignore_errors=True)
