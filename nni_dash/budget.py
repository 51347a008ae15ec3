"""Budgets: how many optimiser steps each stage trains, at which batch size, and when it must stop.

Every stage (``search``, each ``tune`` trial, ``retrain``) reads its step count from here; no stage
holds numbers of its own. Three modes (``budget.mode`` in the config, ``--budget`` on the CLI):

* ``auto`` (default): the steps follow from the training-set size ``n`` and the batch size
  ``b = auto_batch_size(n)``: ``clip(epochs * ceil(n / b), min_steps, max_steps)`` with the
  :data:`RULES` below, so a 40-sample set gets thousands of steps and a 50 000-sample set a bounded
  number. The measured step time then caps the whole pipeline at :data:`AUTO_MINUTES`.
* ``time`` (``budget.minutes``, ``--budget 10m``): the whole pipeline fits a wall-clock limit. At its
  start each stage gets its part of the time left (minus :data:`RESERVE_SECONDS` per stage still to
  come, for start-up, evaluation and artefacts), and trains ``min(auto steps, time / measured step time)``.
  The parts follow :data:`SHARES`, except that a later stage whose *need* (its auto steps times the
  step time the pipeline measured for it beforehand, times :data:`NEED_MARGIN`) is below its share
  keeps only that need, and the rest is shared again (:func:`allocate`). So a retrain that takes a
  minute leaves the search and the tuning the time it would not use.
* ``epochs``: the stages' own ``epochs`` settings (``search.epochs``, ``tune.trial_epochs``,
  ``retrain.epochs``), to reproduce the DASH reference.

The measured step time comes from the run itself: :class:`StepLimit` times the first
:data:`PROBE_STEPS` steps after a warm-up step, then fixes the stage's step count
(:attr:`StepBudget.limit`), which the learning-rate schedule reads. Afterwards it keeps checking the
projected end against the deadline, lowers the count when evaluation or a slower machine would
overrun it, and stops at the deadline in any case. Conventions: times are ``time.monotonic()``
seconds; a *step* is one training batch (one weight update; in DASH's bilevel mode it also holds one
alpha update).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl

from nni_dash.errors import ConfigError

__all__ = ["MODES", "RULES", "SHARES", "AUTO_MINUTES", "PROBE_STEPS", "RESERVE_SECONDS", "NEED_MARGIN",
           "RUN_SECONDS", "StepRule",
           "StepBudget", "Budget", "StepLimit", "auto_batch_size", "auto_steps", "parse_budget",
           "steps_per_epoch", "minimum_seconds", "allocate"]

MODES = ("auto", "time", "epochs")
#: cap of the whole pipeline in ``auto`` mode (``--budget`` lifts it)
AUTO_MINUTES = 10.0
#: steps timed (after one warm-up step) before a stage's step count is fixed
PROBE_STEPS = 5
#: seconds kept back per stage for Trainer start-up, evaluation, checkpoints and artefacts
RESERVE_SECONDS = 4.0
#: fewest steps any stage trains
MIN_STEPS = 1


@dataclasses.dataclass(frozen=True)
class StepRule:
    """``clip(epochs * steps_per_epoch, min_steps, max_steps)`` steps for one training run."""

    epochs: float
    min_steps: int
    max_steps: int

    def steps(self, per_epoch: int) -> int:
        return int(min(max(math.ceil(self.epochs * per_epoch), self.min_steps), self.max_steps))


#: auto step rules per training run ("trial" = one tune trial on one fold)
RULES: dict[str, StepRule] = {
    "search": StepRule(epochs=100, min_steps=1500, max_steps=10_000),
    "trial": StepRule(epochs=40, min_steps=400, max_steps=2_500),
    "retrain": StepRule(epochs=200, min_steps=2000, max_steps=20_000),
}
#: share of the time left that a stage may use (renormalised over the stages still to run)
SHARES: dict[str, float] = {"search": 0.35, "tune": 0.25, "retrain": 0.40}
#: a later stage's estimated seconds are reserved times this (step-time noise, validation passes)
NEED_MARGIN = 1.25
#: seconds one tuning run takes beyond its steps (Trainer start-up, validation, scoring), for its need
RUN_SECONDS = 1.0


def allocate(seconds: float, stages: Sequence[str], needs: Mapping[str, float] | None = None) -> dict[str, float]:
    """Split ``seconds`` over ``stages`` by :data:`SHARES`; a stage with a smaller need gets only its need.

    ``needs``: estimated seconds per stage (stages without one can use any time). Water-filling: a
    stage whose need is below its share of what is left is given its need, and the others share the
    rest, until no need is below its share. The parts sum to ``seconds`` unless every stage has a need
    and together they need less.
    """
    needs, open_, left = dict(needs or {}), list(stages), max(0.0, float(seconds))
    share = {s: SHARES.get(s, 0.3) for s in stages}
    parts: dict[str, float] = {}
    while open_:
        total = sum(share[s] for s in open_)
        small = [s for s in open_ if s in needs and needs[s] < left * share[s] / total]
        if not small:
            break
        for s in small:
            parts[s] = max(0.0, needs[s])
            left -= parts[s]
            open_.remove(s)
    total = sum(share[s] for s in open_)
    parts.update({s: left * share[s] / total for s in open_})
    return {s: parts[s] for s in stages}


def auto_batch_size(n: int) -> int:
    """The largest power of two ``<= n / 8``, clipped to ``[8, 64]`` and to ``n``.

    Tiny sets get small batches (more, noisier steps: measured better at 50 samples), large
    ones the reference's 64.
    """
    if n < 1:
        raise ConfigError(f"batch size: the training split is empty (n={n})")
    size = 2 ** max(3, min(6, int(math.floor(math.log2(max(n / 8, 1))))))
    return int(min(size, n))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per pass over ``n`` samples (the last partial batch is dropped when ``n > batch_size``)."""
    return max(1, n // batch_size) if n > batch_size else 1


def auto_steps(stage: str, n: int, batch_size: int) -> int:
    """Steps of one ``stage`` run (``"search"``, ``"trial"``, ``"retrain"``) in ``auto`` mode."""
    return RULES[stage].steps(steps_per_epoch(n, batch_size))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$", re.I)


def parse_budget(text: str) -> dict[str, Any]:
    """``--budget`` text to config values: ``"10m"``/``"90s"``/``"1.5h"``/``"7"`` (minutes), ``"auto"``, ``"epochs"``."""
    word = str(text).strip().lower()
    if word in ("auto", "epochs"):
        return {"mode": word, "minutes": None}
    match = _DURATION.match(word)
    if not match:
        raise ConfigError(f"--budget {text!r}: expected a duration such as 90s, 10m or 1.5h, or auto, or epochs")
    value = float(match.group(1))
    unit = (match.group(2) or "m").lower()
    minutes = value / 60 if unit in ("s", "sec") else value * 60 if unit == "h" else value
    return {"mode": "time", "minutes": minutes}


def minimum_seconds(stages: Sequence[str]) -> float:
    """Smallest wall-clock limit accepted for ``stages``: start-up plus the reserve of each stage."""
    return 10.0 + RESERVE_SECONDS * len(stages)


@dataclasses.dataclass
class StepBudget:
    """The step plan of one training run, shared by :class:`StepLimit` and the LR schedule.

    ``wanted``: steps the run should take; ``deadline``: ``time.monotonic()`` by which it must end
    (``None``: no time limit). ``limit`` starts at ``wanted`` and is lowered once the step time is
    measured if ``wanted`` steps would not end by the deadline.
    """

    wanted: int
    deadline: float | None = None
    limit: int = 0
    fixed: bool = False          # True once the probe has set ``limit``
    seconds_per_step: float | None = None
    stopped_by_deadline: bool = False

    def __post_init__(self) -> None:
        self.wanted = max(MIN_STEPS, int(self.wanted))
        self.limit = self.limit or self.wanted

    def fit(self, now: float, done: int, seconds_per_step: float, *, allow_raise: bool = False) -> None:
        """Set ``limit`` so that the remaining steps end by the deadline (never below ``done + 1``).

        The limit only goes down, except with ``allow_raise`` (early in a run, while the first
        measurements may still carry start-up costs or a briefly busy machine), and never above ``wanted``.
        """
        self.seconds_per_step = seconds_per_step
        if self.deadline is None:
            return
        affordable = done + int(max(0.0, self.deadline - now) / max(seconds_per_step, 1e-9))
        ceiling = self.wanted if allow_raise else self.limit
        self.limit = max(min(ceiling, affordable), done + 1, MIN_STEPS)

    def summary(self) -> dict[str, Any]:
        return {"wanted_steps": self.wanted, "steps": self.limit, "seconds_per_step": self.seconds_per_step,
                "stopped_by_deadline": self.stopped_by_deadline}


class Budget:
    """The budget of one pipeline run (see the module docstring); ``started`` is when the run began."""

    def __init__(self, mode: str = "auto", minutes: float | None = None, *, started: float | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"budget.mode: unknown value {mode!r}; allowed: {', '.join(MODES)}")
        if mode == "time" and (minutes is None or not minutes > 0):
            raise ConfigError(f"budget.minutes={minutes!r}: mode 'time' needs a positive number of minutes "
                              f"(e.g. --budget 10m)")
        self.mode = mode
        self.minutes = minutes if mode == "time" else (AUTO_MINUTES if mode == "auto" else None)
        self.started = time.monotonic() if started is None else started

    @property
    def steps_based(self) -> bool:
        return self.mode != "epochs"

    @property
    def end(self) -> float | None:
        return None if self.minutes is None else self.started + 60.0 * self.minutes

    def check(self, stages: Sequence[str]) -> None:
        """One-line :class:`ConfigError` when the limit cannot hold start-up and one step per stage."""
        if self.mode != "time":
            return
        need = minimum_seconds(stages)
        if 60.0 * self.minutes < need:
            raise ConfigError(f"budget.minutes={self.minutes:g} ({60 * self.minutes:.0f} s) is too small for "
                              f"{', '.join(stages)}: the minimum is {need / 60:.2f} minutes ({need:.0f} s: start-up "
                              f"and one step per stage); pass e.g. --budget {max(1, math.ceil(need / 60))}m")

    def deadline(self, stage: str, remaining_stages: Sequence[str], *, now: float | None = None,
                 needs: Mapping[str, float] | None = None) -> float | None:
        """When ``stage`` must end: its part of the time left, ``remaining_stages`` counting it too.

        ``needs``: estimated seconds of later stages (without :data:`NEED_MARGIN`; see :func:`allocate`).
        The stage itself has no cap: it ends at its step count anyway, and later stages start with what it leaves.
        """
        if self.end is None:
            return None
        now = time.monotonic() if now is None else now
        later = [s for s in remaining_stages if s != stage]
        usable = self.end - now - RESERVE_SECONDS * (len(later) + 1)
        known = {s: NEED_MARGIN * v for s, v in (needs or {}).items() if s in later}
        return now + allocate(usable, [stage, *later], known)[stage]

    def stage(self, stage: str, *, n: int, batch_size: int, remaining_stages: Sequence[str],
              rule: str | None = None, needs: Mapping[str, float] | None = None) -> StepBudget:
        """The :class:`StepBudget` of one run of ``stage`` (``rule`` picks the step rule; default the stage)."""
        return StepBudget(auto_steps(rule or stage, n, batch_size), self.deadline(stage, remaining_stages, needs=needs))

    def describe(self) -> str:
        if self.mode == "epochs":
            return "budget: epochs (search.epochs, tune.trial_epochs, retrain.epochs)"
        if self.mode == "auto":
            return f"budget: auto (steps from the data size, at most {AUTO_MINUTES:g} minutes in all)"
        return f"budget: {self.minutes:g} minutes for the whole run"


class StepLimit(pl.Callback):
    """Stop a fit after :attr:`StepBudget.limit` training batches or at its deadline (see module docstring).

    The batch count is Lightning's (restored from checkpoints), so a resumed run ends where an
    uninterrupted one would. Under DDP the stop decision is reduced across ranks.
    """

    def __init__(self, budget: StepBudget, *, probe_steps: int = PROBE_STEPS) -> None:
        self.budget, self.probe_steps = budget, probe_steps
        self._t0: float | None = None
        self._first: int = 0

    @staticmethod
    def batches_done(trainer: pl.Trainer) -> int:
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = None
        if self.batches_done(trainer) >= self.budget.limit:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done, now, budget = self.batches_done(trainer), time.monotonic(), self.budget
        if self._t0 is None:  # the first step of this fit is the warm-up; time from its end
            self._t0, self._first = now, done
        timed = done - self._first
        if timed > 0 and (timed == self.probe_steps or (budget.fixed and timed % 10 == 0)):
            early = done <= max(2 * self.probe_steps, budget.wanted // 10)  # still in the warm-up: may go up again
            budget.fit(now, done, (now - self._t0) / timed, allow_raise=early)
            budget.fixed = True
        stop = done >= budget.limit
        if budget.deadline is not None and now >= budget.deadline and not stop:
            stop = budget.stopped_by_deadline = True
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if stop:
            budget.limit = min(budget.limit, done)
            trainer.should_stop = True
