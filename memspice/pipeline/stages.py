"""Stage bookkeeping for `memspice run`: fingerprints, skip-if-unchanged, manifest, log.

Each stage writes into ``<run_dir>/<stage>/`` (atomically, file by file) and, when it has
finished, its fingerprint and summary go into ``<run_dir>/stages.json`` (atomically). A stage
whose fingerprint (its configuration sections, upstream fingerprints, memspice version and a
digest of the code it runs, :func:`code_digest`) is unchanged is skipped on the next run;
``force`` redoes everything. A stage interrupted half way leaves no manifest entry, so the next
run re-enters it (stages that can resume, such as training from its checkpoint and validation
batch by batch, pick up where they stopped). They resume only what the same fingerprint
started: a stage records its fingerprint in ``<stage>/started.json`` when it starts, and
:attr:`StageContext.fresh` tells it whether to discard what an earlier, different run (or
``force``) left in its directory.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memspice import __version__
from memspice.errors import ConfigError
from memspice.safe_io import dumps_strict, write_text_atomic
from memspice.pipeline.config import RunConfig
from memspice.sim.info import configured_ngspice, simulator_record

MANIFEST = "stages.json"
LOG_FILE = "memspice.log"
STARTED = "started.json"

log = logging.getLogger("memspice.pipeline")


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: directory and manifest key.
        title: what the progress bar shows.
        sections: configuration sections the stage depends on.
        upstream: stages whose results it reads.
        run: ``run(ctx) -> summary`` (JSON-safe dict of headline numbers).
    """

    name: str
    title: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...]
    run: Callable[[StageContext], dict[str, Any]]


@dataclass
class StageContext:
    """What a running stage can see."""

    config: RunConfig
    run_dir: Path
    summaries: dict[str, dict[str, Any]]
    quiet: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    #: the running stage must start over (forced, or its directory holds another configuration's work)
    fresh: bool = True

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The finished stages recorded in ``stages.json`` (``{}`` when there is none).

    Raises:
        ConfigError: the file exists but is not a stage record, so which stages finished is
            unknown (delete it, or run with ``--force``, to redo every stage).
    """
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        for name, entry in manifest.items():
            if not (isinstance(entry, dict) and isinstance(entry.get("fingerprint"), str)
                    and isinstance(entry.get("summary", {}), dict)):
                raise ValueError(f"entry {name!r} lacks a fingerprint and summary")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ConfigError(f"{path} is unreadable ({reason}); delete it or use --force to redo every stage") from None
    return manifest


def _started_fingerprint(stage_dir: Path) -> str | None:
    """The fingerprint a stage recorded when it started; None when unknown (the stage starts fresh)."""
    try:
        value = json.loads((stage_dir / STARTED).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


#: Data files of the package (model cards) that every code digest covers.
_DATA_SUFFIXES = frozenset({".lib", ".sub", ".spice"})
_PACKAGE = Path(__file__).resolve().parents[1]


def _module_path(name: str) -> Path | None:
    """The file of a ``memspice…`` module (or package ``__init__``), if it exists."""
    parts = name.split(".")[1:]
    base = _PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def _memspice_imports(path: Path) -> frozenset[str]:
    """``memspice`` modules a source file imports anywhere in it (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "memspice")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "memspice":
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)  # submodules imported by name
    return frozenset(found)


def module_closure(module: str) -> list[Path]:
    """Source files of ``module`` and of every memspice module it imports, transitively.

    Imports are read statically (``ast``), including those inside functions; importing
    ``memspice.a.b`` also runs the ``__init__`` of ``memspice`` and ``memspice.a``.
    """
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = _module_path(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_memspice_imports(path))
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """SHA-256 over the code a stage runs: ``module``'s import closure, plus the bundled model files.

    Part of every stage fingerprint, so results computed by other code are not reused: a checkout
    where a stage's code changed re-runs that stage (and, through the upstream fingerprints, the
    stages after it) without ``--force``, and an edit elsewhere (the report, another stage) does
    not. Paths and contents are hashed; tens of ms per stage, once per process.
    """
    files = [*module_closure(module),
             *sorted(p for p in _PACKAGE.rglob("*") if p.is_file() and p.suffix in _DATA_SUFFIXES)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(stage: Stage, config: RunConfig, manifest: dict[str, Any]) -> str:
    parts = {
        "version": __version__,
        "code": code_digest(stage.run.__module__),
        "stage": stage.name,
        "config": config.section_digest(*stage.sections),
        "upstream": {u: manifest.get(u, {}).get("fingerprint") for u in stage.upstream},
        # ngspice version and build options (not its path): another build re-runs the stages
        "simulator": simulator_record(config.simulator.ngspice or None),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def setup_logging(run_dir: Path, verbose: bool, quiet: bool) -> None:
    """Log everything to ``memspice.log`` in the run directory; the console gets less."""
    root = logging.getLogger("memspice")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(run_dir / LOG_FILE)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.setLevel(logging.DEBUG)
    root.addHandler(file_handler)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    root.addHandler(console)
    root.propagate = False


def run_stages(stages: list[Stage], ctx: StageContext, force: bool = False) -> dict[str, dict[str, Any]]:
    """Run (or skip) each stage in order, with the configured ngspice; return every stage's summary."""
    with configured_ngspice(ctx.config.simulator.ngspice or None):
        return _run_stages(stages, ctx, force)


def _run_stages(stages: list[Stage], ctx: StageContext, force: bool) -> dict[str, dict[str, Any]]:
    from tqdm.auto import tqdm

    manifest = {} if force else read_manifest(ctx.run_dir)
    bar = tqdm(total=len(stages), desc="memspice run", unit="stage", disable=ctx.quiet, position=0)
    try:
        for stage in stages:
            fp = fingerprint(stage, ctx.config, manifest)
            entry = manifest.get(stage.name)
            bar.set_postfix_str(stage.title)
            if not force and entry and entry.get("fingerprint") == fp:
                log.info("%s: unchanged, skipped (delete %s/ or use --force to redo)", stage.title, stage.name)
                ctx.summaries[stage.name] = entry.get("summary", {})
                bar.update(1)
                continue
            ctx.fresh = force or _started_fingerprint(ctx.run_dir / stage.name) != fp
            log.info("%s%s ...", stage.title, "" if ctx.fresh else " (resuming)")
            write_text_atomic(ctx.stage_dir(stage.name) / STARTED, json.dumps({"fingerprint": fp}) + "\n")
            start = time.monotonic()
            summary = stage.run(ctx)
            elapsed = time.monotonic() - start
            summary = {"simulator": simulator_record(), **summary, "elapsed_s": round(elapsed, 2)}
            ctx.summaries[stage.name] = summary
            manifest[stage.name] = {"fingerprint": fp, "summary": summary}
            write_text_atomic(ctx.run_dir / MANIFEST, dumps_strict(manifest, indent=2, sort_keys=True) + "\n")
            log.info("%s done in %.1f s", stage.title, elapsed)
            bar.update(1)
    finally:
        bar.close()
    return ctx.summaries
