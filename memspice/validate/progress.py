"""Progress bars for a validation run: one per mode, DC batches first, then transient batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_LABELS = {"dc": "SPICE validation (DC batches)", "transient": "SPICE validation (transient batches)"}


@contextmanager
def batch_bars(disable: bool | None = None) -> Iterator[Callable[[str, int, int], None]]:
    """Yield the ``progress(mode, done, total)`` callback that :func:`validate_network` takes.

    Args:
        disable: hide the bars; ``None`` hides them when stderr is not a terminal (tqdm's rule).
    """
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def progress(mode: str, done: int, total: int) -> None:
        bar = bars.get(mode)
        if bar is None:
            for earlier in bars.values():
                earlier.close()
            bar = bars[mode] = tqdm(total=total, desc=_LABELS.get(mode, mode), unit="batch", disable=disable,
                                    leave=False)
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()
