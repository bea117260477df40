"""A per-user cache of the MNIST IDX files: where it is, what it holds, how it is filled.

The cache lives in ``$MEMSPICE_DATA/mnist`` when ``MEMSPICE_DATA`` is set, else in the
platform's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches``
on macOS, ``%LOCALAPPDATA%`` on Windows) under ``memspice/mnist``. Every file is checked against
a pinned SHA-256 before it enters the cache, and it enters atomically (a temporary file next to
its final name, verified, then renamed), so an interrupted or corrupt transfer leaves nothing.

A file counts as the right one when its *decompressed* bytes match the pinned digest, so a
local copy that was re-compressed (or never compressed) is accepted too; downloads are also
checked against the digest of the published ``.gz`` file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from memspice.errors import DataError

#: Environment variable naming the root of memspice's data cache.
DATA_ENV = "MEMSPICE_DATA"
#: Environment variable naming an MNIST folder that overrides the cache.
MNIST_ENV = "MEMSPICE_MNIST_DIR"

#: Mirrors of the original files (yann.lecun.com no longer serves them reliably), tried in order.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


@dataclass(frozen=True, slots=True)
class IdxFile:
    """One published MNIST file.

    Attributes:
        name: file name without ``.gz`` (``t10k-images-idx3-ubyte``).
        gz_bytes: size of the published ``.gz`` file, bytes.
        gz_sha256: SHA-256 of the published ``.gz`` file.
        raw_sha256: SHA-256 of the decompressed IDX bytes.
    """

    name: str
    gz_bytes: int
    gz_sha256: str
    raw_sha256: str

    @property
    def split(self) -> str:
        """``train`` or ``t10k``."""
        return self.name.split("-", 1)[0]


#: The four standard files, with the digests every public mirror serves.
MNIST_FILES: tuple[IdxFile, ...] = (
    IdxFile("train-images-idx3-ubyte", 9_912_422,
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    IdxFile("train-labels-idx1-ubyte", 28_881,
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    IdxFile("t10k-images-idx3-ubyte", 1_648_877,
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    IdxFile("t10k-labels-idx1-ubyte", 4_542,
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
)

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
#: Largest download accepted, bytes (the biggest MNIST file is 9.9 MB).
_MAX_DOWNLOAD = 64 << 20


def cache_root() -> Path:
    """Root of memspice's data cache (``$MEMSPICE_DATA`` or the platform cache directory)."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "memspice"


def mnist_cache_dir() -> Path:
    """The folder the MNIST files are cached in."""
    return cache_root() / "mnist"


def present_file(directory: Path, idx: IdxFile) -> Path | None:
    """The copy of ``idx`` in ``directory`` (``NAME`` or ``NAME.gz``), or ``None``."""
    for name in (idx.name, f"{idx.name}.gz"):
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    return None


def _raw_digest(path: Path) -> str:
    """SHA-256 of the IDX bytes in ``path``, decompressing it if it is gzip."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is a corrupt gzip file: {exc}") from None
    return digest.hexdigest()


def verify_file(path: Path, idx: IdxFile) -> None:
    """Check that ``path`` holds the published ``idx`` (compressed or not).

    Raises:
        DataError: unreadable, corrupt, or different content.
    """
    try:
        digest = _raw_digest(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if digest != idx.raw_sha256:
        raise DataError(
            f"{path} is not the published {idx.name} (SHA-256 of its IDX bytes is {digest[:16]}…, "
            f"expected {idx.raw_sha256[:16]}…)"
        )


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """Which MNIST files a folder holds.

    Attributes:
        directory: the folder.
        present: names of the files found (without ``.gz``).
        missing: names of the files not found.
    """

    directory: Path
    present: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits (``t10k``, ``train``) whose images and labels are both present."""
        return tuple(
            split for split in ("t10k", "train")
            if all(f.name in self.present for f in MNIST_FILES if f.split == split)
        )


def status(directory: Path | None = None) -> CacheStatus:
    """What ``directory`` (default: the cache) holds, by file name only (nothing is read)."""
    directory = Path(directory) if directory is not None else mnist_cache_dir()
    found = [f.name for f in MNIST_FILES if present_file(directory, f)]
    return CacheStatus(directory, tuple(found), tuple(f.name for f in MNIST_FILES if f.name not in found))


def _temporary(final: Path) -> Path:
    # A unique name next to the destination, created with open(..., "xb") so the umask applies.
    return final.with_name(f".{final.name}.{os.getpid()}.part")


def _install(temporary: Path, final: Path, idx: IdxFile) -> None:
    """Verify ``temporary`` and rename it over ``final``, removing any other copy of ``idx``."""
    verify_file(temporary, idx)
    for stale in (final.with_name(idx.name), final.with_name(f"{idx.name}.gz")):
        if stale != final and stale.exists():
            stale.unlink()
    os.replace(temporary, final)


def _prepare(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data cache {directory}: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK):
        raise DataError(f"the data cache {directory} is not writable (set {DATA_ENV} to another folder)")
    return directory


def import_from(source: Path, directory: Path | None = None,
                report: Callable[[str], None] = lambda line: None) -> CacheStatus:
    """Copy the MNIST files found in ``source`` into the cache after checking each one.

    Files already cached are kept; files ``source`` lacks are left missing (the returned
    status names them).

    Raises:
        DataError: ``source`` is not a folder, holds none of the files, or holds a wrong one.
    """
    source = Path(source).expanduser()
    if not source.is_dir():
        raise DataError(f"--from {source}: not a folder")
    found = [(f, present_file(source, f)) for f in MNIST_FILES]
    found = [(f, p) for f, p in found if p is not None]
    if not found:
        names = ", ".join(f"{f.name}[.gz]" for f in MNIST_FILES)
        raise DataError(f"--from {source}: none of the MNIST files is there (looked for {names})")
    for idx, path in found:
        verify_file(path, idx)
    directory = _prepare(Path(directory) if directory is not None else mnist_cache_dir())
    for idx, path in found:
        final = directory / path.name
        if final.exists() and final.resolve() == path.resolve():
            continue
        temporary = _temporary(final)
        try:
            with open(path, "rb") as src, open(temporary, "xb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            _install(temporary, final, idx)
        except OSError as exc:
            raise DataError(f"cannot copy {path} into {directory}: {exc.strerror or exc}") from None
        finally:
            temporary.unlink(missing_ok=True)
        report(f"copied {path.name} (checksum ok)")
    return status(directory)


def _fetch(url: str, destination: Path, idx: IdxFile, timeout_s: float) -> None:
    """Stream ``url`` into ``destination`` while hashing it; check size and digest."""
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(destination, "xb") as out:
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > _MAX_DOWNLOAD:
                raise DataError(f"{url} is larger than any MNIST file ({received} bytes so far)")
            digest.update(chunk)
            out.write(chunk)
    if received != idx.gz_bytes:
        raise DataError(f"{url}: download incomplete or wrong ({received} of {idx.gz_bytes} bytes)")
    if digest.hexdigest() != idx.gz_sha256:
        raise DataError(f"{url}: checksum mismatch (SHA-256 {digest.hexdigest()[:16]}…, "
                        f"expected {idx.gz_sha256[:16]}…)")


def download(directory: Path | None = None, mirrors: Iterable[str] = MNIST_MIRRORS,
             splits: Iterable[str] = ("t10k", "train"), timeout_s: float = 60.0,
             report: Callable[[str], None] = lambda line: None) -> CacheStatus:
    """Download the MNIST files of ``splits`` that the cache lacks, verifying each.

    Each mirror is tried in turn; a file enters the cache only when its size and SHA-256 match.

    Raises:
        DataError: every mirror failed for some file (the last failure is named).
    """
    mirrors = tuple(m if m.endswith("/") else m + "/" for m in mirrors)
    if not mirrors:
        raise DataError("no download address given")
    directory = _prepare(Path(directory) if directory is not None else mnist_cache_dir())
    wanted = [f for f in MNIST_FILES if f.split in tuple(splits)]
    for idx in wanted:
        if present_file(directory, idx):
            continue
        final = directory / f"{idx.name}.gz"
        failure = ""
        for mirror in mirrors:
            url = f"{mirror}{idx.name}.gz"
            temporary = _temporary(final)
            try:
                _fetch(url, temporary, idx, timeout_s)
                _install(temporary, final, idx)
                report(f"downloaded {url} (checksum ok)")
                break
            except DataError as exc:
                failure = str(exc)
            except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                failure = f"cannot download {url}: {reason}"
            finally:
                temporary.unlink(missing_ok=True)
        else:
            raise DataError(failure)
    return status(directory)


def resolve_mnist_dir(explicit: Path | str | None = None) -> Path:
    """The MNIST folder to read: ``explicit``, else ``$MEMSPICE_MNIST_DIR``, else the cache.

    Raises:
        DataError: nothing explicit was given and the cache holds no complete split.
    """
    if explicit:
        return Path(explicit).expanduser()
    override = os.environ.get(MNIST_ENV)
    if override:
        return Path(override).expanduser()
    cached = status()
    if not cached.splits:
        raise DataError(
            f"no MNIST files in the cache {cached.directory}: run `memspice data mnist` to download "
            f"them, or `memspice data mnist --from DIR` to use a local copy "
            f"(or give the folder with --mnist-dir / ${MNIST_ENV})"
        )
    return cached.directory


def require_mnist_dir(explicit: Path | str | None = None) -> Path:
    """:func:`resolve_mnist_dir`, also checking by file name that the folder holds a complete split.

    For a check before long work starts (``memspice run`` calls it before its first stage).

    Raises:
        DataError: no folder, or one without images and labels of ``t10k`` or ``train``.
    """
    directory = resolve_mnist_dir(explicit)
    if not directory.is_dir():
        raise DataError(f"MNIST folder {directory} does not exist or is not a folder; "
                        "`memspice data mnist` downloads the files into memspice's cache")
    if not status(directory).splits:
        raise DataError(
            f"{directory} holds no MNIST images and labels of one split (t10k or train); "
            "`memspice data mnist` downloads them"
        )
    return directory
