"""Atomic file writes: every artifact is written to a temp file and renamed into place.

A failed write leaves the destination as it was and no temp file behind; the error is one
:class:`~memspice.errors.ConfigError` naming the path. New files get the mode the umask gives
(``0666 & ~umask``), replaced files keep theirs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from memspice.errors import ConfigError

Writer = Callable[[Path], None]


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_path(path: Path, inputs: Iterable[Path] = ()) -> Path:
    """Refuse an output path that cannot be written or would overwrite an input.

    Raises:
        ConfigError: ``path`` is a directory, is one of ``inputs``, or lies under a
            non-directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"output path {path} is a directory; give a file name")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise ConfigError(f"output path {path} is an input ({source}); refusing to overwrite it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"cannot write {path}: {parent} is not a directory")
    return path


def write_many_atomic(items: Sequence[tuple[Path, Writer]], inputs: Iterable[Path] = ()) -> list[Path]:
    """Write several files all or nothing: every temp file first, then every rename.

    Raises:
        ConfigError: a path is refused by :func:`check_output_path` or cannot be written.
    """
    inputs = list(inputs)
    paths = [check_output_path(Path(p), inputs) for p, _ in items]
    staged: list[tuple[Path, Path]] = []
    umask = _read_umask()
    current = paths[0] if paths else Path()
    try:
        for path, (_, writer) in zip(paths, items):
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            staged.append((Path(tmp), path))
            writer(Path(tmp))
            try:
                mode = path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot write {current}: {reason}") from exc
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return paths


def write_atomic(path: Path, writer: Writer, inputs: Iterable[Path] = ()) -> Path:
    """Call ``writer(tmp_path)`` then rename ``tmp_path`` onto ``path``.

    The temp file lives in the same directory so the rename is atomic; on any error it is
    removed and ``path`` keeps its previous content.

    Raises:
        ConfigError: ``path`` is a directory or one of ``inputs``, or cannot be written.
    """
    return write_many_atomic([(Path(path), writer)], inputs)[0]


def write_text_atomic(path: Path, text: str, inputs: Iterable[Path] = ()) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), inputs)


def json_ready(value: object) -> object:
    """``value`` with NumPy scalars made Python numbers, tuples made lists, dict keys made strings
    and non-finite floats made ``None``, so :func:`json.dumps` writes strict JSON."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
