"""`memspice run`: wire the stages, the run directory and the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from memspice.io import write_text_atomic
from memspice.pipeline.calibrate_stage import run_calibrate
from memspice.pipeline.characterize_stage import run_characterize
from memspice.pipeline.config import RunConfig, config_to_toml
from memspice.pipeline.report import write_report
from memspice.pipeline.stages import Stage, StageContext, run_stages, setup_logging
from memspice.pipeline.loop_stage import run_loop
from memspice.pipeline.train_stage import run_train
from memspice.pipeline.validate_stage import run_validate

log = logging.getLogger("memspice.pipeline")

TECH_SECTIONS = ("technology", "sizing")


def stages() -> list[Stage]:
    """The stages of the main job, in order."""
    return [
        Stage("characterize", "characterize (VTC, load family)", (*TECH_SECTIONS, "characterize"), (), run_characterize),
        Stage("calibrate", "calibrate (SPICE fits)", (*TECH_SECTIONS, "characterize", "device"), ("characterize",), run_calibrate),
        Stage("train", "train (constrained + float baseline)", ("dataset", "training", "device"), ("calibrate",), run_train),
        Stage("loop", "close the loop (SPICE rounds)", (*TECH_SECTIONS, "dataset", "training", "validation", "loop"),
              ("train",), run_loop),
        Stage("validate", "validate in SPICE", (*TECH_SECTIONS, "dataset", "validation"), ("loop",), run_validate),
    ]


def run_pipeline(config: RunConfig, run_dir: Path, *, force: bool = False, quiet: bool = False,
                 verbose: bool = False) -> dict[str, Any]:
    """Run every stage into ``run_dir`` and write the report; return the JSON summary."""
    if config.dataset.name == "mnist":  # found missing now, not after the SPICE stages
        from memspice.data_cache import require_mnist_dir

        require_mnist_dir(config.dataset.mnist_dir or None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir, verbose=verbose, quiet=quiet)
    toml = config_to_toml(config)
    write_text_atomic(run_dir / "config.toml", toml)
    ctx = StageContext(config=config, run_dir=run_dir, summaries={}, quiet=quiet)
    summaries = run_stages(stages(), ctx, force=force)
    files = write_report(run_dir, summaries, toml)
    log.info("report written: %s", files["report_md"])
    import json

    return json.loads(files["summary_json"].read_text())
