"""Stage 2: tune the retrain hyperparameters of the discretised CNN with an NNI tuner.

The search space is NNI's HPO format (``{"learning_rate": {"_type": "choice", "_value": [...]}, ...}``).
:data:`DEFAULT_GRID` (3 learning rates, for the AdamW recipe) is the default;
:data:`REFERENCE_GRID` is DASH's grid (24 configs: lr x dropout x weight decay x momentum, for SGD).
Any NNI built-in tuner runs in-process (``GridSearch``, ``TPE``, ``Random``, ``Anneal``, ``Evolution``).

**Scoring.** Each trial is a short retrain scored on held-out data:

* ``folds=1``: train on the train split, score on the val split;
* ``folds=k > 1``: k-fold cross-validation over train+val (stratified for classification): the trial
  trains k times and its score is the mean over the folds. :func:`auto_folds` picks k when the val
  split is too small to tell trials apart (fewer than :data:`HOLDOUT_MIN_VAL` samples, or fewer
  than :data:`HOLDOUT_MIN_PER_CLASS` per class): :data:`CV_FOLDS` folds.

A trial's score is the task metric; ties (frequent on small sets, where accuracy moves in coarse
steps) are broken by the mean validation loss. The pick says so in :attr:`TuneResult.selected_on`.
The test split is never used.

**Selection** (``prefer``, and trials that learned nothing): :mod:`nni_dash.pipeline.selection`
keeps the ``prefer``red (backbone) architecture unless another clearly wins (the one-SE rule), and
falls back to val loss or the defaults (with the ``fallback`` architecture: the pipeline names the
searched one) when the trials' accuracy does not beat a constant prediction. The
preferred architecture runs first in each learning-rate group, so a tuning whose time runs out after
one trial keeps it rather than an architecture that was never compared.

**Length.** Each run trains ``trial_epochs`` epochs, or a :class:`~nni_dash.budget.StepBudget` of
``trial_steps`` steps. With a ``deadline`` each run gets an equal share of the time left, and the
tuner stops starting trials once a run could not take :data:`MIN_RUN_STEPS` steps in its share. With
``GridSearch`` and an ordered lr axis, the reference's early stop applies: when a whole
learning-rate group fails to improve on the best score, the remaining learning rates are skipped.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np

from nni_dash.budget import StepBudget
from nni_dash.errors import ConfigError, NumericalError
from nni_dash.pipeline.retrain import retrain
from nni_dash.pipeline.selection import ARCHITECTURE_KEY, constant_floor, constant_loss, floor_pick, one_se_rule
from nni_dash.tasks.base import TaskData
from nni_dash.tasks.metrics import higher_is_better
from nni_dash.tasks.splits import class_counts, fold_view, kfold, pooled

__all__ = ["DEFAULT_GRID", "REFERENCE_GRID", "TUNERS", "TUNED_KEYS", "TuneResult", "make_tuner", "tune", "auto_folds",
           "CV_FOLDS", "HOLDOUT_MIN_VAL", "HOLDOUT_MIN_PER_CLASS", "MIN_RUN_STEPS", "ARCHITECTURE_KEY", "planned_trials"]

DEFAULT_GRID: dict[str, dict[str, Any]] = {
    "learning_rate": {"_type": "choice", "_value": [3e-3, 1e-3, 3e-4]},
}
REFERENCE_GRID: dict[str, dict[str, Any]] = {
    "learning_rate": {"_type": "choice", "_value": [0.1, 0.01, 0.001]},
    "dropout": {"_type": "choice", "_value": [0.0, 0.05]},
    "weight_decay": {"_type": "choice", "_value": [5e-4, 5e-6]},
    "momentum": {"_type": "choice", "_value": [0.9, 0.99]},
}
TUNED_KEYS = ("learning_rate", "dropout", "weight_decay", "momentum")
TUNERS = ("GridSearch", "TPE", "Random", "Anneal", "Evolution")
#: a val split smaller than this (or with fewer per class) is replaced by cross-validation
HOLDOUT_MIN_VAL = 500
HOLDOUT_MIN_PER_CLASS = 25
CV_FOLDS = 3
#: fewest steps a tuning run may take before the tuner stops starting trials
MIN_RUN_STEPS = 50


@dataclasses.dataclass
class TuneResult:
    """Best hyperparameters, every trial ``(params, score, loss)``, what the pick was scored on, timing."""

    best: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]
    seconds: float
    folds: int = 1
    selected_on: str = ""
    #: ``prefer``'s outcome: the architectures compared, the paired fold difference and its standard error
    preference: dict[str, Any] | None = None
    #: the best trial against the constant-prediction floor (accuracy only; module docstring)
    floor: dict[str, Any] | None = None


def make_tuner(name: str, *, maximize: bool, seed: int = 0) -> Any:
    """An NNI HPO tuner by its NNI name (see :data:`TUNERS`)."""
    mode = "maximize" if maximize else "minimize"
    if name == "GridSearch":
        from nni.algorithms.hpo.gridsearch_tuner import GridSearchTuner
        return GridSearchTuner(optimize_mode=mode)
    if name == "TPE":
        from nni.algorithms.hpo.tpe_tuner import TpeTuner
        return TpeTuner(optimize_mode=mode, seed=seed)
    if name == "Random":
        from nni.algorithms.hpo.random_tuner import RandomTuner
        return RandomTuner(seed=seed)
    if name == "Anneal":
        from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner
        return HyperoptTuner("anneal", optimize_mode=mode)
    if name == "Evolution":
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner
        return EvolutionTuner(optimize_mode=mode)
    raise ConfigError(f"tune.tuner: unknown tuner {name!r}; allowed: {', '.join(TUNERS)}")


def _grid_size(space: dict[str, dict[str, Any]]) -> int | None:
    sizes = [len(spec["_value"]) for spec in space.values() if spec.get("_type") == "choice"]
    return math.prod(sizes) if len(sizes) == len(space) else None


def planned_trials(space: dict[str, dict[str, Any]], *, tuner: str, max_trials: int) -> int:
    """Trials :func:`tune` starts at most: ``max_trials``, or the grid when ``GridSearch`` runs a smaller one.

    ``space`` as :func:`tune` searches it (with the ``architecture`` key when it compares several).
    """
    grid = _grid_size(space)
    return min(max_trials, grid) if (tuner == "GridSearch" and grid) else max_trials


def auto_folds(data: TaskData) -> int:
    """1 (the val split) when it is large enough to rank trials, else :data:`CV_FOLDS` (see module docstring)."""
    n_val = len(data.y_val)
    small = n_val < HOLDOUT_MIN_VAL
    if data.kind == "classification":
        present = class_counts(data.y_val, data.num_outputs)
        small = small or int(present[present > 0].min(initial=0)) < HOLDOUT_MIN_PER_CLASS
        _, y = pooled(data)
        counts = class_counts(y, data.num_outputs)
        fewest = int(counts[counts > 0].min())
        if small and fewest < 2:
            return 1  # a class with one sample cannot be cross-validated
    return CV_FOLDS if small else 1


def _fold_views(data: TaskData, folds: int, seed: int) -> list[TaskData]:
    if folds == 1:
        return [data]
    x, y = pooled(data)
    stratify = data.kind == "classification"
    labels = y if stratify else np.zeros(len(y))
    return [fold_view(data, x, y, tr, va) for tr, va in kfold(labels, folds, seed=seed, stratify=stratify)]


def tune(data: TaskData, sample: dict[str, str] | dict[str, dict[str, str]], *, backbone: str,
         backbone_args: dict[str, Any] | None = None,
         search_space: dict[str, dict[str, Any]] | None = None, tuner: str = "GridSearch", max_trials: int = 24,
         trial_epochs: int = 3, trial_steps: int | None = None, deadline: float | None = None,
         folds: int | None = 1, trial_batch_fraction: float = 1.0, batch_size: int = 64, seed: int = 0,
         early_stop: bool = True, recipe: dict[str, Any] | None = None, prefer: str | None = None,
         fallback: str | None = None, trainer_kwargs: dict[str, Any] | None = None,
         on_trial: Callable[[int, dict[str, Any], float], None] | None = None) -> TuneResult:
    """Tune the retrain hyperparameters of ``sample`` on ``data`` (see module docstring).

    ``sample``: one architecture, or ``{name: architecture}`` to compare (e.g. the searched CNN and
    the backbone's hand-designed one): the names become one more tuned key, ``"architecture"``,
    scored on the same folds as the hyperparameters.
    ``folds``: 1 (the val split), ``k`` (k-fold CV over train+val) or None (:func:`auto_folds`).
    ``prefer``: the name of the architecture kept unless another wins by more than one standard error
    (module docstring); applies with cross-validation only. ``fallback``: the architecture kept when
    no trial learned anything (:mod:`~nni_dash.pipeline.selection`; default: ``prefer``, else the first).
    ``recipe``: fixed retrain settings of every trial (optimizer, label_smoothing, schedule,
    warmup_fraction, weight_decay...), overridden by the tuned keys. ``trainer_kwargs`` go to each
    trial's Lightning ``Trainer``; ``on_trial(index, params, score)`` is called after every trial.
    """
    space = dict(search_space or DEFAULT_GRID)
    unknown = set(space) - set(TUNED_KEYS)
    if unknown:
        raise ConfigError(f"tune.search_space: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"tunable: {', '.join(TUNED_KEYS)}")
    architectures = sample if all(isinstance(v, dict) for v in sample.values()) else {"given": sample}
    if len(architectures) > 1:
        # the preferred architecture first: GridSearch varies this key fastest, so each learning rate tries
        # it first, and a tuning that time cuts short after one trial has run it (and keeps it)
        names = sorted(architectures, key=lambda name: name != prefer)
        space[ARCHITECTURE_KEY] = {"_type": "choice", "_value": names}
    maximize = higher_is_better(data.metric)
    nni_tuner = make_tuner(tuner, maximize=maximize, seed=seed)
    nni_tuner.update_search_space(space)
    budget = planned_trials(space, tuner=tuner, max_trials=max_trials)
    folds = auto_folds(data) if folds is None else int(folds)
    views = _fold_views(data, folds, seed)
    base = {"learning_rate": 1e-3, "momentum": 0.9, "weight_decay": 1e-2, "dropout": 0.0, **(recipe or {})}
    start = time.perf_counter()
    trials: list[dict[str, Any]] = []
    best_key, best, best_score = None, None, None
    group_lr, best_at_group_start = None, None
    seconds_per_step: float | None = None
    for trial_id in range(budget):
        try:
            params = nni_tuner.generate_parameters(trial_id)
        except Exception:  # NNI tuners raise NoMoreTrialError (or similar) once the space is exhausted
            break
        if early_stop and tuner == "GridSearch" and params.get("learning_rate") != group_lr:
            if group_lr is not None and best_score == best_at_group_start:
                break  # the previous lr group did not improve: smaller lrs are skipped (reference)
            group_lr, best_at_group_start = params.get("learning_rate"), best_score
        runs_left = (budget - trial_id) * len(views)
        if deadline is not None and trials and seconds_per_step is not None:
            share = (deadline - time.monotonic()) / runs_left
            if share < MIN_RUN_STEPS * seconds_per_step:
                break  # out of time: keep the trials done so far
        arch = architectures[params.get(ARCHITECTURE_KEY, next(iter(architectures)))]
        hp = {**base, **{k: float(v) for k, v in params.items() if k != ARCHITECTURE_KEY}}
        scores, losses, error = [], [], None
        for i, view in enumerate(views):
            steps = None
            if trial_steps is not None:
                share = None if deadline is None else time.monotonic() + (deadline - time.monotonic()) / (runs_left - i)
                steps = StepBudget(trial_steps, share)
            try:
                result = retrain(view, arch, backbone=backbone, backbone_args=backbone_args, epochs=trial_epochs,
                                 steps=steps, batch_size=batch_size, seed=seed + i,
                                 limit_train_batches=trial_batch_fraction, trainer_kwargs=trainer_kwargs, **hp)
            except NumericalError as err:  # a diverging trial fails; the search over hparams goes on
                error = str(err)
                break
            if steps is not None and steps.seconds_per_step:
                seconds_per_step = steps.seconds_per_step
            scores.append(result.val_score)
            losses.append(result.val_loss)
        if error is not None:
            trials.append({"params": params, "score": None, "loss": None, "error": error})
            continue
        score, loss = float(np.mean(scores)), float(np.mean(losses))
        nni_tuner.receive_trial_result(trial_id, params, score)
        trials.append({"params": params, "score": score, "loss": loss, "fold_scores": scores, "fold_losses": losses})
        if on_trial is not None:
            on_trial(trial_id, dict(params), score)
        key = (score if maximize else -score, -loss)
        if best_key is None or key > best_key:
            best_key, best_score, best = key, score, dict(params)
    if best is None:
        raise ConfigError("tune: no trial ran; check tune.search_space and tune.max_trials")
    if len(architectures) == 1:
        best.pop(ARCHITECTURE_KEY, None)
    where = "the val split" if folds == 1 else f"{folds}-fold cross-validation over train+val"
    selected_on = f"mean val {data.metric} on {where} (ties: lowest mean val loss); the test split is not used"
    preference = None
    if prefer is not None and len(architectures) > 1 and folds > 1:
        if prefer not in architectures:
            raise ConfigError(f"tune: prefer={prefer!r} is not one of the architectures {', '.join(architectures)}")
        preference = one_se_rule(trials, prefer, best, maximize=maximize)
        if preference["kept"] == prefer and best.get(ARCHITECTURE_KEY) != prefer:
            pick = preference["preferred_trial"]
            best, best_score = dict(trials[pick]["params"]), trials[pick]["score"]
        selected_on += (f"; the {prefer} architecture is kept unless another beats it by more than one standard "
                        f"error of the paired fold differences, corrected for the folds' overlapping training sets "
                        f"(one-SE rule)")
    floor = None
    if data.kind == "classification" and data.metric == "accuracy":
        defaults = {k: base[k] for k in space if k in base}
        if len(architectures) > 1:
            defaults[ARCHITECTURE_KEY] = next((a for a in (fallback, prefer) if a in architectures),
                                              next(iter(architectures)))
        pick, floor = floor_pick(trials, defaults, constant_floor(views), constant_loss(views))
        if pick is not None:
            best, best_score = dict(pick["params"]), pick["score"]
            if len(architectures) == 1:
                best.pop(ARCHITECTURE_KEY, None)
        if floor["rule"] != "accuracy":
            selected_on += "; the trials' mean accuracy did not beat the best constant prediction by more than one standard error, so " + {
                "loss": "the trials were ranked by mean val loss (the lowest beat the constant prediction's loss by "
                        "more than one standard error)",
                "defaults": "the defaults were kept" + (f" (the {defaults[ARCHITECTURE_KEY]} architecture)"
                                                        if len(architectures) > 1 else ""), "noise": "the pick is noise (no trial ran the defaults)"}[floor["rule"]]
    return TuneResult(best, float(best_score), trials, time.perf_counter() - start, folds, selected_on, preference,
                      floor)
