"""Tuning's pick among its trials: which architecture to keep, and what to do when no trial learned anything.

Functions of the trials as :func:`nni_dash.pipeline.tune.tune` records them (``params``, ``score``,
``loss``, ``fold_scores``, ``fold_losses``); no training happens here.

**Preferring a default architecture** (``prefer``). Picking the best of several noisy CV scores
favours whichever candidate got lucky (the winner's curse), and on a few dozen series the folds
differ by more than the architectures do. With ``prefer`` (the pipeline passes the backbone's own
kernels) and cross-validation, the preferred architecture is kept unless another one's best trial
beats the preferred one's best trial by more than one standard error of their paired per-fold
differences: the one-standard-error rule of model selection (Breiman et al., *Classification and
Regression Trees*, 1984, section 3.4.3), with the hand-designed network as the simple model. The
standard error is Nadeau and Bengio's corrected one (:func:`cv_standard_error`): k-fold runs train on
overlapping data, so their differences are correlated and the plain ``sd / sqrt(k)`` understates the
noise (with 3 folds it let a null difference through about one time in five; the suite kept searched
kernels that tested worse on digits and dna_motifs). With one val split (large
enough to rank trials, ``folds=1``) the best trial is the pick, whatever its architecture.

**Trials that learned nothing** (classification accuracy). Short trials on a hard task (many
classes, one or two series per class) can all score at the level of a constant prediction; their
ranking is then noise. Each fold's floor is the val accuracy of the best constant prediction (its
most frequent class). The gate asks whether the trials *as a group* beat it: the per-fold accuracy
averaged over the trials must exceed the floor by more than one standard error of its per-fold
margins (with one split, at all). Testing the best trial instead lets the winner's curse through: of
four PigCVP trials at chance, one scored 2 of 35 series per fold against the floor's 1 and passed,
with every trial's val loss above the constant prediction's. When the gate fails, accuracy cannot
rank the trials. Their mean val cross-entropy still can: it is a proper scoring rule, and it moves
long before a one-series-per-class fold's accuracy does (on PigCVP, 52 classes, every 200-step trial
scored at chance while the learning rates' losses differed). When the lowest-loss trial of the
``defaults``' architecture beats the best constant prediction's loss (the entropy of the val labels)
by more than one standard error of its per-fold margins, it is the pick. Otherwise the pick falls
back to the defaults: the ``recipe``'s values of the tuned keys and the defaults' architecture, when
such a trial ran. Which architecture that is, is the caller's (:func:`~nni_dash.pipeline.tune.tune`'s
``fallback``): the pipeline names the searched kernels, since trials that learned nothing carry no
evidence about kernels and the search does. This gate keeps the plain SE (:func:`above_floor`): it
only decides whether accuracy may rank the trials, and a looser gate errs towards the usual ranking;
the architecture comparison is where a false pass changed the network, so that is where the
correction applies.
:attr:`~nni_dash.pipeline.tune.TuneResult.floor` records the comparisons and ``selected_on`` says what was used.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nni_dash.tasks.base import TaskData
from nni_dash.tasks.splits import class_counts

__all__ = ["ARCHITECTURE_KEY", "one_se_rule", "cv_standard_error", "above_floor", "floor_pick", "constant_floor",
           "constant_loss"]

#: the extra tuned key of :func:`~nni_dash.pipeline.tune.tune` when it compares architectures
ARCHITECTURE_KEY = "architecture"


def floor_pick(trials: list[dict[str, Any]], defaults: dict[str, Any], chance: list[float],
               null_loss: list[float]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The pick when accuracy may not rank ``trials`` (module docstring, *Trials that learned nothing*).

    ``trials`` as :func:`tune` records them; ``defaults``: the tuned keys' default values (and the
    fallback architecture); ``chance``/``null_loss``: per fold, the best constant prediction's
    accuracy and val loss. Returns ``(trial, floor)``: ``trial`` replaces the pick (None: keep it);
    ``floor`` is :func:`above_floor` of the trials' per-fold mean accuracy, plus ``best_margin``
    (the best trial's mean margin over the floor, for the record), ``rule`` ("accuracy": the trials
    beat the floor; "loss", "defaults" or "noise": what was used instead), ``loss`` (the loss
    comparison of the lowest-loss trial) and ``fallback`` (the defaults' params when they were kept).
    """
    scored = [t for t in trials if t.get("score") is not None]
    top = max(scored, key=lambda t: (t["score"], -t["loss"]))
    group = np.mean([t["fold_scores"] for t in scored], axis=0)  # per fold, the trials' mean accuracy
    floor = {**above_floor(list(group), chance), "rule": "accuracy", "loss": None, "fallback": None,
             "best_margin": above_floor(top["fold_scores"], chance)["margin"]}
    if floor["learned"]:
        return None, floor
    arch = defaults.get(ARCHITECTURE_KEY)
    pool = [t for t in scored if arch is None or t["params"].get(ARCHITECTURE_KEY) == arch] or scored
    lowest = min(pool, key=lambda t: t["loss"])
    floor["loss"] = above_floor(lowest["fold_losses"], null_loss, maximize=False)
    if floor["loss"]["learned"]:
        floor["rule"] = "loss"
        return lowest, floor
    match = [t for t in scored if all(_same(t["params"].get(k), v) for k, v in defaults.items())]
    if not match:
        floor["rule"] = "noise"
        return None, floor
    floor.update(rule="defaults", fallback=dict(match[0]["params"]))
    return match[0], floor


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    return a == b


def constant_floor(views: list[TaskData]) -> list[float]:
    """Per view: the val accuracy of the best constant prediction (the val split's most frequent class)."""
    return [float(class_counts(v.y_val, v.num_outputs).max() / max(len(v.y_val), 1)) for v in views]


def constant_loss(views: list[TaskData]) -> list[float]:
    """Per view: the val cross-entropy (nats) of the best constant prediction, the val labels' own frequencies.

    That is their entropy, and no constant prediction does better (Gibbs' inequality).
    """
    out = []
    for v in views:
        p = class_counts(v.y_val, v.num_outputs) / max(len(v.y_val), 1)
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum()))
    return out


def above_floor(fold_scores: list[float], floor: list[float], *, maximize: bool = True) -> dict[str, Any]:
    """Whether ``fold_scores`` beat the per-fold ``floor``: mean margin > one SE of the margins (> 0 for one fold).

    Returns ``{"learned", "margin", "standard_error", "floor"}``; ``margin`` is the mean of score - floor
    (``maximize=False``, for a loss: floor - score), so a positive margin is better than the floor.
    """
    diff = np.asarray(fold_scores, dtype=float) - np.asarray(floor, dtype=float)
    diff = diff if maximize else -diff
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    margin = float(diff.mean())
    return {"learned": bool(margin > se), "margin": margin, "standard_error": se, "floor": [float(f) for f in floor]}


def cv_standard_error(differences: np.ndarray) -> float:
    """Standard error of the mean of k paired k-fold differences, corrected for the folds' overlapping training sets.

    Nadeau & Bengio, *Inference for the Generalization Error*, Machine Learning 52, 2003: the variance
    of the mean is ``var * (1/k + n_test/n_train)`` rather than ``var / k``; in k-fold CV
    ``n_test/n_train = 1/(k-1)``, so with 3 folds the SE is ``sqrt(2.5)`` = 1.58 times the plain one.
    (scikit-learn's model-comparison example uses the same correction.) 0 for a single fold.
    """
    d = np.asarray(differences, dtype=float)
    k = len(d)
    if k < 2:
        return 0.0
    return float(np.sqrt(d.var(ddof=1) * (1.0 / k + 1.0 / (k - 1))))


def one_se_rule(trials: list[dict[str, Any]], prefer: str, best: dict[str, Any], *, maximize: bool) -> dict[str, Any]:
    """Keep ``prefer`` unless ``best`` (the best trial overall) beats ``prefer``'s best trial by > 1 SE of the paired folds.

    The SE is :func:`cv_standard_error` (corrected for k-fold's overlapping training sets).

    ``trials`` as :func:`tune` records them (``params``, ``score``, ``loss``, ``fold_scores``). Returns
    ``{"kept", "challenger", "difference", "standard_error", "preferred_trial"}``: ``difference`` is the
    mean over folds of (challenger - preferred), oriented so that positive favours the challenger.
    """
    def rank(t: dict[str, Any]) -> tuple[float, float]:
        return (t["score"] if maximize else -t["score"], -t["loss"])

    scored = [(i, t) for i, t in enumerate(trials) if t.get("score") is not None]
    mine = [(i, t) for i, t in scored if t["params"].get(ARCHITECTURE_KEY) == prefer]
    challenger = best.get(ARCHITECTURE_KEY)
    out: dict[str, Any] = {"kept": challenger, "challenger": challenger, "difference": None,
                           "standard_error": None, "preferred_trial": None}
    if not mine or challenger == prefer:
        out["kept"] = prefer if challenger == prefer else challenger
        return out
    pick, preferred = max(mine, key=lambda it: rank(it[1]))
    top = max((t for _, t in scored if t["params"].get(ARCHITECTURE_KEY) == challenger), key=rank)
    diff = np.asarray(top["fold_scores"], dtype=float) - np.asarray(preferred["fold_scores"], dtype=float)
    diff = diff if maximize else -diff
    mean, se = float(diff.mean()), cv_standard_error(diff)
    out.update(difference=mean, standard_error=se, preferred_trial=pick, kept=challenger if mean > se else prefer)
    return out
