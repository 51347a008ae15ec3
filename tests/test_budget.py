"""Budget arithmetic (nni_dash.budget): steps from the data size, time shares, the step limiter."""
from __future__ import annotations

import time

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn

from nni_dash.budget import (
    AUTO_MINUTES, NEED_MARGIN, RESERVE_SECONDS, RULES, SHARES, Budget, StepBudget, StepLimit, allocate,
    auto_batch_size, auto_steps, parse_budget, steps_per_epoch,
)
from nni_dash.errors import ConfigError


@pytest.mark.parametrize("n, size", [(1, 1), (5, 5), (40, 8), (50, 8), (300, 32), (512, 64), (50_000, 64)])
def test_auto_batch_size_grows_with_the_data_and_is_capped(n, size):
    assert auto_batch_size(n) == size


def test_steps_follow_the_dataset_size():
    tiny, small, large = (auto_steps("retrain", n, auto_batch_size(n)) for n in (40, 2_000, 50_000))
    assert tiny == RULES["retrain"].min_steps >= 1000           # a 40-sample set gets thousands of steps
    assert small == 200 * steps_per_epoch(2_000, 64) > tiny     # 200 passes over 2 000 samples
    assert large == RULES["retrain"].max_steps                  # 50 000 samples: capped, not days
    for stage in ("search", "trial", "retrain"):
        rule = RULES[stage]
        assert auto_steps(stage, 40, 8) == rule.min_steps
        assert auto_steps(stage, 10 ** 7, 64) == rule.max_steps
        assert auto_steps(stage, 4_000, 64) == max(rule.min_steps, min(rule.max_steps, int(rule.epochs * 62)))


def test_steps_per_epoch_drops_the_last_partial_batch():
    assert steps_per_epoch(50, 8) == 6 and steps_per_epoch(64, 64) == 1 and steps_per_epoch(5, 8) == 1


@pytest.mark.parametrize("text, mode, minutes", [("10m", "time", 10.0), ("90s", "time", 1.5), ("1.5h", "time", 90.0),
                                                  ("7", "time", 7.0), (" 2 min", "time", 2.0), ("auto", "auto", None),
                                                  ("EPOCHS", "epochs", None)])
def test_parse_budget(text, mode, minutes):
    assert parse_budget(text) == {"mode": mode, "minutes": minutes}


@pytest.mark.parametrize("text", ["ten minutes", "10x", "-3m", ""])
def test_parse_budget_rejects_garbage_in_one_line(text):
    with pytest.raises(ConfigError, match="--budget") as err:
        parse_budget(text)
    assert "\n" not in str(err.value)


def test_time_budget_shares_and_reserves():
    budget = Budget("time", 2.0, started=1000.0)
    stages = ["search", "tune", "retrain"]
    usable = 120 - 3 * RESERVE_SECONDS
    assert budget.deadline("search", stages, now=1000.0) == pytest.approx(1000 + usable * SHARES["search"])
    # later stages share what is left: retrain alone gets all of it but its reserve
    assert budget.deadline("retrain", ["retrain"], now=1100.0) == pytest.approx(1100 + 20 - RESERVE_SECONDS)
    # past the end: no time, not a negative deadline
    assert budget.deadline("retrain", ["retrain"], now=1200.0) == 1200.0
    assert Budget("auto", started=0.0).end == 60 * AUTO_MINUTES
    assert Budget("epochs").deadline("search", stages) is None and not Budget("epochs").steps_based


def test_a_later_stage_that_needs_less_than_its_share_gives_the_rest_to_the_others():
    stages = ["search", "tune", "retrain"]
    assert allocate(100.0, stages) == pytest.approx({"search": 35.0, "tune": 25.0, "retrain": 40.0})
    # the retrain needs 10 s of its 40: search and tune share the other 90 as 35:25
    assert allocate(100.0, stages, {"retrain": 10.0}) == pytest.approx(
        {"search": 90 * 35 / 60, "tune": 90 * 25 / 60, "retrain": 10.0})
    # water-filling: with the retrain capped, the tune's 30 s falls below its new share (37.5) and is capped too
    assert allocate(100.0, stages, {"tune": 30.0, "retrain": 10.0}) == pytest.approx(
        {"search": 60.0, "tune": 30.0, "retrain": 10.0})
    # a need above its share changes nothing; no time is no time
    assert allocate(100.0, stages, {"retrain": 50.0}) == pytest.approx({"search": 35.0, "tune": 25.0, "retrain": 40.0})
    assert allocate(-5.0, stages, {"retrain": 1.0}) == {"search": 0.0, "tune": 0.0, "retrain": 0.0}


def test_the_deadline_reserves_later_needs_with_the_margin_and_never_caps_the_stage_itself():
    budget = Budget("time", 2.0, started=1000.0)
    usable = 120 - 3 * RESERVE_SECONDS
    retrain = 8.0
    expect = (usable - NEED_MARGIN * retrain) * SHARES["search"] / (SHARES["search"] + SHARES["tune"])
    got = budget.deadline("search", ["search", "tune", "retrain"], now=1000.0, needs={"retrain": retrain, "search": 1.0})
    assert got == pytest.approx(1000 + expect)
    # a need of a stage that is not still to come is ignored
    assert budget.deadline("retrain", ["retrain"], now=1100.0, needs={"tune": 1.0}) == pytest.approx(1116.0)


def test_too_small_a_budget_is_a_one_line_error_naming_the_minimum():
    with pytest.raises(ConfigError, match=r"budget.minutes=0.1 \(6 s\) is too small .* the minimum is") as err:
        Budget("time", 0.1).check(["search", "tune", "retrain"])
    assert "\n" not in str(err.value)
    Budget("time", 2).check(["search", "tune", "retrain"])
    with pytest.raises(ConfigError, match="needs a positive number of minutes"):
        Budget("time", None)


def test_step_budget_lowers_its_limit_to_meet_the_deadline():
    steps = StepBudget(1000, deadline=110.0)
    steps.fit(now=100.0, done=5, seconds_per_step=0.1)      # 10 s left: 100 more steps
    assert steps.limit == 105
    steps.fit(now=100.0, done=5, seconds_per_step=0.001)    # faster than needed: never above wanted
    assert steps.limit == 105
    late = StepBudget(50, deadline=0.0)
    late.fit(now=10.0, done=3, seconds_per_step=1.0)
    assert late.limit == 4                                   # always at least one more step


class _Tiny(pl.LightningModule):
    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.layer, self.delay = nn.Linear(4, 2), delay

    def training_step(self, batch, batch_idx):
        if self.delay:
            time.sleep(self.delay)
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.1)


def _fit(budget: StepBudget, delay: float = 0.0, epochs: int = 100) -> int:
    data = torch.utils.data.TensorDataset(torch.randn(40, 4), torch.randint(0, 2, (40,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    limit = StepLimit(budget)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[limit], logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(_Tiny(delay), loader)
    return StepLimit.batches_done(trainer)


def test_step_limit_stops_mid_epoch_at_the_planned_step():
    budget = StepBudget(23)
    assert _fit(budget) == 23 and budget.limit == 23 and not budget.stopped_by_deadline
    assert budget.seconds_per_step is not None  # measured after the probe steps


def test_step_limit_stops_at_the_deadline_and_plans_from_the_measured_step_time():
    start = time.monotonic()
    budget = StepBudget(10_000, deadline=start + 1.0)
    done = _fit(budget, delay=0.02)
    elapsed = time.monotonic() - start
    assert done < 100 and budget.limit == done          # ~1 s of 20 ms steps, not 10 000 steps
    assert elapsed < 1.0 * 1.1 + 1.0                     # trainer start-up aside, within the deadline
    assert budget.seconds_per_step == pytest.approx(0.02, rel=0.5)


def test_the_step_time_probe_leaves_the_random_state_as_it_found_it():
    """The budget probes before the search; a run that probes must train the weights one that does not would."""
    from nni_dash.backbones import default_sample
    from nni_dash.pipeline.retrain import step_seconds
    from nni_dash.tasks import create_task
    data = create_task("digits")
    args = dict(depth=10, kernel_sizes=(3,), dilations=(1,))
    sample = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    seconds = step_seconds(data, sample, backbone="wrn", backbone_args=args, batch_size=8)
    assert 0.0 < seconds < 60.0 and torch.equal(torch.get_rng_state(), before)
