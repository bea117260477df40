"""`memspice run` configuration: every key checked, defaults round-trip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from memspice.cli import main
from memspice.errors import ConfigError
from memspice.pipeline.config import RunConfig, config_from_dict, config_to_toml, default_config_toml, load_config
from memspice.pipeline.run import stages as pipeline_stages
from memspice.pipeline.stages import fingerprint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_defaults_round_trip_through_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(default_config_toml())
    assert load_config(path) == RunConfig()
    changed = config_from_dict({"training": {"hidden": [16, 8], "epochs": 3}, "technology": {"vdd": 0.3}})
    path.write_text(config_to_toml(changed))
    assert load_config(path) == changed


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"training": {"epoch": 3}}, "unknown key training.epoch"),
        ({"trainig": {}}, "unknown section [trainig]"),
        ({"training": {"epochs": "ten"}}, "training.epochs must be an integer"),
        ({"training": {"epochs": 0}}, "training.epochs must be in [1, 100000]"),
        ({"training": {"hidden": [32, 0]}}, "training.hidden must be positive integers"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"training": {"mode": "magic"}}, "training.mode"),
        ({"device": {"g_min_us": 9.0}}, "device.g_max_us must be above g_min_us"),
        ({"device": {"g_min_us": -1.0}}, "device.g_min_us must be positive"),
        ({"device": {"levels": 1}}, "device.levels"),
        ({"technology": {"vdd": -0.5}}, "technology.vdd must be above vss"),
        ({"technology": {"name": "tsmc"}}, "technology.name"),
        ({"technology": {"name": "user"}}, "technology.lib is required"),
        ({"technology": {"subckt_devices": 1}}, "technology.subckt_devices must be true or false"),
        ({"characterize": {"load_min_ohm": -5.0}}, "characterize.load_min_ohm must be positive"),
        ({"dataset": {"test_fraction": 1.5}}, "dataset.test_fraction"),
        ({"validation": {"batch_size": -1}}, "validation.batch_size must be 0 (automatic) or in [1, 5000]"),
        ({"sizing": {"wn_um": 1e6}}, "sizing.wn_um"),
        ({"training": {"learning_rate": float("nan")}}, "training.learning_rate must be finite"),
        ({"training": {"loss_link": "probit"}}, "training.loss_link must be output or logit"),
        ({"training": {"loss_link": 1}}, "training.loss_link must be a string"),
        ({"training": {"loss_link": "logit", "logit_temperature": 0.0}}, "training.logit_temperature must be in (0, 100]"),
        ({"training": {"logit_temperature": 2.0}}, "training.logit_temperature other than 1 needs loss_link"),
        ({"training": {"float_learning_rate": -0.001}}, "training.float_learning_rate must be 0 (= learning_rate)"),
        ({"training": {"average_decay": 1.0}}, "training.average_decay must be 0 (off) or in (0, 1)"),
        ({"training": {"average_decay": -0.1}}, "training.average_decay must be 0 (off) or in (0, 1)"),
        ({"training": {"average_decay": 0.99, "optimizer": "lbfgs"}}, "training.average_decay needs a mini-batch optimizer"),
        ({"training": {"schedule": "step"}}, "training.schedule must be exponential or cosine"),
        ({"training": {"warmup_epochs": 80}}, "training.warmup_epochs must be an integer in [0, epochs)"),
        ({"training": {"schedule": "exponential", "lr_floor_fraction": 0.1}}, "training.lr_floor_fraction other than 0 needs schedule"),
        ({"training": {"schedule": "cosine", "lr_floor_fraction": 1.0}}, "training.lr_floor_fraction must be in [0, 1)"),
        ({"training": {"grad_clip_norm": -1.0}}, "training.grad_clip_norm must be 0 (off)"),
        ({"training": {"schedule": "cosine", "optimizer": "cg"}}, "training.schedule warm-up, cosine and clipping need"),
        ({"training": {"pretrain_epochs": -1}}, "training.pretrain_epochs must be an integer in [0, 100000]"),
        ({"training": {"pretrain_mode": "coupled"}}, "training.pretrain_mode must be static or load-aware"),
        ({"training": {"pretrain_epochs": 5, "schedule": "cosine"}}, "training.pretrain_epochs needs a mini-batch"),
        ({"training": {"pretrain_epochs": 5, "optimizer": "lbfgs"}}, "training.pretrain_epochs needs a mini-batch"),
        ({"training": {"pretrain_epochs": 2, "warmup_epochs": 2}}, "training.warmup_epochs must be below pretrain_epochs"),
        ({"training": {"input_noise_std": -0.01}}, "training.input_noise_std must be 0 (off) or in (0, 1] V"),
        ({"training": {"input_noise_std": 0.03, "optimizer": "cg"}}, "training.input_noise_std needs a mini-batch"),
    ],
)
def test_bad_values_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert needle in str(info.value)


def test_print_default_config_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--print-default-config"]) == 0
    path = tmp_path / "default.toml"
    path.write_text(capsys.readouterr().out)
    assert load_config(path) == RunConfig()
    recipe = {"loss_link": "logit", "logit_temperature": 2.0, "average_decay": 0.999, "float_learning_rate": 0.001,
              "schedule": "cosine", "warmup_epochs": 3, "lr_floor_fraction": 0.01, "grad_clip_norm": 1.0,
              "pretrain_mode": "static", "input_noise_std": 0.03}
    changed = config_from_dict({"training": recipe})
    path.write_text(config_to_toml(changed))
    loaded = load_config(path)
    assert loaded == changed
    assert {k: getattr(loaded.training, k) for k in recipe} == recipe


@pytest.mark.parametrize(
    ("key", "old", "new"),
    [("loss_link", "output", "logit"), ("average_decay", 0.0, 0.99), ("logit_temperature", 1.0, 2.0),
     ("float_learning_rate", 0.0, 0.001), ("schedule", "exponential", "cosine"), ("warmup_epochs", 0, 2),
     ("grad_clip_norm", 0.0, 1.0), ("pretrain_epochs", 0, 5), ("input_noise_std", 0.0, 0.03)],
)
def test_training_recipe_changes_the_train_fingerprint(key: str, old: object, new: object) -> None:
    stages = {s.name: s for s in pipeline_stages()}
    link = {"loss_link": "logit"} if key == "logit_temperature" else {}
    before = config_from_dict({"training": {**link, key: old}})
    after = config_from_dict({"training": {**link, key: new}})
    for name in ("train", "loop"):
        assert fingerprint(stages[name], before, {}) != fingerprint(stages[name], after, {})
    assert fingerprint(stages["calibrate"], before, {}) == fingerprint(stages["calibrate"], after, {})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(path: Path) -> None:
    load_config(path)


def test_relative_paths_are_relative_to_the_configuration_file(tmp_path: Path, monkeypatch) -> None:
    from memspice.pipeline.config import load_config

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.toml").write_text('[dataset]\nname = "mnist"\nmnist_dir = "../data/mnist"\n'
                                     '[technology]\nlib = "/abs/models.lib"\nnmos = "n1"\npmos = "p1"\n')
    monkeypatch.chdir(tmp_path / "configs")
    config = load_config(Path("run.toml"))
    assert config.dataset.mnist_dir == str(tmp_path / "data" / "mnist")
    assert config.technology.lib == "/abs/models.lib"


@pytest.mark.parametrize(("given", "expected"), [("ngspice", "ngspice"), ("ngspice-42", "ngspice-42"),
                                                  ("../bin/ngspice", "{root}/bin/ngspice"),
                                                  ("/opt/ng/bin/ngspice", "/opt/ng/bin/ngspice")])
def test_the_validation_ngspice_is_a_program_name_or_a_path_relative_to_the_file(
        tmp_path: Path, given: str, expected: str) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.toml").write_text(f'[validation]\nngspice = "{given}"\n')
    assert load_config(folder / "run.toml").validation.ngspice == expected.format(root=tmp_path)


def test_an_empty_validation_ngspice_is_rejected() -> None:
    with pytest.raises(ConfigError, match="validation.ngspice must name an ngspice executable"):
        config_from_dict({"validation": {"ngspice": " "}})


def test_code_digest_is_part_of_every_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    import memspice.pipeline.stages as stages_module

    stages = {s.name: s for s in pipeline_stages()}
    config = config_from_dict({})
    for stage in stages.values():
        digest = stages_module.code_digest(stage.run.__module__)
        assert len(digest) == 64 and digest == stages_module.code_digest(stage.run.__module__)
    before = {name: fingerprint(stage, config, {}) for name, stage in stages.items()}
    monkeypatch.setattr(stages_module, "code_digest", lambda module: "edited " + module)
    after = {name: fingerprint(stage, config, {}) for name, stage in stages.items()}
    assert all(before[name] != after[name] for name in stages)


def _digests_of_a_copy(copy: Path, monkeypatch: pytest.MonkeyPatch, stages: dict) -> dict[str, str]:
    import memspice.pipeline.stages as stages_module

    monkeypatch.setattr(stages_module, "_PACKAGE", copy)
    stages_module.code_digest.cache_clear()
    stages_module._memspice_imports.cache_clear()
    try:
        return {name: stages_module.code_digest(stage.run.__module__) for name, stage in stages.items()}
    finally:
        stages_module.code_digest.cache_clear()
        stages_module._memspice_imports.cache_clear()


def test_a_stage_digest_covers_the_code_it_imports_and_nothing_else(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import memspice.pipeline.stages as stages_module

    stages = {s.name: s for s in pipeline_stages()}
    package = Path(stages_module.__file__).resolve().parents[1]
    copy = tmp_path / "memspice"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = _digests_of_a_copy(copy, monkeypatch, stages)
    assert original == {name: stages_module.code_digest(stage.run.__module__) for name, stage in stages.items()}

    # the validation report is imported (inside a function) by the validate stage, not by training
    report = copy / "validate" / "report.py"
    report.write_text(report.read_text() + "\n# edited\n")
    edited = _digests_of_a_copy(copy, monkeypatch, stages)
    assert edited["validate"] != original["validate"]
    assert edited["train"] == original["train"] and edited["characterize"] == original["characterize"]

    # the trainer's optimizers reach the train stage through imports of imports
    optim = copy / "train" / "optim.py"
    optim.write_text(optim.read_text() + "\n# edited\n")
    assert _digests_of_a_copy(copy, monkeypatch, stages)["train"] != original["train"]

    # a bundled model card changes every stage
    card = copy / "data" / "models" / "builtin_mos.lib"
    card.write_text(card.read_text() + "\n* edited\n")
    last = _digests_of_a_copy(copy, monkeypatch, stages)
    assert all(last[name] != edited[name] for name in stages)


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_automatic_batch_size_gives_every_worker_the_same_number_of_decks(workers: int) -> None:
    from memspice.pipeline.data import batch_size

    config = config_from_dict({"validation": {"workers": workers}})
    for n in (40, 359, 1797, 2000, 5000, 10000):
        size = batch_size(config, n)
        decks = -(-n // size)
        assert size <= 900 and decks % workers == 0, (n, size, decks)
        assert -(-n // (size - 1)) > decks or size == 1, "no smaller decks in the same number of rounds"
    assert batch_size(config_from_dict({"validation": {"workers": workers, "batch_size": 123}}), 2000) == 123


def test_defaults_that_depend_on_other_keys() -> None:
    """Cosine and input noise are the mini-batch defaults; a table that rules them out gets the
    exponential schedule and no noise unless it sets them itself (then the checks judge them)."""
    plain = config_from_dict({}).training
    assert (plain.schedule, plain.input_noise_std) == ("cosine", 0.02)
    pre = config_from_dict({"training": {"pretrain_epochs": 4}}).training
    assert (pre.schedule, pre.input_noise_std) == ("exponential", 0.02)
    decay = config_from_dict({"training": {"lr_decay": 0.9}}).training  # only exponential uses it
    assert (decay.schedule, decay.lr_decay) == ("exponential", 0.9)
    full = config_from_dict({"training": {"optimizer": "lbfgs"}}).training
    assert (full.schedule, full.input_noise_std) == ("exponential", 0.0)
    kept = config_from_dict({"training": {"optimizer": "sgd", "schedule": "exponential", "input_noise_std": 0.0}})
    assert (kept.training.schedule, kept.training.input_noise_std) == ("exponential", 0.0)
    with pytest.raises(ConfigError, match="training.input_noise_std needs a mini-batch"):
        config_from_dict({"training": {"optimizer": "cg", "input_noise_std": 0.02}})
    with pytest.raises(ConfigError, match="training.pretrain_epochs needs"):
        config_from_dict({"training": {"pretrain_epochs": 4, "schedule": "cosine"}})
