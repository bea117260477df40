"""`memspice run`: stage skipping, forcing, and one real end-to-end run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from memspice.cli import main
from memspice.pipeline.config import config_from_dict
from memspice.pipeline.stages import MANIFEST, Stage, StageContext, run_stages


def _counting_stages(calls: list[str]) -> list[Stage]:
    def make(name: str):
        def run(ctx: StageContext) -> dict[str, Any]:
            calls.append(name)
            (ctx.stage_dir(name) / "out.txt").write_text(name)
            return {"ran": name}
        return run

    return [
        Stage("a", "A", ("technology",), (), make("a")),
        Stage("b", "B", ("training",), ("a",), make("b")),
        Stage("c", "C", ("validation",), ("b",), make("c")),
    ]


def test_unchanged_stages_are_skipped_and_changes_rerun_downstream(tmp_path: Path) -> None:
    calls: list[str] = []
    config = config_from_dict({})
    run_stages(_counting_stages(calls), StageContext(config, tmp_path, {}, quiet=True))
    assert calls == ["a", "b", "c"]
    run_stages(_counting_stages(calls), StageContext(config, tmp_path, {}, quiet=True))
    assert calls == ["a", "b", "c"]  # nothing changed, nothing ran
    changed = config_from_dict({"training": {"epochs": 3}})
    summaries = run_stages(_counting_stages(calls), StageContext(changed, tmp_path, {}, quiet=True))
    assert calls == ["a", "b", "c", "b", "c"]  # training changed: b and everything after it
    assert summaries["a"]["ran"] == "a"
    run_stages(_counting_stages(calls), StageContext(changed, tmp_path, {}, quiet=True), force=True)
    assert calls[-3:] == ["a", "b", "c"]


def test_interrupted_stage_is_rerun_and_manifest_stays_valid(tmp_path: Path) -> None:
    calls: list[str] = []
    stages = _counting_stages(calls)

    def boom(ctx: StageContext) -> dict[str, Any]:
        raise KeyboardInterrupt

    broken = [stages[0], Stage("b", "B", ("training",), ("a",), boom), stages[2]]
    with pytest.raises(KeyboardInterrupt):
        run_stages(broken, StageContext(config_from_dict({}), tmp_path, {}, quiet=True))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert set(manifest) == {"a"}
    run_stages(stages, StageContext(config_from_dict({}), tmp_path, {}, quiet=True))
    assert calls == ["a", "b", "c"]


@pytest.mark.ngspice
@pytest.mark.slow
def test_small_end_to_end_run_writes_the_report(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[characterize]\nload_points = 5\n"
        "[dataset]\nmax_train = 300\nmax_test = 40\n"
        "[training]\nhidden = [8]\nepochs = 3\n"
        "[validation]\nbatch_size = 20\n"
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 0
    for name in ("report.md", "report.html", "summary.json", "config.toml", "memspice.log",
                 "calibrate/calibration.json", "train/network/network.npz", "validate/samples.parquet"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    head = summary["headline"]
    assert head["topology"] == [64, 8, 10]
    assert 0.0 <= head["spice_accuracy"] <= 1.0 and summary["stages"]["validate"]["n_samples"] == 40
    assert "SPICE circuit accuracy" in (run_dir / "report.md").read_text()
    written = sorted(run_dir.rglob("*.json"))
    assert len(written) >= 8
    for path in written:  # strict JSON everywhere: no NaN or Infinity
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {path}"))
    # second run: everything unchanged, nothing recomputed
    mtime = (run_dir / "train/network/network.npz").stat().st_mtime_ns
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 0
    assert (run_dir / "train/network/network.npz").stat().st_mtime_ns == mtime
    # a changed recipe retrains from scratch (not from the finished checkpoint) and re-validates
    before = hashlib.sha256((run_dir / "train/network/network.npz").read_bytes()).hexdigest()
    config.write_text(config.read_text().replace("epochs = 3\n", "epochs = 3\nloss_link = \"logit\"\n"))
    assert main(["run", str(config), "--run-dir", str(run_dir), "-q"]) == 0
    assert hashlib.sha256((run_dir / "train/network/network.npz").read_bytes()).hexdigest() != before
    retrained = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert retrained["train"]["loss_link"] == "logit" and retrained["validate"]["n_samples"] == 40


def test_a_stage_resumes_only_work_its_own_configuration_started(tmp_path: Path) -> None:
    seen: list[bool] = []

    def interrupted(ctx: StageContext) -> dict[str, Any]:
        seen.append(ctx.fresh)
        raise KeyboardInterrupt

    def finishing(ctx: StageContext) -> dict[str, Any]:
        seen.append(ctx.fresh)
        return {}

    def stage(run):
        return [Stage("b", "B", ("training",), (), run)]

    config = config_from_dict({})
    for run in (interrupted, interrupted):
        with pytest.raises(KeyboardInterrupt):
            run_stages(stage(run), StageContext(config, tmp_path, {}, quiet=True))
    assert seen == [True, False]  # the second attempt may resume the first one's work
    changed = config_from_dict({"training": {"epochs": 3}})
    with pytest.raises(KeyboardInterrupt):
        run_stages(stage(interrupted), StageContext(changed, tmp_path, {}, quiet=True))
    run_stages(stage(finishing), StageContext(changed, tmp_path, {}, quiet=True), force=True)
    assert seen == [True, False, True, True]  # another configuration's work, then --force
