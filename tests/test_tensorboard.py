"""TensorBoard: the folder NNI's web UI reads (microsoft/nni#5609) and what a one-shot search writes there."""
from __future__ import annotations

from pathlib import Path

import pytest

from nni_dash.monitor import OuterTrialReporter, nni_tensorboard_dir


def test_nni_tensorboard_dir_works_around_5609(monkeypatch, tmp_path):
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)
    assert nni_tensorboard_dir() is None
    exp = tmp_path / "exp1"
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(exp / "environments" / "local-env" / "trials" / "AbCd1"))
    monkeypatch.setenv("NNI_TRIAL_JOB_ID", "AbCd1")
    assert nni_tensorboard_dir() == exp / "trials" / "AbCd1" / "output" / "tensorboard"
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path / "elsewhere"))  # other training services
    assert nni_tensorboard_dir() == tmp_path / "elsewhere" / "tensorboard"


def scalars(folder: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("strategy", ["DASH", "DARTS"])
def test_search_writes_losses_metrics_and_alpha_probabilities(tmp_path, strategy):
    from nni_dash.cli.stages import Run
    from nni_dash.config import ExperimentConfig
    from nni_dash.tasks import create_task

    cfg = ExperimentConfig().apply_overrides({
        "backbone.args": {"depth": 10, "kernel_sizes": [3, 5], "dilations": [1, 2]}, "search.strategy": strategy,
        "budget.mode": "epochs", "search.epochs": 2, "search.batch_size": 256,
        "search.strategy_args": {"log_prob_every_n_step": 1},
        "trainer.log_every_n_steps": 1, "trainer.progress_bar": False}).validate()
    sent = []
    run = Run(cfg, create_task("digits"), tmp_path, tmp_path / "tb", sinks=[lambda *a: sent.append(a)],
              echo=lambda s: None)
    run.run(("search",))
    tags = scalars(tmp_path / "tb" / "search")
    probs = {t: v for t, v in tags.items() if t.startswith("prob/")}
    assert {t.split("/")[1] for t in probs} == set(run.sample)       # every layer
    assert len(probs) == 4 * len(run.sample)                          # every candidate
    assert len(probs["prob/stem/k3d1"]) > 2                           # per step (log_probs) + per epoch
    assert all(0.0 <= v <= 1.0 for values in probs.values() for v in values)
    assert "train_loss_step" in tags and len(tags["val_accuracy"]) == 2  # supernet score per epoch
    assert [(stage, epoch) for stage, epoch, _ in sent] == [("search", 0), ("search", 1)]
    assert all("prob/stem/k3d1" in metrics and "val_accuracy" in metrics for *_, metrics in sent)


class FakeChannel:
    def __init__(self):
        self.sent = []

    def send_metric(self, **kwargs):
        self.sent.append(kwargs)


def test_outer_reporter_keeps_the_channel_captured_before_the_search(monkeypatch):
    import nni.runtime.trial_command_channel as channels
    first, swapped = FakeChannel(), FakeChannel()
    monkeypatch.setattr(channels, "_channel", first)
    monkeypatch.setattr("nni.trial._params", {"parameter_id": 7, "parameters": {}})
    reporter = OuterTrialReporter()
    reporter.default_key = "val_accuracy"
    monkeypatch.setattr(channels, "_channel", swapped)  # what NNI's sequential engine does during a search
    reporter.sink("search", 0, {"train_loss": 1.0, "val_accuracy": 0.5})
    reporter.sink("retrain", 0, {"train_loss": 0.5})
    reporter.final({"default": 0.9, "prob/stem/k3d1": 0.3})
    assert swapped.sent == []
    assert [m["type"] for m in first.sent] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert [m["sequence"] for m in first.sent] == [0, 1, 0]
    assert all(m["parameter_id"] == 7 for m in first.sent)
    assert first.sent[0]["value"] == {"default": 0.5, "search_train_loss": 1.0, "search_val_accuracy": 0.5,
                                      "stage_index": 0.0, "stage_epoch": 0.0}
    assert first.sent[1]["value"] == {"default": 0.5, "retrain_train_loss": 0.5, "stage_index": 2.0,
                                      "stage_epoch": 0.0}  # no val metric: the first one is the default
    assert first.sent[2]["value"] == {"default": 0.9, "prob_stem_k3d1": 0.3}  # no "/" reaches NNI
