"""Stage 1: one-shot search of a backbone's kernel sizes x dilations on a task.

``strategy`` names one of :data:`STRATEGIES`: ``DASH`` (this package), NNI's ``DARTS``,
``GumbelDARTS``, ``RandomOneShot``, ``ENAS`` (all on the FFT mixed-kernel op), ``DARTS-naive``
(NNI's DARTS on the naive mixture: a ``LayerChoice`` of |K|x|D| separate convs per layer, the
baseline DASH is meant to beat) and ``none`` (no search: the backbone's hand-designed kernels).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import pytorch_lightning as pl
import torch.nn as nn
from nni.nas.experiment import NasExperiment
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer

from nni_dash.backbones import create_backbone
from nni_dash.budget import StepBudget, StepLimit, steps_per_epoch
from nni_dash.errors import ConfigError
from nni_dash.evaluator import task_evaluator
from nni_dash.nn.dash_conv import _DashConvNd, make_conv, parse_candidate
from nni_dash.strategy import DASH
from nni_dash.tasks.base import TaskData

__all__ = ["STRATEGIES", "SearchResult", "make_strategy", "head_for", "search", "naive_mixture_hook"]

_logger = logging.getLogger(__name__)

STRATEGIES = ("DASH", "DARTS", "GumbelDARTS", "RandomOneShot", "ENAS", "DARTS-naive", "none")


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
           trainer_kwargs: dict[str, Any] | None = None) -> SearchResult:
    """Search ``backbone`` on ``data`` with ``strategy`` through NNI's ``NasExperiment``.

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
    nni_strategy = make_strategy(strategy, **args)
    callbacks, kwargs, run_epochs = list(callbacks or []), dict(trainer_kwargs or {}), epochs
    if steps is not None:
        from nni_dash.pipeline.retrain import step_trainer_kwargs
        kwargs.update(step_trainer_kwargs(steps, len(data.x_train), batch_size))
        run_epochs = kwargs.pop("max_epochs")
        callbacks.append(StepLimit(steps))
        schedule_steps = steps
    else:
        schedule_steps = StepBudget(epochs * steps_per_epoch(len(data.x_train), batch_size))
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=run_epochs, optimizer=optimizer,
                               learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                               label_smoothing=label_smoothing, schedule=schedule, warmup_fraction=warmup_fraction,
                               step_budget=schedule_steps, seed=seed, callbacks=callbacks,
                               nan_policy=None if strategy == "DASH" else "stop",  # DASH checks losses itself
                               logger=logger, enable_progress_bar=enable_progress_bar, trainer_kwargs=kwargs)
    if ckpt_path:
        evaluator.fit_kwargs["ckpt_path"] = ckpt_path
    exp = NasExperiment(space, evaluator, nni_strategy)
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
                        budget=steps.summary() if steps is not None else None)
