"""`memspice train` starts from `memspice run`'s training defaults and warns where a choice misleads."""

from __future__ import annotations

import json

from memspice.cli import build_parser, main
from memspice.fit.calibration import phax_reference_calibration, save_calibration
from memspice.pipeline.config import TrainingConfig, config_from_dict
from memspice.train.command import learning_rate, resolved_input_noise, resolved_schedule


def test_train_defaults_are_the_pipelines():
    args = build_parser().parse_args(["train"])
    t = TrainingConfig()
    assert args.lr is None
    assert (learning_rate(args.lr, "coupled"), learning_rate(args.lr, "float")) == (t.learning_rate,
                                                                                  t.float_learning_rate)
    assert t.float_learning_rate != t.learning_rate  # the float baseline has its own default
    assert learning_rate(0.2, "float") == 0.2
    assert (args.epochs, args.batch_size, learning_rate(args.lr, "static"), args.optimizer, args.loss, args.loss_link, resolved_schedule(args),
            args.warmup_epochs, args.lr_floor_fraction, args.grad_clip_norm, args.average_decay,
            args.logit_temperature, args.seed) == (
        t.epochs, t.batch_size, t.learning_rate, t.optimizer, t.loss, t.loss_link, t.schedule,
        t.warmup_epochs, t.lr_floor_fraction, t.grad_clip_norm, t.average_decay, t.logit_temperature, t.seed)
    assert resolved_input_noise(args, "coupled") == t.input_noise_std > 0
    assert resolved_input_noise(args, "float") == 0.0  # the float baseline trains on clean inputs


def test_full_batch_optimizers_get_the_pipelines_dependent_defaults():
    for optimizer in ("lbfgs", "cg"):
        args = build_parser().parse_args(["train", "--optimizer", optimizer])
        assert (resolved_schedule(args), resolved_input_noise(args, "coupled")) == ("exponential", 0.0)
        run = config_from_dict({"training": {"optimizer": optimizer}}).training
        assert (run.schedule, run.input_noise_std) == ("exponential", 0.0)
    args = build_parser().parse_args(["train", "--schedule", "exponential", "--input-noise-std", "0.01"])
    assert (resolved_schedule(args), resolved_input_noise(args, "static")) == ("exponential", 0.01)


def _train(tmp_path, capsys, *extra):
    code = main(["train", "--dataset", "iris", "--epochs", "1", "-q", "--json", "--out", str(tmp_path / "out"), *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def test_no_calibration_warns_in_one_line(tmp_path, capsys):
    code, summary, err = _train(tmp_path, capsys)
    assert code == 0 and summary["mode"] == "static"
    assert err.startswith("memspice: warning: no --calibration") and err.count("\n") == 1
    assert "memspice calibrate" in err


def test_static_mode_with_a_calibration_warns(tmp_path, capsys):
    cal = tmp_path / "cal.json"
    save_calibration(phax_reference_calibration(), cal)  # no current table: auto means static
    code, summary, err = _train(tmp_path, capsys, "--calibration", str(cal))
    assert code == 0 and summary["mode"] == "static"
    assert err.startswith("memspice: warning: --mode static") and err.count("\n") == 1
