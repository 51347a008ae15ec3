"""The stage progress line: steps out of the budget, ETA bounded by the deadline, one line per write."""
from __future__ import annotations

import io
import re
import time

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from nni_dash.budget import StepBudget, StepLimit
from nni_dash.progress import StepProgressBar, format_seconds


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.1)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(bar: StepProgressBar, budget: StepBudget) -> pl.Trainer:
    data = torch.utils.data.TensorDataset(torch.randn(40, 4), torch.randint(0, 2, (40,)))
    trainer = pl.Trainer(max_epochs=100, callbacks=[StepLimit(budget), bar], logger=False, enable_progress_bar=True,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(_Tiny(), torch.utils.data.DataLoader(data, batch_size=8))
    return trainer


def test_format_seconds_known_answers():
    assert [format_seconds(s) for s in (0, 59.4, 65.2, 600, 3725)] == ["0:00", "0:59", "1:05", "10:00", "1:02:05"]
    assert format_seconds(-3) == "0:00"


def test_one_line_per_update_over_the_whole_budget_not_per_epoch():
    budget, out = StepBudget(23), io.StringIO()
    bar = StepProgressBar(budget, "search", stream=out, interval=0.0)
    trainer = _fit(bar, budget)
    assert trainer.progress_bar_callback is bar  # it replaces Lightning's per-epoch bar
    lines = out.getvalue().splitlines()
    assert len(lines) == 23 + 1 and "\r" not in out.getvalue()  # a line per step (interval 0) and a final one
    done = [int(re.match(r"search  (\d+)/23 steps  \d+:\d\d elapsed  ETA ", line).group(1)) for line in lines[:-1]]
    assert done == list(range(1, 24))  # counted over the budget across the 5 epochs, not reset per epoch
    assert "ETA ?" in lines[0] and "ETA 0:00" in lines[-2]  # no step time before the 2nd step; none left at the end
    assert re.fullmatch(r"search  23 steps in \d+:\d\d  loss \d+\.\d{3}", lines[-1])
    assert all("loss " in line for line in lines[1:])


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ends_once():
    budget, out = StepBudget(10), _Terminal()
    _fit(StepProgressBar(budget, "retrain", stream=out, interval=0.0), budget)
    text = out.getvalue()
    assert text.count("\r") == 10 + 1 and text.count("\n") == 1 and text.endswith("\n")
    assert "retrain  10 steps in" in text.split("\r")[-1]


def test_without_a_terminal_it_writes_at_most_once_per_interval():
    budget, out = StepBudget(30), io.StringIO()
    _fit(StepProgressBar(budget, "search", stream=out, interval=3600.0), budget)
    assert out.getvalue().splitlines()[0].startswith("search  30 steps in")  # only the final line


def test_eta_is_the_measured_step_time_times_the_steps_left_and_never_past_the_deadline():
    now = time.monotonic()
    bar = StepProgressBar(StepBudget(1000), "search", stream=io.StringIO())
    bar._t1, bar._first = now - 10.0, 0          # 10 steps timed in 10 s: 1 s per step
    assert bar.eta(10, now) == pytest.approx(990.0)
    assert bar.eta(0, now) is None               # nothing timed yet
    assert bar.eta(1000, now) == 0.0
    bounded = StepProgressBar(StepBudget(1000, deadline=now + 5.0), "search", stream=io.StringIO())
    bounded._t1, bounded._first = now - 10.0, 0
    assert bounded.eta(10, now) == pytest.approx(5.0)  # the deadline ends the stage first
    assert bounded.eta(10, now + 60.0) == 0.0


def test_a_disabled_bar_writes_nothing():
    budget, out = StepBudget(5), io.StringIO()
    bar = StepProgressBar(budget, "search", stream=out, interval=0.0)
    bar.disable()
    _fit(bar, budget)
    assert out.getvalue() == ""


def test_a_run_cut_short_by_its_time_limit_says_how_many_steps_were_planned():
    budget, out = StepBudget(1000, deadline=time.monotonic() - 1.0), io.StringIO()  # already past its deadline
    _fit(StepProgressBar(budget, "search", stream=out, interval=3600.0), budget)
    assert re.match(r"search  \d+/1000 steps in \d+:\d\d", out.getvalue().splitlines()[-1]), out.getvalue()
