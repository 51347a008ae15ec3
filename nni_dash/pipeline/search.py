"""Stage 1: one-shot search of a backbone's kernel sizes x dilations on a task.

``strategy`` names one of :data:`STRATEGIES`: ``DASH`` (this package), NNI's ``DARTS``,
``GumbelDARTS``, ``RandomOneShot``, ``ENAS`` (all on the FFT mixed-kernel op), ``DARTS-naive``
(NNI's DARTS on the naive mixture: a ``LayerChoice`` of |K|x|D| separate convs per layer, the
baseline DASH is meant to beat), NNI's multi-trial ``Random``, ``GridSearch``,
``RegularizedEvolution``, ``TPE`` and ``PolicyBasedRL`` (:mod:`nni_dash.pipeline.multitrial`) and
``none`` (no search: the backbone's hand-designed kernels).

Every search runs as a private NNI experiment: its working directory is a temporary folder and its
entry in NNI's experiment list (``~/nni-experiments/.experiment``) is removed afterwards, so a search
inside an ``nnictl`` trial (or a CLI run) leaves no stray experiment behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import time
from typing import Any, Callable, Iterator

import pytorch_lightning as pl
import torch.nn as nn
from nni.nas.experiment import NasExperiment
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer

from nni_dash.backbones import create_backbone
from nni_dash.budget import StepBudget, StepLimit, steps_per_epoch
from nni_dash.errors import ConfigError
from nni_dash.evaluator import task_evaluator
from nni_dash.pipeline.multitrial import (
    EPOCHS_MODE_MAX_TRIALS, MULTI_TRIAL, TrialBudget, TrialScore, engine_limits, is_multi_trial, make_multi_trial,
    trial_steps,
)
from nni_dash.nn.dash_conv import _DashConvNd, make_conv, parse_candidate
from nni_dash.progress import StepProgressBar
from nni_dash.strategy import DASH
from nni_dash.tasks.base import TaskData

__all__ = ["STRATEGIES", "searchable", "SearchResult", "make_strategy", "head_for", "search", "naive_mixture_hook"]

_logger = logging.getLogger(__name__)

ONE_SHOT = ("DASH", "DARTS", "GumbelDARTS", "RandomOneShot", "ENAS", "DARTS-naive")
STRATEGIES = (*ONE_SHOT, *MULTI_TRIAL, "none")


@dataclasses.dataclass
class SearchResult:
    """The exported architecture, the per-layer probabilities (when the strategy has them) and timing."""

    strategy: str
    sample: dict[str, str]
    probs: dict[str, dict[str, float]]
    seconds: float
    epochs: int
    steps: int | None = None
    budget: dict[str, Any] | None = None
    ddp: dict[str, Any] | None = None  # DASH under DDP: {"world_size", "max_abs_diff"} of α across ranks


def head_for(kind: str) -> str:
    """Backbone head of a task kind: pooled labels or per-position outputs."""
    return "classification" if kind in ("classification", "multilabel") else "dense"


def naive_mixture_hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]) -> Any:
    """Mutation hook turning a ``DashConv*`` into NNI's ``DifferentiableMixedLayer`` over separate convs."""
    if not isinstance(module, _DashConvNd):
        return None
    paths = {}
    for value in module.choice.values:
        k, d = parse_candidate(value)
        paths[value] = make_conv(module.ndim, module.in_channels, module.out_channels, kernel_size=k, dilation=d,
                                 stride=module.stride, groups=module.groups, bias=module.bias, padding=module.padding)
    return DifferentiableMixedLayer(paths, memo[module.label], mutate_kwargs["softmax"], module.label)


def make_strategy(name: str, **kwargs: Any) -> Any:
    """An NNI strategy object by name (see :data:`STRATEGIES`); ``kwargs`` go to its constructor."""
    from nni.nas.strategy import DARTS, ENAS, GumbelDARTS, RandomOneShot
    factories: dict[str, Callable[..., Any]] = {
        "DASH": DASH, "DARTS": DARTS, "GumbelDARTS": GumbelDARTS, "RandomOneShot": RandomOneShot,
        "ENAS": lambda **kw: ENAS(**{"reward_metric_name": "default", **kw}),
        "DARTS-naive": lambda **kw: DARTS(mutation_hooks=[naive_mixture_hook], **kw),
    }
    if is_multi_trial(name):
        return make_multi_trial(name, **kwargs)
    if name not in factories:
        raise ConfigError(f"search.strategy: unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}")
    try:
        return factories[name](**kwargs)
    except TypeError as err:
        raise ConfigError(f"search.strategy_args: {err}") from None


def search(data: TaskData, *, backbone: str, backbone_args: dict[str, Any] | None = None, strategy: str = "DASH",
           strategy_args: dict[str, Any] | None = None, epochs: int = 10, steps: StepBudget | None = None,
           batch_size: int = 64, optimizer: str = "adamw", learning_rate: float = 1e-3, momentum: float = 0.9,
           weight_decay: float = 1e-2, label_smoothing: float = 0.0, schedule: str = "cosine",
           warmup_fraction: float = 0.0, seed: int = 0, callbacks: list | None = None, logger: Any = False,
           enable_progress_bar: bool = False, ckpt_path: str | None = None, nan_policy: str = "stop",
           trainer_kwargs: dict[str, Any] | None = None,
           on_trial: Callable[[int, dict[str, str], float], None] | None = None) -> SearchResult:
    """Search ``backbone`` on ``data`` with ``strategy`` through NNI's ``NasExperiment``.

    One-shot strategies train one supernet; multi-trial ones (:mod:`nni_dash.pipeline.multitrial`)
    train one CNN per sampled architecture for ``trial_steps`` (or ``epochs`` each), until
    ``steps.deadline`` or ``strategy_args["max_trials"]``, reporting each through ``on_trial(index,
    sample, val score)``.

    Length: ``epochs``, or a :class:`~nni_dash.budget.StepBudget` ``steps`` (enforced by
    :class:`~nni_dash.budget.StepLimit`). Weights: ``optimizer`` (AdamW, Adam or SGD-Nesterov) with
    ``learning_rate``/``momentum``/``weight_decay``, ``label_smoothing`` and ``schedule`` (``cosine``
    over the run's steps, ``constant``, or ``step``: none, the strategy's own milestones); alpha options
    go in ``strategy_args`` (e.g. ``arc_learning_rate``, ``grad_scale``, ``mode`` for DASH). The held-out
    batches of bilevel strategies come from the validation split. ``ckpt_path`` resumes a search
    (mid-epoch too, with :class:`~nni_dash.checkpoint.ResumeCheckpoint` among ``callbacks``).
    ``nan_policy``: a non-finite loss stops the search with :class:`~nni_dash.errors.NumericalError`
    (``"stop"``) or, for DASH only, skips the batch (``"skip"``; ``strategy_args["nan_policy"]`` wins).
    """
    pl.seed_everything(seed, verbose=False)
    space = create_backbone(backbone, in_channels=data.in_channels, num_outputs=data.num_outputs,
                            head=head_for(data.kind), input_stats=data.input_stats, **(backbone_args or {}))
    start = time.perf_counter()
    if strategy == "none":
        return SearchResult("none", space.default_sample(), {}, 0.0, 0)
    args = dict(strategy_args or {})
    if strategy == "DASH":
        args.setdefault("seed", seed)
        args.setdefault("nan_policy", nan_policy)
    elif nan_policy != "stop":
        raise ConfigError(f"nan_policy={nan_policy!r}: strategy {strategy!r} cannot skip batches; allowed: stop "
                          f"(skip needs DASH)")
    recipe = dict(optimizer=optimizer, learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                  label_smoothing=label_smoothing, schedule=schedule, warmup_fraction=warmup_fraction)
    if is_multi_trial(strategy):
        return _multi_trial(data, space, strategy, args, epochs=epochs, steps=steps, batch_size=batch_size,
                            recipe=recipe, seed=seed, logger=logger, enable_progress_bar=enable_progress_bar,
                            trainer_kwargs=trainer_kwargs, on_trial=on_trial, start=start)
    nni_strategy = make_strategy(strategy, **args)
    callbacks, kwargs, run_epochs = list(callbacks or []), dict(trainer_kwargs or {}), epochs
    if steps is not None:
        from nni_dash.pipeline.retrain import step_trainer_kwargs
        kwargs.update(step_trainer_kwargs(steps, len(data.x_train), batch_size))
        run_epochs = kwargs.pop("max_epochs")
        callbacks.append(StepLimit(steps))
        if enable_progress_bar:  # one line over the step budget instead of Lightning's bar per epoch
            callbacks.append(StepProgressBar(steps, "search"))
        schedule_steps = steps
    else:
        schedule_steps = StepBudget(epochs * steps_per_epoch(len(data.x_train), batch_size))
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=run_epochs, **recipe,
                               step_budget=schedule_steps, seed=seed, callbacks=callbacks,
                               nan_policy=None if strategy == "DASH" else "stop",  # DASH checks losses itself
                               logger=logger, enable_progress_bar=enable_progress_bar, trainer_kwargs=kwargs)
    if ckpt_path:
        evaluator.fit_kwargs["ckpt_path"] = ckpt_path
    with private_experiment(NasExperiment(space, evaluator, nni_strategy)) as exp:
        exp.run()
        # Path-sampling strategies export a fresh random sample per call: take the model once.
        model = exp.export_top_models(formatter=None)[0]
    sample = dict(model.sample)
    oneshot = nni_strategy.oneshot_module
    probs: dict[str, dict[str, float]] = {}
    if strategy in ("DASH", "DARTS", "GumbelDARTS", "DARTS-naive"):
        probs = {label: {str(v): float(p) for v, p in dist.items()} for label, dist in oneshot.export_probs().items()}
    return SearchResult(strategy, sample, probs, time.perf_counter() - start, epochs,
                        steps=steps.limit if steps is not None else None,
                        budget=steps.summary() if steps is not None else None,
                        ddp=getattr(oneshot, "rank_agreement", None))


def searchable(space: Any) -> dict[str, Any]:
    """The space's mutables with two or more values (NNI's ``simplify()`` keeps single-valued ones too)."""
    return {label: m for label, m in space.simplify().items() if len(getattr(m, "values", (0, 1))) > 1}


@contextlib.contextmanager
def private_experiment(exp: NasExperiment) -> Iterator[NasExperiment]:
    """Run ``exp`` in a temporary working directory and drop it from NNI's experiment list afterwards."""
    from nni.tools.nnictl.config_utils import Experiments
    folder = tempfile.mkdtemp(prefix="nni-dash-search-")
    exp.config.experiment_working_directory = folder
    try:
        yield exp
    finally:
        try:
            exp.stop()  # now, not from NNI's atexit hook after the folder is gone
        except Exception:
            _logger.debug("could not stop experiment %s", exp.id)
        try:
            Experiments().remove_experiment(exp.id)
        except Exception:  # the list is NNI's bookkeeping; never fail a search over it
            _logger.debug("could not remove experiment %s from NNI's list", exp.id)
        shutil.rmtree(folder, ignore_errors=True)


def _multi_trial(data: TaskData, space: Any, strategy: str, args: dict[str, Any], *, epochs: int,
                 steps: StepBudget | None, batch_size: int, recipe: dict[str, Any], seed: int, logger: Any,
                 enable_progress_bar: bool, trainer_kwargs: dict[str, Any] | None,
                 on_trial: Callable[[int, dict[str, str], float], None] | None, start: float) -> SearchResult:
    """NNI's multi-trial ``strategy`` on the sequential engine (see :mod:`nni_dash.pipeline.multitrial`)."""
    from nni.nas.experiment import NasExperimentConfig

    if not searchable(space):
        raise ConfigError(f"search.strategy={strategy}: the model space has no searchable layer (no DashConv1d/2d "
                          f"with two or more candidates); allowed: a space with at least one, or search.strategy=none")
    nni_strategy = make_multi_trial(strategy, seed=seed, **args)
    n = len(data.x_train)
    per_trial = trial_steps(n, batch_size) if steps is not None else None
    deadline = steps.deadline if steps is not None else None
    kwargs = dict(trainer_kwargs or {})
    kwargs.update(limit_val_batches=0)  # scored once at the end of each trial (TrialScore)
    run_epochs = epochs if per_trial is None else math.ceil(per_trial / steps_per_epoch(n, batch_size)) + 1
    budget = TrialBudget(per_trial, deadline, strategy=nni_strategy)
    score = TrialScore(data, on_trial, budget)
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=run_epochs, **recipe,
                               step_budget=StepBudget(per_trial or epochs * steps_per_epoch(n, batch_size)),
                               seed=seed, callbacks=[budget, score], logger=logger,
                               enable_progress_bar=enable_progress_bar, trainer_kwargs=kwargs)
    max_trials = args.get("max_trials")
    if max_trials is None and deadline is None:
        max_trials = EPOCHS_MODE_MAX_TRIALS  # epochs budgets have no clock: a bounded number of trials
    config = NasExperimentConfig("sequential", "raw")
    for key, value in engine_limits(deadline, max_trials).items():
        setattr(config.execution_engine, key, value)
    with private_experiment(NasExperiment(space, evaluator, nni_strategy, config=config)) as exp:
        exp.run()
        models = list(exp.export_top_models(top_k=1, formatter=None))
    if not models or not score.scores:  # every trial started past the deadline (reported -inf)
        raise ConfigError(f"search.strategy={strategy}: no trial finished within the search budget; give the run "
                          f"more time (--budget) or set search.strategy_args.max_trials")
    sample = dict(models[0].sample)
    result = SearchResult(strategy, sample, {}, time.perf_counter() - start, epochs,
                          steps=per_trial, budget={"trials": len(score.scores), "steps_per_trial": per_trial,
                                                   "best_val_score": max(score.scores) if score.sign > 0
                                                   else min(score.scores)})
    return result
