"""The pipeline's float baseline settings, derived from the constrained network's."""

from __future__ import annotations

from memspice.pipeline.train_stage import baseline_settings
from memspice.train.trainer import TrainConfig


def test_output_link_baseline_keeps_softmax_on_rescaled_outputs() -> None:
    settings = TrainConfig(lr=0.005, loss="bce")
    base = baseline_settings(settings)
    assert (base.loss, base.loss_link, base.lr) == ("softmax_ce", "output", 0.005)
    assert baseline_settings(settings, 0.001).lr == 0.001


def test_logit_link_baseline_takes_the_same_loss_on_its_logits() -> None:
    settings = TrainConfig(lr=0.005, loss="bce", loss_link="logit", logit_temperature=2.0, average_decay=0.99)
    base = baseline_settings(settings, 0.001)
    assert (base.loss, base.loss_link, base.logit_temperature, base.average_decay) == ("bce", "logit", 2.0, 0.99)
    assert base.lr == 0.001 and baseline_settings(settings).lr == 0.005
