"""`memspice run`: wire the stages, the run directory and the report."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memspice.errors import ConfigError

from memspice.safe_io import check_output_dir, write_text_atomic
from memspice.pipeline.calibrate_stage import run_calibrate
from memspice.pipeline.characterize_stage import run_characterize
from memspice.pipeline.config import RunConfig, config_to_toml
from memspice.pipeline.report import write_report
from memspice.pipeline.stages import Stage, StageContext, read_manifest, run_stages, setup_logging
from memspice.pipeline.loop_stage import run_loop
from memspice.pipeline.train_stage import VALIDATION_FRACTION, run_train
from memspice.pipeline.validate_stage import run_validate

log = logging.getLogger("memspice.pipeline")

TECH_SECTIONS = ("technology", "sizing")


def stages() -> list[Stage]:
    """The stages of the main job, in order."""
    return [
        Stage("characterize", "characterize (VTC, load family)", (*TECH_SECTIONS, "characterize"), (), run_characterize),
        Stage("calibrate", "calibrate (SPICE fits)", (*TECH_SECTIONS, "characterize", "device"), ("characterize",), run_calibrate),
        Stage("train", "train (constrained + float baseline)", ("dataset", "training", "device", "network"), ("calibrate",),
              run_train),
        Stage("loop", "close the loop (SPICE rounds)", (*TECH_SECTIONS, "dataset", "training", "validation", "loop"),
              ("train",), run_loop),
        Stage("validate", "validate in SPICE", (*TECH_SECTIONS, "dataset", "validation"), ("loop",), run_validate),
    ]


def check_size(config: RunConfig) -> None:
    """Refuse, before any stage runs, a configuration whose training or validation cannot fit in
    memory (:mod:`memspice.budget`); loading the data here also reports a bad dataset first."""
    from memspice.budget import check_training, check_validation
    from memspice.pipeline import data

    from memspice.train.trainer import split_validation

    train_set, test_set = data.split_dataset(config)
    sizes = config.topology(train_set.n_features, train_set.n_classes)
    t = config.training
    split_validation(len(train_set.labels), VALIDATION_FRACTION, t.seed)  # too few samples to hold some out
    if sizes is None:  # conv or pooling layers: the network's own estimate (also checked against 4 GiB on reading)
        from memspice.budget import require

        spec = config.layered_spec()
        require(spec.estimate(t.batch_size).peak_bytes, f"training the {spec.estimate().devices:,}-device network")
        return
    check_training(sizes, len(train_set.labels), t.batch_size, coupled=t.mode == "coupled")
    n_test = min(config.validation.samples or len(test_set.labels), len(test_set.labels))
    check_validation(sizes, n_test, data.batch_size(config, n_test))
    if config.loop.enabled:
        n_loop = min(config.loop.samples, len(train_set.labels))
        check_validation(sizes, n_loop, data.batch_size(config, n_loop))


LOCK_FILE = "memspice.lock"


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (``memspice.lock`` in it) while the body runs.

    Raises:
        ConfigError: another process holds it (a second ``memspice run`` on the same directory).
    """
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise ConfigError(f"run directory {run_dir} is in use by another memspice run{who}; wait for it "
                              "to finish or choose another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def run_pipeline(config: RunConfig, run_dir: Path, *, force: bool = False, quiet: bool = False,
                 verbose: bool = False) -> dict[str, Any]:
    """Run every stage into ``run_dir`` and write the report; return the JSON summary.

    Before anything is written: the run directory must be writable, the data loadable and the
    job small enough for this machine's memory, and ``stages.json`` (when resuming) readable.
    One run at a time per directory (a lock file), so two runs never both do all the work.
    """
    if config.dataset.name == "mnist":  # found missing now, not after the SPICE stages
        from memspice.data_cache import require_mnist_dir

        require_mnist_dir(config.dataset.mnist_dir or None)
    run_dir = Path(run_dir)
    check_output_dir(run_dir, "run directory")
    check_size(config)
    if not force:
        read_manifest(run_dir)  # a corrupt record stops here, before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        setup_logging(run_dir, verbose=verbose, quiet=quiet)
        toml = config_to_toml(config)
        write_text_atomic(run_dir / "config.toml", toml)
        ctx = StageContext(config=config, run_dir=run_dir, summaries={}, quiet=quiet)
        summaries = run_stages(stages(), ctx, force=force)
        files = write_report(run_dir, summaries, toml)
        log.info("report written: %s", files["report_md"])
    return json.loads(files["summary_json"].read_text())
