"""scripts/bench_sizing.py reads a finished run's accuracy, power and energy (no simulation)."""

import json
from pathlib import Path

import pytest

from memspice.errors import ConfigError

from script_loader import load_script


def _module():
    return load_script("bench_sizing")


def _transient(period_s: float, settled: int, energy: float | None) -> dict:
    return {"samples": 8, "period_s": period_s, "settled": settled, "delay_s_mean": None if energy is None else 8e-7,
            "delay_s_max": None if energy is None else 1.1e-6,
            "total_energy_j_mean": 6e-11, "total_energy_to_settle_j_mean": energy}


def _run(folder: Path, transient: dict) -> Path:
    folder.mkdir()
    stages = {"train": {"float_baseline_test_accuracy": 0.9675, "model_test_accuracy": 0.954,
                        "model_val_accuracy": 0.92875},
              "validate": {"spice_accuracy": 0.954, "agreement": 1.0, "n_samples": 2000,
                           "static_power_w": {"mean": 5.8e-5}, "input_drive_power_w": {"mean": 1.4e-3},
                           "transient": transient}}
    (folder / "summary.json").write_text(json.dumps({"headline": {}, "stages": stages}))
    (folder / "config.toml").write_text("[sizing]\nwn_um = 50.0\nmn = 12\n")
    return folder


def test_run_figures_reads_the_run_and_a_longer_transient(tmp_path):
    bench = _module()
    run = _run(tmp_path / "run", _transient(1e-6, 0, None))
    figures = bench.run_figures(run)
    assert figures["spice_accuracy"] == 0.954 and figures["float_accuracy"] == 0.9675
    assert figures["energy_per_inference_j"] is None and figures["transient_settled"] == "0/8"
    assert figures["sizing"] == {"wn_um": 50.0, "mn": 12}
    longer = tmp_path / "transient"
    longer.mkdir()
    (longer / "summary.json").write_text(json.dumps({"transient": _transient(4e-6, 8, 2.5e-9)}))
    figures = bench.run_figures(run, longer)
    assert figures["energy_per_inference_j"] == 2.5e-9 and figures["transient_settled"] == "8/8"
    assert figures["transient_period_s"] == 4e-6 and figures["transient_source"] == "transient"
    assert figures["model_val_accuracy"] == 0.92875 and figures["delay_max_s"] == 1.1e-6


def test_energy_needs_every_transient_sample_settled(tmp_path):
    bench = _module()
    run = _run(tmp_path / "run", {**_transient(1e-6, 7, 8.2e-10)})  # the slowest sample left out
    figures = bench.run_figures(run)
    assert figures["energy_per_inference_j"] is None and figures["transient_settled"] == "7/8"
    assert figures["energy_per_period_j"] == 6e-11


def test_run_figures_refuses_what_is_not_a_finished_run(tmp_path):
    bench = _module()
    with pytest.raises(ConfigError, match="cannot read"):
        bench.run_figures(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"stages": {"train": {}}}))
    with pytest.raises(ConfigError, match="not a finished memspice run"):
        bench.run_figures(tmp_path)
    run = _run(tmp_path / "run", {})
    with pytest.raises(ConfigError, match="no transient"):
        bench.run_figures(run, run)


def test_main_refuses_a_wrong_run_before_sweeping(tmp_path, capsys):
    bench = _module()
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--techs", "sky130", "--run", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--reference-run", str(tmp_path)])
