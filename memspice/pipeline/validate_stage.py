"""Pipeline stage: the trained network back in SPICE, sample by sample."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from memspice.errors import ConfigError, SimError
from memspice.safe_io import write_atomic
from memspice.pipeline import data
from memspice.pipeline.loop_stage import final_network_dir
from memspice.pipeline.stages import StageContext
from memspice.train.network_io import TrainedNetwork, load_network
from memspice.validate.api import RunSettings, validate_network
from memspice.validate.compare import LayerVoltages
from memspice.validate.progress import batch_bars


def run_validate(ctx: StageContext) -> dict[str, Any]:
    """Simulate the test set through the full-network deck and compare with the model."""
    cfg = ctx.config
    layered = cfg.layered_spec() is not None
    if layered:  # conv or pooling layers (docs/cnn.md)
        from memspice.train.conv_io import load_layered_network

        network: Any = load_layered_network(final_network_dir(ctx.run_dir))
    else:
        network = load_network(final_network_dir(ctx.run_dir))
    _, test_set = data.split_dataset(cfg)
    x = data.voltages(test_set, network.calibration.rails)
    labels = test_set.labels
    if cfg.validation.samples:
        x, labels = x[: cfg.validation.samples], labels[: cfg.validation.samples]
    v = cfg.validation
    settings = RunSettings(batch_size=data.batch_size(cfg, len(x)), workers=v.workers or None, timeout_s=v.timeout_s,
                           transient_samples=min(8, len(x)), resume=not ctx.fresh, force=ctx.fresh,
                           ngspice=v.ngspice or None)
    with batch_bars(disable=ctx.quiet) as progress:
        report = validate_network(network, data.technology(cfg), x, labels, ctx.stage_dir("validate"),
                                  sizing=data.sizing(cfg), settings=settings, progress=progress)
    if not report.complete:
        failed = ", ".join(str(f.index) for f in report.failures)
        raise SimError(f"validation batches {failed} failed; see {ctx.run_dir / 'validate'} "
                       "(re-run to resume: finished batches are kept)")
    if layered:  # the per-mode comparison re-evaluates dense evaluators only
        return dict(report.summary)
    known = {report.summary.get("model_evaluator", network.evaluator): report.model}
    modes = compare_modes(network, x[report.sample_index], report.spice, known)
    path = ctx.stage_dir("validate") / "modes.csv"
    write_atomic(path, lambda tmp: modes.to_csv(tmp, index=False))
    return {**report.summary, "modes": modes.to_dict(orient="records")}


def compare_modes(network: TrainedNetwork, x: np.ndarray, spice: list[LayerVoltages],
                  known: dict[str, list[LayerVoltages]] | None = None) -> pd.DataFrame:
    """Every calibration mode's prediction of the same SPICE run (no extra simulation).

    One row per mode: output-layer RMS/max error (V), worst hidden-layer RMS (V), the
    classification agreement with SPICE, and the forward time (s; None for a mode whose
    voltages were passed in ``known`` — the validation already computed them).
    """
    import time

    rows = []
    spice_class = spice[-1].outp.argmax(axis=1)
    for mode in ("static", "load-aware", "coupled"):
        start = time.perf_counter()
        seconds: float | None = None
        if known and mode in known:
            states = known[mode]
        else:
            try:
                states = network.layer_voltages(x, mode)
            except ConfigError as exc:  # e.g. a calibration without the model this mode needs
                rows.append({"mode": mode, "error": str(exc)})
                continue
            seconds = time.perf_counter() - start
        errors = [np.concatenate([(s.outn - m.outn).ravel(), (s.outp - m.outp).ravel()])
                  for s, m in zip(spice, states)]
        rows.append({
            "mode": mode,
            "output_rms_v": float(np.sqrt(np.mean(errors[-1] ** 2))),
            "output_max_v": float(np.abs(errors[-1]).max()),
            "hidden_rms_v": max((float(np.sqrt(np.mean(e ** 2))) for e in errors[:-1]), default=0.0),
            "agreement": float(np.mean(states[-1].outp.argmax(axis=1) == spice_class)),
            "forward_s": seconds,
        })
    return pd.DataFrame(rows)
