"""NNI's multi-trial NAS strategies on a DashConv model space, run in-process.

A ``DashConv1d/2d`` is one NNI categorical over ``"k<k>d<d>"`` values, so NNI's multi-trial strategies
sample it like any other space: ``Random``, ``GridSearch``, ``RegularizedEvolution``, ``TPE`` and
``PolicyBasedRL`` (:data:`MULTI_TRIAL`). Each sampled CNN (plain ``nn.Conv1d/2d`` layers, fresh weights
for the searched convs) trains for :func:`trial_steps` steps (or ``trial_epochs`` epochs) with the
pipeline's recipe, and its score on the val split is its NNI metric (negated for metrics where lower
is better: NNI's strategies maximise). Trials run one after another in this process (NNI's sequential
engine), until the search stage's deadline or ``max_trials``; the export is the best trial's sample.

``RegularizedEvolution`` defaults to a population of 10 and a tournament of 3 here (NNI's 100 and 25
would leave a search of tens of trials all random), ``GridSearch`` visits the grid in NNI's shuffled
order. ``PolicyBasedRL`` needs the ``enas`` extra (tianshou 0.4.11, gym 0.26.2).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import nni
import pytorch_lightning as pl

from nni_dash.budget import StepBudget, StepLimit, auto_steps
from nni_dash.errors import ConfigError, MissingExtraError
from nni_dash.tasks.base import TaskData

__all__ = ["MULTI_TRIAL", "make_multi_trial", "is_multi_trial", "TrialBudget", "TrialScore", "DEFAULTS"]

MULTI_TRIAL = ("Random", "GridSearch", "RegularizedEvolution", "TPE", "PolicyBasedRL")
#: this package's defaults for NNI's constructor arguments (see the module docstring)
DEFAULTS: dict[str, dict[str, Any]] = {"RegularizedEvolution": {"population_size": 10, "sample_size": 3}}
#: trials of a search under ``budget.mode: epochs`` (no clock) unless ``max_trials`` says otherwise
EPOCHS_MODE_MAX_TRIALS = 20
#: options the pipeline reads itself (not passed to NNI's constructor)
PIPELINE_OPTIONS = ("max_trials",)


def is_multi_trial(name: str) -> bool:
    return name in MULTI_TRIAL


def make_multi_trial(name: str, *, seed: int = 0, **kwargs: Any) -> Any:
    """An NNI multi-trial strategy by name; ``kwargs`` go to its constructor (after :data:`DEFAULTS`)."""
    from nni.nas import strategy as nas_strategy
    if name not in MULTI_TRIAL:
        raise ConfigError(f"search.strategy: {name!r} is not a multi-trial strategy; allowed: {', '.join(MULTI_TRIAL)}")
    args = {**DEFAULTS.get(name, {}), **{k: v for k, v in kwargs.items() if k not in PIPELINE_OPTIONS}}
    if name in ("Random", "GridSearch", "RegularizedEvolution"):
        args.setdefault("seed", seed)
    if name == "PolicyBasedRL":
        try:
            import tianshou  # noqa: F401
        except ImportError:
            raise MissingExtraError("search.strategy=PolicyBasedRL needs tianshou 0.4.11 and gym 0.26.2: "
                                    "pip install 'nni-dash[enas]'") from None
    try:
        return getattr(nas_strategy, name)(**args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"search.strategy_args ({name}): {' '.join(str(err).split())}") from None


class TrialScore(pl.Callback):
    """After each trial's fit, score the CNN on the val split and report it as the trial's NNI metric."""

    def __init__(self, data: TaskData, on_trial: Callable[[int, dict[str, str], float], None] | None = None,
                 budget: "TrialBudget | None" = None) -> None:
        from nni_dash.tasks.metrics import higher_is_better
        self.data, self.on_trial, self.budget = data, on_trial, budget
        self.sign = 1.0 if higher_is_better(data.metric) else -1.0
        self.scores: list[float] = []

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from nni_dash.pipeline.retrain import evaluate
        if self.budget is not None and self.budget.expired:  # submitted after the deadline: never the best
            nni.report_final_result(float("-inf"))
            return
        score = evaluate(pl_module.model, self.data, split="val")
        self.scores.append(score)
        nni.report_final_result(self.sign * score)  # NNI's strategies maximise
        if self.on_trial is not None:
            params = getattr(nni.get_current_parameter(), "sample", None) or {}
            self.on_trial(len(self.scores) - 1, dict(params), score)


class TrialBudget(pl.Callback):
    """A fresh :class:`~nni_dash.budget.StepBudget` per trial: ``steps`` steps, ended by ``deadline`` at the latest.

    Multi-trial strategies reuse one evaluator (one module and callback list) for every sampled model,
    so the budget is renewed in ``setup``, before the trial's optimiser and schedule are configured.
    NNI's sequential engine counts only training time against its ``max_duration`` (not the strategies'
    own waits), so the first trial that starts past ``deadline`` also closes the engine of ``strategy``.
    """

    def __init__(self, steps: int | None, deadline: float | None, strategy: Any = None) -> None:
        self.steps, self.deadline, self.strategy = steps, deadline, strategy
        self.limit: StepLimit | None = None
        self.expired = False  # this trial started after the deadline (strategies submit batches of samples)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.expired = self.deadline is not None and time.monotonic() >= self.deadline
        if self.expired and self.strategy is not None:
            self.strategy.engine.max_duration = 0.0  # budget_available() is False from now on
        if self.steps is None:
            return
        budget = StepBudget(1 if self.expired else self.steps, self.deadline)
        pl_module.step_budget = budget
        self.limit = StepLimit(budget)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.limit is not None:
            self.limit.on_train_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.limit is not None:
            self.limit.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def trial_steps(n: int, batch_size: int) -> int:
    """Steps of one trial in the steps-based budgets: the tuning trials' rule (:data:`nni_dash.budget.RULES`)."""
    return auto_steps("trial", n, batch_size)


def engine_limits(deadline: float | None, max_trials: int | None) -> dict[str, Any]:
    """Sequential-engine limits: the time left until ``deadline`` and ``max_trials``."""
    duration = None if deadline is None else max(1.0, deadline - time.monotonic())
    return {"max_model_count": max_trials, "max_duration": duration if duration is None else math.floor(duration)}
