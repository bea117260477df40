"""Progress bars for a validation run: one per mode, DC batches first, then transient batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_LABELS = {"dc": "SPICE validation (DC batches)", "transient": "SPICE validation (transient batches)"}


@contextmanager
def batch_bars(disable: bool | None = None) -> Iterator[Callable[[str, int, int], None]]:
    """Yield the ``progress(mode, done, total)`` callback that :func:`validate_network` takes.

    One bar at a time: a new one starts when the mode changes or the count starts again (the
    next draw of a Monte Carlo series).

    Args:
        disable: hide the bars; ``None`` hides them when stderr is not a terminal (tqdm's rule).
    """
    from tqdm.auto import tqdm

    current: list[Any] = []  # [mode, bar] of the bar on screen

    def progress(mode: str, done: int, total: int) -> None:
        if not current or current[0] != mode or done < current[1].n:  # next mode, or the next run of a series
            if current:
                current[1].close()
            current[:] = [mode, tqdm(total=total, desc=_LABELS.get(mode, mode), unit="batch", disable=disable,
                                     leave=False)]
        bar = current[1]
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        yield progress
    finally:
        if current:
            current[1].close()
