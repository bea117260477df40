"""Pipeline stage: close the loop between the trained model and its SPICE circuit."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from memspice.loop.closed_loop import DEFAULT_FINE_TUNE, closed_loop
from memspice.pipeline import data
from memspice.pipeline.stages import StageContext
from memspice.pipeline.train_stage import single_threaded_blas
from memspice.train.network_io import load_network, save_network
from memspice.validate.api import RunSettings

NETWORK_DIR = "network"


def final_network_dir(run_dir: Path) -> Path:
    """The network the final validation uses: the loop's when it ran, else training's."""
    looped = run_dir / "loop" / NETWORK_DIR
    return looped if (looped / "network.json").is_file() else run_dir / "train" / NETWORK_DIR


def run_loop(ctx: StageContext) -> dict[str, Any]:
    with single_threaded_blas():  # its fine-tuning rounds train like the train stage
        return _loop(ctx)


def _loop(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    out = ctx.stage_dir("loop")
    if not cfg.loop.enabled:
        for stale in (out / NETWORK_DIR).glob("*"):
            stale.unlink()
        return {"enabled": False}
    network = load_network(ctx.run_dir / "train" / NETWORK_DIR)
    train_set, _ = data.split_dataset(cfg)
    rails = network.calibration.rails
    x_train, y_train = data.voltages(train_set, rails), train_set.labels
    n = min(cfg.loop.samples, len(y_train))
    # Fine-tuning keeps the loss the network was trained with (its logits stay trainable).
    fine_tune = dataclasses.replace(DEFAULT_FINE_TUNE, epochs=cfg.loop.fine_tune_epochs, seed=cfg.training.seed,
                                    loss_link=cfg.training.loss_link,  # type: ignore[arg-type]
                                    logit_temperature=cfg.training.logit_temperature)
    if ctx.fresh:
        # A fresh stage starts from an empty rounds directory (nothing of an older loop survives).
        shutil.rmtree(out / "rounds", ignore_errors=True)
    v = cfg.validation
    result = closed_loop(network, data.technology(cfg), x_train, y_train, x_train[:n], y_train[:n], out / "rounds",
                         sizing=data.sizing(cfg), mode=cfg.training.mode, tolerance_v=cfg.loop.tolerance_mv * 1e-3,
                         agreement_target=cfg.loop.agreement_target, max_rounds=cfg.loop.max_rounds,
                         fine_tune=fine_tune, settings=RunSettings(batch_size=data.batch_size(cfg, n), workers=v.workers or None,
                                                                   timeout_s=v.timeout_s),
                         force=True)
    save_network(result.network, out / NETWORK_DIR)
    last = result.rounds.iloc[-1]
    return {
        "enabled": True,
        "mode": cfg.training.mode,
        "rounds": int(len(result.rounds)),
        "converged": bool(result.converged),
        "final_rms_v": float(last["worst_rms_v"]),
        "final_agreement": float(last["agreement"]),
        "table": result.rounds.drop(columns=[c for c in ("reused",) if c in result.rounds]).to_dict(orient="records"),
    }
