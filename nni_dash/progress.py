"""One progress line per training stage over its step budget: steps, elapsed time, ETA and loss.

Lightning's default bar counts the batches of each *epoch*. Under a step budget
(:class:`~nni_dash.budget.StepBudget`) an epoch of a small dataset is a handful of steps, so a search
printed hundreds of bars that each ended within a second and never the stage's remaining time.
:class:`StepProgressBar` replaces it for step-budgeted fits (search and retrain)::

    search  450/1500 steps  0:25 elapsed  ETA 0:58  loss 0.660

Conventions:

* **Steps** are Lightning's processed training batches (what :class:`~nni_dash.budget.StepLimit`
  counts, restored on resume), out of the budget's current ``limit`` (the time probe may lower it).
* **ETA**: the steps left times the mean step time of this fit after its first (warm-up) step, and
  never past the budget's deadline. Before the second step it is ``?``.
* **Loss**: the ``train_loss`` the module logs to the progress bar, when there is one.
* **Where**: on a terminal the line is redrawn in place at most every ``interval`` seconds (0.5 by
  default); anywhere else (a log file, CI) a new line is written every ``interval`` seconds (30 by
  default). Either way a final line with the steps taken (``280/1500`` when the time limit cut the
  planned steps short) and the stage's time ends the fit. Only the global-zero process writes.
"""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar

from nni_dash.budget import StepBudget, StepLimit

__all__ = ["StepProgressBar", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss`` from one hour): ``65.2 -> '1:05'``, ``3725 -> '1:02:05'``."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepProgressBar(ProgressBar):
    """Lightning progress bar that shows a stage's steps out of its :class:`StepBudget` (module docstring)."""

    def __init__(self, budget: StepBudget, label: str, *, stream: TextIO | None = None,
                 interval: float | None = None) -> None:
        super().__init__()
        self.budget, self.label = budget, label
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.5 if self.tty else 30.0)
        self._enabled = True
        self._start = self._t1 = self._last = 0.0
        self._first = 0          # steps done when the first step of this fit ended
        self._width = 0          # length of the line drawn in place (to blank it when it shrinks)

    # Lightning's ProgressBar interface
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def eta(self, done: int, now: float) -> float | None:
        """Seconds left for this stage (module docstring), ``None`` before a step time is known."""
        left = max(0, self.budget.limit - done)
        timed = done - self._first
        if left == 0:
            return 0.0
        if timed <= 0:
            return None
        eta = left * (now - self._t1) / timed
        if self.budget.deadline is not None:
            eta = min(eta, max(0.0, self.budget.deadline - now))
        return eta

    def line(self, trainer: pl.Trainer, now: float) -> str:
        done = StepLimit.batches_done(trainer)
        eta = self.eta(done, now)
        text = (f"{self.label}  {done}/{self.budget.limit} steps  {format_seconds(now - self._start)} elapsed  "
                f"ETA {'?' if eta is None else format_seconds(eta)}")
        loss = _train_loss(trainer)
        return text if loss is None else f"{text}  loss {loss:.3f}"

    def _write(self, text: str, *, final: bool = False) -> None:
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _active(self, trainer: pl.Trainer) -> bool:
        return self._enabled and trainer.is_global_zero

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._t1, self._first, self._width = self._start, -1, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        now = time.monotonic()
        if self._first < 0:  # the first step of this fit: warm-up, time from its end
            self._t1, self._first = now, StepLimit.batches_done(trainer)
        if self._active(trainer) and now - self._last >= self.interval:
            self._last = now
            self._write(self.line(trainer, now))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer):
            done = StepLimit.batches_done(trainer)
            planned = f"/{self.budget.wanted}" if done < self.budget.wanted else ""  # cut short by the time limit
            loss = _train_loss(trainer)
            self._write(f"{self.label}  {done}{planned} steps in {format_seconds(time.monotonic() - self._start)}"
                        + ("" if loss is None else f"  loss {loss:.3f}"), final=True)


def _train_loss(trainer: pl.Trainer) -> float | None:
    metrics = trainer.progress_bar_metrics
    for key in ("train_loss_step", "train_loss"):
        if key in metrics:
            return float(metrics[key])
    return None
