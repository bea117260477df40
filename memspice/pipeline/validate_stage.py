"""Pipeline stage: the trained network back in SPICE, sample by sample."""

from __future__ import annotations

from typing import Any

from memspice.errors import SimError
from memspice.pipeline import data
from memspice.pipeline.stages import StageContext
from memspice.train.network_io import load_network
from memspice.validate.api import RunSettings, validate_network


def run_validate(ctx: StageContext) -> dict[str, Any]:
    """Simulate the test set through the full-network deck and compare with the model."""
    from tqdm.auto import tqdm

    cfg = ctx.config
    network = load_network(ctx.run_dir / "train" / "network")
    _, test_set = data.split_dataset(cfg)
    x = data.voltages(test_set, network.calibration.rails)
    labels = test_set.labels
    if cfg.validation.samples:
        x, labels = x[: cfg.validation.samples], labels[: cfg.validation.samples]
    v = cfg.validation
    settings = RunSettings(batch_size=v.batch_size, workers=v.workers or None, timeout_s=v.timeout_s,
                           transient_samples=min(8, len(x)), resume=True)
    bar = tqdm(total=len(x), desc="SPICE validation", unit="batch", disable=ctx.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = validate_network(network, data.technology(cfg), x, labels, ctx.stage_dir("validate"),
                                  sizing=data.sizing(cfg), settings=settings, progress=progress)
    finally:
        bar.close()
    if not report.complete:
        failed = ", ".join(str(f.index) for f in report.failures)
        raise SimError(f"validation batches {failed} failed; see {ctx.run_dir / 'validate'} "
                       "(re-run to resume: finished batches are kept)")
    return dict(report.summary)
