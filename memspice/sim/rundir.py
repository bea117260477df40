"""Run directories: one per run, fixed file names, model roots linked by alias."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from memspice.circuit.deck import ModelRoot
from memspice.errors import SimError

DECK_NAME = "deck.cir"
RAW_NAME = "out.raw"
LOG_NAME = "ngspice.log"
SPICEINIT_NAME = ".spiceinit"


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
    """Write the deck, the ``.spiceinit`` and the model-root links; return the deck path."""
    for root in model_roots:
        target = Path(root.directory)
        if not target.is_dir():
            raise SimError(f"model root {root.alias!r} points to a missing directory: {target}")
        os.symlink(target, run_dir / root.alias, target_is_directory=True)
    if settings:
        lines = [f"set {k}={v}" if v else f"set {k}" for k, v in settings]
        (run_dir / SPICEINIT_NAME).write_text("\n".join(lines) + "\n")
    deck_path = run_dir / DECK_NAME
    deck_path.write_text(deck_text)
    return deck_path


def remove_run_dir(run_dir: Path) -> None:
    """Delete a run directory (links are removed, never followed)."""
    shutil.rmtree(run_dir, ignore_errors=True)
