"""scripts/bench_cnn.py --quick end to end: trains, validates in ngspice, ends with JSON."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from script_loader import load_script


def _module():
    return load_script("bench_cnn")


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return gzip.compress(header + array.astype(">u1").tobytes())


def _tiny_mnist(folder: Path) -> Path:
    """130 synthetic 28×28 images whose brightness follows the label (IDX files)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 130)
    images = (rng.random((130, 28, 28)) * 40 + labels[:, None, None] * 20).astype(np.uint8)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(_idx(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(labels))
    return folder


@pytest.mark.slow
@pytest.mark.ngspice
def test_quick_run_ends_with_the_figures(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    mnist = _tiny_mnist(tmp_path)
    assert _module().main(["--mnist", str(mnist), "--quick", "--work", str(tmp_path / "w")]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("float_accuracy", "constrained_accuracy", "spice_accuracy", "agreement",
                "output_rms_v", "layer_rms_v", "spice_images_per_s", "per_image_baseline_per_s",
                "peak_mb_per_worker", "epoch_ratio_coupled_to_static"):
        assert figures[key] is not None, key
    assert set(figures["hybrid"]) >= {"software", "transfer", "hybrid", "recovered_fraction",
                                      "data_fraction"}
    assert len(figures["layer_rms_v"]) == 6  # outn and outp of three crossbar layers
    # the coupled model is SPICE's operating point: outputs agree to well under a millivolt
    assert figures["output_rms_v"] < 1e-3 and figures["agreement"] == 1.0
    # every stage kept its trainer checkpoint: a second run in the same folder trains nothing
    # again and reaches the same networks
    stages = tmp_path / "w" / "train"
    assert {p.name for p in stages.iterdir()} == {"float", "pre", "tune"}
    assert _module().main(["--mnist", str(mnist), "--quick", "--work", str(tmp_path / "w"),
                           "--hybrid-images", "0"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("float_accuracy", "constrained_accuracy", "constrained_val_accuracy"):
        assert again[key] == figures[key], key
    assert "hybrid" not in again


@pytest.mark.slow
def test_train_only_distills_from_the_float_cnn_and_stops_before_spice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mnist = _tiny_mnist(tmp_path)
    runs = {}
    for name, extra in (("plain", []), ("distilled", ["--tune-distill", "0.7",
                                                      "--tune-distill-temperature", "2",
                                                      "--tune-average", "0.5"])):
        work = tmp_path / name
        assert _module().main(["--mnist", str(mnist), "--quick", "--train-only",
                               "--work", str(work), *extra]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert runs[name]["train_only"] is True
        # candidates are chosen on validation: no test accuracy is shown
        assert not {"float_accuracy", "constrained_accuracy"} & set(runs[name])
        assert (work / "network").is_dir() and not (work / "validate").exists()
    recipe = runs["distilled"]["recipe"]
    assert (recipe["tune_distill"], recipe["tune_distill_temperature"],
            recipe["tune_average"]) == (0.7, 2.0, 0.5)
    # the same float CNN and pre-training; the fine-tuning steps on other targets
    for key in ("float_val_accuracy", "pre_val_accuracy"):
        assert runs["plain"][key] == runs["distilled"][key], key
    plain = np.load(tmp_path / "plain" / "train" / "tune" / "checkpoint.npz")
    distilled = np.load(tmp_path / "distilled" / "train" / "tune" / "checkpoint.npz")
    keys = [k for k in plain.files if k.startswith("best")]
    assert keys and any(not np.array_equal(plain[k], distilled[k]) for k in keys)


@pytest.mark.slow
def test_a_second_fine_tuning_starts_from_the_first_ones_network(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mnist = _tiny_mnist(tmp_path)
    runs = {}
    for name, extra in (("once", []), ("twice", ["--retune-epochs", "1", "--retune-lr", "0.02",
                                                 "--retune-cycles", "2"])):
        assert _module().main(["--mnist", str(mnist), "--quick", "--train-only",
                               "--work", str(tmp_path / name), *extra]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    once, twice = runs["once"], runs["twice"]
    recipe = twice["recipe"]
    assert (recipe["retune_epochs"], recipe["retune_lr"], recipe["retune_cycles"]) == (1, 0.02, 2)
    assert not (tmp_path / "once" / "train" / "retune").exists()
    # the first fine-tuning is the same; the figures run on over the second one's epochs
    assert twice["constrained_val_accuracy"][:1] == once["constrained_val_accuracy"]
    assert len(twice["constrained_val_accuracy"]) == 3
    # the kept network is the epoch of lowest validation loss over all stages
    losses = [loss for stage in ("tune", "retune", "retune2") for loss in pd.read_csv(
        tmp_path / "twice" / "train" / stage / "history.csv").val_loss]
    assert twice["constrained_best_epoch"] == 1 + int(np.argmin(losses))
    stages = [np.load(tmp_path / "twice" / "train" / name / "checkpoint.npz")
              for name in ("tune", "retune", "retune2")]
    keys = [k for k in stages[0].files if k.startswith("best")]
    for first, second in zip(stages, stages[1:]):
        assert keys and any(not np.array_equal(first[k], second[k]) for k in keys)


def test_missing_mnist_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSPICE_MNIST_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        _module().main([])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["--channels", "8"], ["--channels", "8,x"], ["--channels", "0,4"],
                                  ["--tune-epochs", "0"], ["--quick", "--wide"],
                                  ["--quick", "--preset", "wide"], ["--wide", "--preset", "default"],
                                  ["--preset", "deep"], ["--hidden", "-1"], ["--tune-lr", "0"],
                                  ["--tune-lr", "nan"], ["--tune-distill", "1.5"],
                                  ["--tune-distill", "-0.1"], ["--tune-distill-temperature", "0"],
                                  ["--tune-average", "1"], ["--tune-average", "-0.5"],
                                  ["--retune-epochs", "-1"], ["--retune-lr", "0"],
                                  ["--retune-cycles", "0"],
                                  ["--train-only", "--network", "nowhere"],
                                  ["--input-pool", "3"], ["--kernel1", "0"], ["--stride1", "0"],
                                  ["--float-epochs", "0"], ["--float-average", "1"],
                                  ["--float-only", "--train-only"],
                                  ["--float-only", "--network", "nowhere"],
                                  ["--input-pool", "1", "--stride1", "2"],
                                  ["--shifts", "9"], ["--shifts", "-1"],
                                  ["--teachers", "0"], ["--teachers", "17"],
                                  ["--teachers", "2.5"]])
def test_bad_recipe_options_are_refused_before_any_work(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        _module().main(["--mnist", str(tmp_path), "--work", str(tmp_path / "w"), *argv])
    assert raised.value.code == 2
    assert not (tmp_path / "w").exists()


def test_float_only_trains_the_float_cnn_alone_on_28x28_inputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mnist = _tiny_mnist(tmp_path)
    module = _module()
    runs = {}
    for name, extra in (("plain", []), ("averaged", ["--float-average", "0.5"]),
                        ("shifted", ["--shifts", "3"])):
        work = tmp_path / name
        assert module.main(["--mnist", str(mnist), "--quick", "--float-only", "--work", str(work),
                            "--input-pool", "1", "--kernel1", "5", "--stride1", "2",
                            "--float-epochs", "2", *extra]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        # the float CNN's checkpoint only: no calibration, constrained training or network
        assert [p.name for p in work.iterdir()] == ["train"]
        assert [p.name for p in (work / "train").iterdir()] == ["float"]
    plain = runs["plain"]
    assert plain["float_only"] is True and not any("test" in key for key in plain)
    recipe = plain["recipe"]
    assert (recipe["input_pool"], recipe["kernel1"], recipe["stride1"], recipe["float_epochs"],
            recipe["float_average"]) == (1, 5, 2, 2, 0.0)
    assert runs["averaged"]["recipe"]["float_average"] == 0.5
    assert runs["shifted"]["recipe"]["shifts"] == 3 and recipe["shifts"] == 1  # --quick's 1
    assert "1x28x28" in plain["spec"] and "2x12x12" in plain["spec"]
    spec = module.cnn_spec(module.QUICK._replace(input_pool=1, kernel1=5, stride1=2))
    assert plain["devices"] == sum(plan.n_devices for plan in spec.plans)
    history = pd.read_csv(tmp_path / "plain" / "train" / "float" / "history.csv")
    assert len(plain["float_val_accuracy_by_epoch"]) == len(history) == 2
    assert plain["float_val_accuracy"] == history.val_accuracy[plain["float_best_epoch"] - 1]
    # the moving average is what is kept, and more shifted copies train on other batches:
    # other parameters than the plain run's
    kept = {name: np.load(tmp_path / name / "train" / "float" / "checkpoint.npz")
            for name in runs}
    keys = [k for k in kept["plain"].files if k.startswith("best")]
    for other in ("averaged", "shifted"):
        assert keys and any(not np.array_equal(kept["plain"][k], kept[other][k]) for k in keys)


def test_the_teacher_ensemble_is_the_mean_of_its_members_logits(tmp_path: Path) -> None:
    from memspice.tech import builtin
    from memspice.train.trainer import split_validation

    module = _module()
    recipe = module.QUICK._replace(teachers=3, float_epochs=2)
    cal = builtin()
    rng = np.random.default_rng(1)
    x = rng.uniform(cal.rails.vss, cal.rails.vdd, (60, 196))
    y = rng.integers(0, 10, 60)
    first = module.train_float(cal, recipe, x, y, tmp_path / "float")
    out = module.train_teachers(cal, recipe, x, y, first, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float", "float-member1",
                                                          "float-member2"]
    logits = [first[0].predict_logits(first[1].params, x)]
    again = module.train_float(cal, recipe, x, y, tmp_path / "float-member1", member=1)
    logits.append(again[0].predict_logits(again[1].params, x))
    again = module.train_float(cal, recipe, x, y, tmp_path / "float-member2", member=2)
    logits.append(again[0].predict_logits(again[1].params, x))
    # (the members are resumed from their finished checkpoints) each starts elsewhere and
    # sees other shifted copies: other networks
    assert not np.allclose(logits[0], logits[1]) and not np.allclose(logits[1], logits[2])
    np.testing.assert_allclose(out["teacher"](x), np.mean(logits, axis=0), rtol=1e-12)
    _, val = split_validation(len(x), 0.1, 0)
    assert out["ensemble_val_accuracy"] == np.mean(np.mean(logits, axis=0)[val].argmax(1) == y[val])
    assert len(out["member_val_accuracy"]) == 3


def test_a_stride_2_first_conv_keeps_the_28x28_network_like_the_14x14_one() -> None:
    """kernel 5, stride 2 on 28×28 gives the first conv 12×12 maps, as kernel 3 on 14×14."""
    module = _module()
    recipe = module.PRESETS["wide-hidden-distill"]
    wide28 = module.cnn_spec(recipe._replace(input_pool=1, kernel1=5, stride1=2))
    wide14 = module.cnn_spec(recipe)
    assert [p.output_shape for p in wide28.plans] == [p.output_shape for p in wide14.plans]
    assert sum(plan.n_devices for plan in wide28.plans) == 224_980
    assert (recipe.input_pool, recipe.kernel1, recipe.stride1,
            recipe.float_average) == (2, 0, 1, 0.0)


def test_the_wide_recipe_is_the_documented_one() -> None:
    module = _module()
    wide, default = module.WIDE, module.Recipe()
    assert (wide.channels, wide.init_mean, wide.tune_epochs) == ((8, 16), -4.0, 4)
    assert wide._replace(channels=default.channels, init_mean=default.init_mean,
                         tune_epochs=default.tune_epochs) == default
    assert sum(plan.n_devices for plan in module.cnn_spec(wide).plans) == 176_148


def test_the_wide_hidden_recipe_adds_a_dense_hidden_layer_to_the_wide_one() -> None:
    module = _module()
    recipe = module.PRESETS["wide-hidden"]
    assert module.PRESETS["wide"] == module.WIDE and module.PRESETS["default"] == module.Recipe()
    assert (recipe.hidden, recipe.tune_epochs, recipe.tune_lr) == (32, 8, 0.04)
    assert recipe._replace(hidden=0, tune_epochs=module.WIDE.tune_epochs,
                           tune_lr=module.WIDE.tune_lr) == module.WIDE
    spec = module.cnn_spec(recipe)
    assert [plan.n_columns for plan in spec.plans][-2:] == [32, 10]
    assert sum(plan.n_devices for plan in spec.plans) == 188_116


def test_the_distill_recipe_is_wide_hidden_with_longer_distilled_fine_tuning() -> None:
    module = _module()
    recipe = module.PRESETS["wide-hidden-distill"]
    assert (recipe.tune_epochs, recipe.tune_distill, recipe.tune_distill_temperature,
            recipe.tune_average) == (16, 0.5, 2.0, 0.0)
    assert recipe._replace(tune_epochs=8, tune_distill=0.0,
                           tune_distill_temperature=1.0) == module.WIDE_HIDDEN
    assert sum(plan.n_devices for plan in module.cnn_spec(recipe).plans) == 188_116


def test_the_retune_recipe_is_the_distill_one_with_two_warm_restarts() -> None:
    module = _module()
    recipe = module.PRESETS["wide-hidden-retune"]
    assert (recipe.retune_epochs, recipe.retune_lr, recipe.retune_cycles) == (8, 0.02, 2)
    assert recipe._replace(retune_epochs=0, retune_lr=0.01,
                           retune_cycles=1) == module.WIDE_HIDDEN_DISTILL
    assert module.Recipe().retune_epochs == 0  # the other presets have no restart


def test_the_teachers_recipe_is_the_distill_one_with_shifts_averaging_and_five_teachers() -> None:
    module = _module()
    teachers, distill = module.PRESETS["wide-hidden-teachers"], module.WIDE_HIDDEN_DISTILL
    assert (teachers.shifts, teachers.float_average, teachers.teachers) == (8, 0.999, 5)
    assert teachers._replace(shifts=distill.shifts, float_average=distill.float_average,
                             teachers=distill.teachers) == distill
    assert (distill.shifts, distill.tune_shifts, distill.teachers) == (4, 4, 1)



@pytest.mark.parametrize("soft_targets", [False, True])
@pytest.mark.parametrize("evaluator", ["load-aware", "coupled"])
def test_hidden_layer_gradients_match_finite_differences(evaluator: str,
                                                         soft_targets: bool) -> None:
    """conv → pool → conv → pool → flatten → dense → dense, the presets' topology in small:
    the hidden dense layer is loaded by the output layer and loads the conv layer before it.
    With soft targets (distillation's) the loss and its gradient are those of probabilities."""
    from analytic_inverter import VDD, VSS, synthetic_calibration

    from memspice.network import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
    from memspice.train.conv_model import CrossbarNetwork
    from memspice.train.losses import Loss

    cal = synthetic_calibration()
    if evaluator == "load-aware":
        from test_conv_load_aware import load_aware_calibration

        cal = load_aware_calibration(gain=0.1)
    spec = NetworkSpec((1, 8, 8), (Conv2d(2, 3), AvgPool2d(2), Conv2d(2, 2), AvgPool2d(2),
                                   Flatten(), Dense(3), Dense(3)))
    model = CrossbarNetwork(cal, spec, evaluator=evaluator, init_std=0.7)
    rng = np.random.default_rng(4)
    x, labels = rng.uniform(VSS, VDD, (4, spec.n_inputs)), rng.integers(0, 3, 4)
    if soft_targets:
        from memspice.train.losses import distillation_targets

        labels = distillation_targets(rng.standard_normal((4, 3)), labels, "softmax_ce", 0.6, 2.0)
        assert labels.shape == (4, 3) and np.allclose(labels.sum(axis=1), 1.0)
    params = model.init_params(rng)
    loss = Loss("softmax_ce", link="logit")
    grads = model.loss_and_grad(params, x, labels, loss)[1]
    assert np.abs(grads[-2]).max() > 0  # the hidden layer is trained
    for _ in range(3):
        direction = [rng.standard_normal(p.shape) for p in params]
        estimates = []
        for h in (1e-4, 5e-5):
            up = model.loss_and_grad([p + h * d for p, d in zip(params, direction)], x, labels,
                                     loss)[0]
            down = model.loss_and_grad([p - h * d for p, d in zip(params, direction)], x,
                                       labels, loss)[0]
            estimates.append((up - down) / (2 * h))
        numeric = (4 * estimates[1] - estimates[0]) / 3
        analytic = sum(np.sum(g * d) for g, d in zip(grads, direction))
        assert abs(analytic - numeric) <= 1e-6 * abs(numeric)
