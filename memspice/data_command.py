"""``memspice data mnist``: fill and inspect the per-user MNIST cache."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from memspice import data_cache
from memspice.errors import DataError, MemspiceError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data``."""
    p = subparsers.add_parser(
        "data",
        help="download or import datasets into memspice's cache (MNIST)",
        description=textwrap.fill(
            "Put the four standard MNIST IDX files into memspice's cache, each checked against a "
            "pinned SHA-256, so that `dataset.name = \"mnist\"`, `--dataset mnist` and the "
            "benchmark scripts find them without a path. The cache is $MEMSPICE_DATA/mnist, "
            f"else {data_cache.mnist_cache_dir()}. A folder given with --mnist-dir, "
            f"`dataset.mnist_dir` or ${data_cache.MNIST_ENV} is used instead of the cache.", 90
        ) + (
            "\n\nExamples:\n"
            "  memspice data mnist                     # download what the cache lacks\n"
            "  memspice data mnist --from ~/mnist      # offline: import a local copy\n"
            "  memspice data mnist --check             # show and verify what the cache holds"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=("mnist",), help="the dataset (mnist)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                        help="import the files found in DIR (raw or .gz) instead of downloading; "
                             "files DIR lacks are reported as missing")
    source.add_argument("--check", action="store_true",
                        help="verify the cached files and print what is there; no network")
    p.add_argument("--split", choices=("all", "t10k", "train"), default="all",
                   help="files to download: the 10,000-image test set (t10k, 1.7 MB, enough for the "
                        "benchmarks), the 60,000-image training set (train, 9.9 MB) or both (default)")
    p.add_argument("--url", action="append", default=None, metavar="URL",
                   help="download from this base address instead of the public mirrors (repeatable)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per download (default 60)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the folder")
    p.set_defaults(func=run_data)


def run_data(args: argparse.Namespace) -> int:
    """Fill or check the cache, then print where the data is and what is missing."""
    def report(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr)

    if args.check:
        result = data_cache.status()
        for name in result.present:
            idx = next(f for f in data_cache.MNIST_FILES if f.name == name)
            path = data_cache.present_file(result.directory, idx)
            try:
                data_cache.verify_file(path, idx)
            except MemspiceError as exc:
                raise DataError(f"{exc}; delete it and run `memspice data mnist` again") from None
            report(f"{name}: checksum ok")
    elif args.from_dir is not None:
        result = data_cache.import_from(args.from_dir, report=report)
    else:
        splits = ("t10k", "train") if args.split == "all" else (args.split,)
        result = data_cache.download(mirrors=args.url or data_cache.MNIST_MIRRORS, splits=splits,
                                     timeout_s=args.timeout, report=report)
    if not args.quiet:
        usable = ", ".join(result.splits) or "none"
        print(f"MNIST cache: {result.directory} (complete splits: {usable})")
        if result.missing:
            print(f"missing: {', '.join(result.missing)}")
    else:
        print(result.directory)
    return 0
