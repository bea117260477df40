"""Files a user can trust: atomic writes with the user's permissions, strict JSON.

:func:`write_atomic` (from :mod:`memspice.io`) writes to a temp file in the destination
directory and renames it into place, so a failure never leaves a half-written file; unlike a
bare ``mkstemp`` file (mode 0600) the result gets the mode ``open()`` would give it (``0666``
less the umask), so colleagues can read reports. :func:`json_safe` turns NaN and infinities into ``null``, which
every strict JSON reader accepts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memspice.io import _read_umask, write_atomic, write_text_atomic


# One atomic writer for the whole toolkit (memspice.io); re-exported here for the modules that
# also need the checks and strict JSON below.
__all__ = ["check_output_dir", "check_output_file", "current_umask", "dumps_strict", "json_safe",
           "read_document", "write_atomic", "write_text_atomic"]
current_umask = _read_umask


def json_safe(value: Any) -> Any:
    """``value`` with NaN/±inf floats replaced by None and NumPy scalars/arrays made plain."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)``; never writes NaN or Infinity."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def _probe_dir(directory: Path, what: str) -> None:
    """Create ``directory`` if needed, write and delete a probe file, remove what was created."""
    from memspice.errors import ConfigError

    created: list[Path] = []
    missing = [directory, *directory.parents]
    missing = [p for p in missing if not p.exists()]
    try:
        for parent in reversed(missing):
            parent.mkdir()
            created.append(parent)
        if not directory.is_dir():
            raise ConfigError(f"{what} {directory} is not a directory")
        fd, probe = tempfile.mkstemp(prefix=".memspice-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise ConfigError(f"{what} {directory} cannot be created: a file is in the way") from None
    except NotADirectoryError:
        raise ConfigError(f"{what} {directory} cannot be created: part of the path is a file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {directory} is not writable ({exc.strerror or exc})") from None
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                pass


def _system_path(path: str) -> bool:
    """True under /proc or /dev (device nodes, process files), except the tmpfs /dev/shm."""
    return path.startswith("/proc/") or (path.startswith("/dev/") and not path.startswith("/dev/shm/"))


def check_output_dir(path: Path, what: str = "output directory") -> Path:
    """Make sure ``path`` is, or can become, a writable directory; leave nothing behind.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or cannot be written.
    """
    from memspice.errors import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a directory")
    if _system_path(os.path.realpath(path)):
        raise ConfigError(f"{what} {path} lies in a system directory of devices or processes")
    _probe_dir(path, what)
    return path


def check_output_file(path: Path, what: str = "output file") -> Path:
    """Make sure a file can be written at ``path`` (not a directory, writable parent).

    Raises:
        ConfigError: ``path`` is a directory, or its directory cannot be written.
    """
    from memspice.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name")
    special = [p for p in (os.path.abspath(path), os.path.realpath(path)) if _system_path(p)]
    if special or (path.exists() and not path.is_file()):
        raise ConfigError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file name: "
                          "memspice writes files atomically, by renaming a finished file into place")
    _probe_dir(path.parent if str(path.parent) else Path("."), f"the directory of {what}")
    return path


#: Largest text document memspice reads whole (a calibration or network description is < 10 MB).
MAX_DOCUMENT_BYTES = 256 * 2**20


def read_document(path: Path, what: str, limit: int | None = None) -> str:
    """The UTF-8 text of a JSON/TOML document, refusing files too large to be one.

    Raises:
        FileNotFoundError, IsADirectoryError, UnicodeDecodeError, OSError: as ``Path.read_text``.
        ConfigError: the file is larger than ``limit`` bytes (default :data:`MAX_DOCUMENT_BYTES`).
    """
    from memspice.errors import ConfigError

    path = Path(path)
    limit = MAX_DOCUMENT_BYTES if limit is None else limit
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit // 2**20} MB; it cannot be a memspice document")
    return data.decode("utf-8")
