"""The digits recipe benchmark runs the pipeline's train stage per recipe and seed pair."""

import json

import pytest

from memspice.fit.calibration import phax_reference_calibration, save_calibration

from script_loader import load_script


def test_bench_digits_recipes_quick_compares_recipes_on_the_validation_split(tmp_path, capsys):
    module = load_script("bench_digits_recipes")
    (tmp_path / "run" / "calibrate").mkdir(parents=True)
    save_calibration(phax_reference_calibration(), tmp_path / "run" / "calibrate" / "calibration.json")
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"slow": {"mode": "static", "hidden": [4], "learning_rate": 0.001},
                                   "fast": {"mode": "static", "hidden": [4], "learning_rate": 0.05}}))
    assert module.main(["--run-dir", str(tmp_path / "run"), "--recipes", str(recipes), "--quick", "--workers", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["recipe"] for r in result["recipes"]] == ["slow", "fast"]
    assert all(r["runs"] == 1 for r in result["recipes"])
    assert all(r["train_seed"] == 0 and r["split_seed"] == 0 for r in result["runs"])
    slow, fast = result["runs"]
    assert slow["model_val_accuracy"] != fast["model_val_accuracy"]  # the recipe reached the trainer
    for row in result["recipes"]:
        assert row["gap_val"] == row["circuit_val"] - row["float_val"]
    first, second = result["recipes"]
    assert first["circuit_val_vs_first"] == 0.0
    assert second["circuit_val_vs_first"] == 100 * fast["model_val_accuracy"] - 100 * slow["model_val_accuracy"]


def test_bench_digits_recipes_takes_the_seed_pairs_from_the_command_line(tmp_path, capsys):
    module = load_script("bench_digits_recipes")
    assert module.seed_pairs((0, 1, 2), (0, 1)) == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert module.seed_list("3,4") == (3, 4)
    (tmp_path / "run" / "calibrate").mkdir(parents=True)
    save_calibration(phax_reference_calibration(), tmp_path / "run" / "calibrate" / "calibration.json")
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"one": {"mode": "static", "hidden": [4]}}))
    assert module.main(["--run-dir", str(tmp_path / "run"), "--recipes", str(recipes), "--quick", "--workers", "1",
                        "--train-seeds", "3,4", "--split-seeds", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["train_seed"], r["split_seed"]) for r in result["runs"]] == [(3, 1)]
    for bad in ("1,1", "-1", "a", ""):
        with pytest.raises(SystemExit):
            module.main(["--run-dir", str(tmp_path / "run"), "--train-seeds", bad])
    assert "--train-seeds" in capsys.readouterr().err
