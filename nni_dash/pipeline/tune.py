"""Stage 2: tune the retrain hyperparameters of the discretised CNN with an NNI tuner.

The search space is NNI's HPO format (``{"learning_rate": {"_type": "choice", "_value": [...]}, ...}``);
:data:`REFERENCE_GRID` is DASH's default grid (24 configs: lr x dropout x weight decay x momentum).
Any NNI built-in tuner runs in-process (``GridSearch``, ``TPE``, ``Random``, ``Anneal``, ``Evolution``...):
each trial is a short retrain (``trial_epochs`` epochs, ``trial_batch_fraction`` of the batches)
scored on the validation split. With ``GridSearch`` and an ordered lr axis, the reference's early
stop applies: when a whole learning-rate group fails to improve on the best score, the remaining
(smaller) learning rates are skipped.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any, Callable

from nni_dash.errors import ConfigError, NumericalError
from nni_dash.pipeline.retrain import retrain
from nni_dash.tasks.base import TaskData
from nni_dash.tasks.metrics import higher_is_better

__all__ = ["REFERENCE_GRID", "TUNERS", "TuneResult", "make_tuner", "tune"]

REFERENCE_GRID: dict[str, dict[str, Any]] = {
    "learning_rate": {"_type": "choice", "_value": [0.1, 0.01, 0.001]},
    "dropout": {"_type": "choice", "_value": [0.0, 0.05]},
    "weight_decay": {"_type": "choice", "_value": [5e-4, 5e-6]},
    "momentum": {"_type": "choice", "_value": [0.9, 0.99]},
}
TUNED_KEYS = ("learning_rate", "dropout", "weight_decay", "momentum")
TUNERS = ("GridSearch", "TPE", "Random", "Anneal", "Evolution")


@dataclasses.dataclass
class TuneResult:
    """Best hyperparameters, every trial ``(params, score)`` and timing."""

    best: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]]
    seconds: float


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
    return len(list(itertools.product(*[range(n) for n in sizes]))) if len(sizes) == len(space) else None


def tune(data: TaskData, sample: dict[str, str], *, backbone: str, backbone_args: dict[str, Any] | None = None,
         search_space: dict[str, dict[str, Any]] | None = None, tuner: str = "GridSearch", max_trials: int = 24,
         trial_epochs: int = 3, trial_batch_fraction: float = 1.0, batch_size: int = 64, seed: int = 0,
         early_stop: bool = True, trainer_kwargs: dict[str, Any] | None = None,
         on_trial: Callable[[int, dict[str, Any], float], None] | None = None) -> TuneResult:
    """Tune the retrain hyperparameters of ``sample`` on ``data``'s validation split (see module docstring).

    ``trainer_kwargs`` go to each trial's Lightning ``Trainer``; ``on_trial(index, params, score)`` is
    called after every trial (progress reports, TensorBoard, NNI intermediate results).
    """
    space = search_space or REFERENCE_GRID
    unknown = set(space) - set(TUNED_KEYS)
    if unknown:
        raise ConfigError(f"tune.search_space: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"tunable: {', '.join(TUNED_KEYS)}")
    maximize = higher_is_better(data.metric)
    nni_tuner = make_tuner(tuner, maximize=maximize, seed=seed)
    nni_tuner.update_search_space(space)
    grid = _grid_size(space)
    budget = min(max_trials, grid) if (tuner == "GridSearch" and grid) else max_trials
    start = time.perf_counter()
    trials: list[dict[str, Any]] = []
    best_score, best = None, None
    group_lr, best_at_group_start = None, None
    for trial_id in range(budget):
        try:
            params = nni_tuner.generate_parameters(trial_id)
        except Exception:  # NNI tuners raise NoMoreTrialError (or similar) once the space is exhausted
            break
        if early_stop and tuner == "GridSearch" and params.get("learning_rate") != group_lr:
            if group_lr is not None and best_score == best_at_group_start:
                break  # the previous lr group did not improve: smaller lrs are skipped (reference)
            group_lr, best_at_group_start = params.get("learning_rate"), best_score
        try:
            result = retrain(data, sample, backbone=backbone, backbone_args=backbone_args, epochs=trial_epochs,
                             batch_size=batch_size, seed=seed, limit_train_batches=trial_batch_fraction,
                             learning_rate=float(params.get("learning_rate", 0.1)),
                             momentum=float(params.get("momentum", 0.9)),
                             weight_decay=float(params.get("weight_decay", 5e-4)),
                             dropout=float(params.get("dropout", 0.0)), trainer_kwargs=trainer_kwargs)
        except NumericalError as err:  # a diverging trial fails; the search over hparams goes on
            trials.append({"params": params, "score": None, "error": str(err)})
            continue
        score = result.val_score
        nni_tuner.receive_trial_result(trial_id, params, score)
        trials.append({"params": params, "score": score})
        if on_trial is not None:
            on_trial(trial_id, dict(params), score)
        if best_score is None or (score > best_score if maximize else score < best_score):
            best_score, best = score, dict(params)
    if best is None:
        raise ConfigError("tune: no trial ran; check tune.search_space and tune.max_trials")
    return TuneResult(best, float(best_score), trials, time.perf_counter() - start)
