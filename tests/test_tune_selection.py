"""Tuning's pick: the one-standard-error rule that keeps the backbone's kernels unless the searched ones clearly
win, and, when no trial's accuracy beats a constant prediction, the ranking by val loss or the fallback to the
defaults."""
import dataclasses

import numpy as np
import pytest

from nni_dash.backbones import default_sample
from nni_dash.errors import ConfigError
from nni_dash.pipeline import tune
from nni_dash.pipeline.selection import (above_floor, constant_floor, constant_loss, cv_standard_error, floor_pick,
                                         one_se_rule)
from nni_dash.tasks import create_task


def trial(arch, lr, folds, loss=0.5, fold_losses=None):
    fold_losses = list(fold_losses or [loss] * len(folds))
    return {"params": {"architecture": arch, "learning_rate": lr}, "score": sum(folds) / len(folds),
            "loss": sum(fold_losses) / len(fold_losses), "fold_scores": list(folds), "fold_losses": fold_losses}


def test_a_consistent_win_on_every_fold_keeps_the_searched_architecture():
    trials = [trial("searched", 1e-3, [0.90, 0.92, 0.91]), trial("backbone", 1e-3, [0.80, 0.83, 0.81]),
              trial("backbone", 3e-4, [0.70, 0.70, 0.72])]
    out = one_se_rule(trials, "backbone", trials[0]["params"], maximize=True)
    assert out["kept"] == "searched" and out["challenger"] == "searched"
    assert out["difference"] == pytest.approx(0.0967, abs=1e-4)
    assert out["preferred_trial"] == 1  # compared against the backbone's best trial, not its first


def test_a_win_within_the_fold_noise_keeps_the_backbone():
    # mean difference +0.033, but the folds disagree: differences +0.25, -0.15, 0.0 (sd 0.2021, corrected SE 0.1845)
    trials = [trial("searched", 1e-3, [0.90, 0.60, 0.75]), trial("backbone", 3e-3, [0.65, 0.75, 0.75])]
    out = one_se_rule(trials, "backbone", trials[0]["params"], maximize=True)
    assert out["kept"] == "backbone" and out["preferred_trial"] == 1
    assert out["difference"] == pytest.approx(1 / 30) and out["standard_error"] == pytest.approx(0.1845, abs=1e-4)


def test_the_standard_error_is_corrected_for_the_overlapping_folds():
    """Nadeau & Bengio (2003): var * (1/k + n_test/n_train), n_test/n_train = 1/(k-1) in k-fold CV."""
    d = np.array([0.03, 0.01, 0.0])
    assert cv_standard_error(d) == pytest.approx(np.sqrt(d.var(ddof=1) * (1 / 3 + 1 / 2)))
    assert cv_standard_error(d) / (d.std(ddof=1) / np.sqrt(3)) == pytest.approx(np.sqrt(2.5))
    assert cv_standard_error(np.array([0.2, 0.1, 0.0, 0.1, 0.3])) == pytest.approx(
        np.sqrt(np.var([0.2, 0.1, 0.0, 0.1, 0.3], ddof=1) * (1 / 5 + 1 / 4)))
    assert cv_standard_error(np.array([0.4])) == 0.0


def test_a_win_the_plain_standard_error_passes_but_the_corrected_one_does_not_keeps_the_backbone():
    # differences +0.03, +0.01, 0.0: mean 0.0133 > plain SE 0.0088, but < corrected SE 0.0139
    trials = [trial("searched", 1e-3, [0.83, 0.81, 0.80]), trial("backbone", 1e-3, [0.80, 0.80, 0.80])]
    out = one_se_rule(trials, "backbone", trials[0]["params"], maximize=True)
    assert out["difference"] > np.std([0.03, 0.01, 0.0], ddof=1) / np.sqrt(3)
    assert out["kept"] == "backbone" and out["standard_error"] == pytest.approx(0.01394, abs=1e-5)


def test_for_a_metric_to_minimise_lower_fold_scores_are_the_win():
    trials = [trial("searched", 1e-3, [0.10, 0.11, 0.12]), trial("backbone", 1e-3, [0.20, 0.22, 0.21])]
    assert one_se_rule(trials, "backbone", trials[0]["params"], maximize=False)["kept"] == "searched"
    assert one_se_rule(trials, "searched", trials[1]["params"], maximize=False)["kept"] == "searched"


def test_identical_candidates_keep_the_preferred_one_through_tune():
    """Two names for the same CNN score the same on every fold: whatever the tie-break picked, the backbone stays."""
    data = create_task("digits")
    args = dict(depth=10, kernel_sizes=(3,), dilations=(1,))
    sample = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    space = {"learning_rate": {"_type": "choice", "_value": [0.05]}}
    common = dict(backbone="wrn", backbone_args=args, search_space=space, trial_epochs=1, trial_batch_fraction=0.3,
                  folds=2)
    result = tune(data, {"searched": sample, "backbone": dict(sample)}, prefer="backbone", **common)
    assert result.best["architecture"] == "backbone"
    # the backbone runs first and wins the tie, so no challenger needed comparing
    assert result.preference["challenger"] == "backbone" and result.preference["difference"] is None
    assert "one-SE rule" in result.selected_on
    assert result.floor["learned"] and "constant prediction" not in result.selected_on
    scores = {t["params"]["architecture"]: t["fold_scores"] for t in result.trials}
    assert scores["searched"] == scores["backbone"]
    with pytest.raises(ConfigError, match="prefer='resnet'.*searched, backbone"):
        tune(data, {"searched": sample, "backbone": dict(sample)}, prefer="resnet", **common)


def test_the_floor_is_the_best_constant_prediction_on_each_fold():
    data = create_task("digits")
    views = [dataclasses.replace(data, y_val=np.array([0, 0, 1, 2])), dataclasses.replace(data, y_val=np.array([3, 4]))]
    assert constant_floor(views) == [0.5, 0.5]


def test_a_margin_within_one_standard_error_of_the_floor_is_not_learning():
    assert not above_floor([0.03, 0.02, 0.0], [0.02, 0.02, 0.02])["learned"]  # margins +0.01, 0, -0.02
    out = above_floor([0.70, 0.75, 0.80], [0.5, 0.5, 0.5])
    assert out["learned"] and out["margin"] == pytest.approx(0.25)
    assert not above_floor([0.5], [0.5])["learned"] and above_floor([0.51], [0.5])["learned"]


def test_trials_that_cannot_learn_fall_back_to_the_defaults():
    """Constant inputs make every trial a constant predictor: none beats the floor, so the recipe's lr is kept."""
    data = create_task("digits")
    data = dataclasses.replace(data, x_train=np.zeros_like(data.x_train), x_val=np.zeros_like(data.x_val))
    args = dict(depth=10, kernel_sizes=(3,), dilations=(1,))
    sample = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    space = {"learning_rate": {"_type": "choice", "_value": [0.05, 0.01]}}
    result = tune(data, sample, backbone="wrn", backbone_args=args, search_space=space, trial_epochs=1,
                  trial_batch_fraction=0.2, folds=2, recipe={"learning_rate": 0.01}, early_stop=False)
    assert not result.floor["learned"] and result.floor["margin"] <= 1e-12
    assert result.best == {"learning_rate": 0.01} and result.floor["fallback"] == {"learning_rate": 0.01}
    assert "defaults were kept" in result.selected_on


def test_trials_that_cannot_learn_keep_the_fallback_architecture():
    """Compared architectures at chance: the defaults are the recipe's lr and the ``fallback`` (searched) kernels,
    even though the one-SE rule prefers the backbone's when the trials can rank them."""
    data = create_task("digits")
    data = dataclasses.replace(data, x_train=np.zeros_like(data.x_train), x_val=np.zeros_like(data.x_val))
    args = dict(depth=10, kernel_sizes=(3, 5), dilations=(1,))
    backbone = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    searched = {label: "k5d1" for label in backbone}
    space = {"learning_rate": {"_type": "choice", "_value": [0.05, 0.01]}}
    result = tune(data, {"searched": searched, "backbone": backbone}, prefer="backbone", fallback="searched",
                  backbone="wrn", backbone_args=args, search_space=space, trial_epochs=1, trial_batch_fraction=0.2,
                  folds=2, recipe={"learning_rate": 0.01}, early_stop=False)
    assert not result.floor["learned"] and result.floor["rule"] == "defaults"
    assert result.best == {"learning_rate": 0.01, "architecture": "searched"}
    assert "defaults were kept (the searched architecture)" in result.selected_on


# PigCVP, seed 1 (2632fc8): four 400-step trials, 3 folds of 34-35 val series over 52 classes
PIG_CHANCE, PIG_NULL = [1 / 35, 1 / 35, 1 / 34], [np.log(35), np.log(35), np.log(34)]


def test_one_lucky_trial_above_the_floor_is_not_learning():
    """The best of four trials at chance beats the floor by a series per fold, more than its own SE: the winner's
    curse. The trials as a group do not, and no val loss beats the constant prediction's, so the defaults stay."""
    trials = [trial("backbone", 3e-3, [3 / 35, 1 / 35, 2 / 34], fold_losses=[3.493, 3.562, 4.015]),
              trial("searched", 3e-3, [0.0, 0.0, 1 / 34], fold_losses=[3.770, 4.018, 3.699]),
              trial("backbone", 1e-3, [0.0, 0.0, 1 / 34], fold_losses=[3.729, 3.962, 3.964]),
              trial("searched", 1e-3, [0.0, 1 / 35, 1 / 34], fold_losses=[3.831, 3.972, 3.835])]
    assert above_floor(trials[0]["fold_scores"], PIG_CHANCE)["learned"]  # the best trial alone passes
    pick, floor = floor_pick(trials, {"learning_rate": 1e-3, "architecture": "searched"}, PIG_CHANCE, PIG_NULL)
    assert not floor["learned"] and floor["margin"] < 0 < floor["best_margin"]
    assert floor["rule"] == "defaults" and not floor["loss"]["learned"] and pick is trials[3]


def test_the_loss_floor_is_the_entropy_of_the_val_labels():
    data = create_task("digits")
    views = [dataclasses.replace(data, y_val=np.array([0, 0, 1, 2])), dataclasses.replace(data, y_val=np.array([3, 4]))]
    assert constant_loss(views) == pytest.approx([1.5 * np.log(2), np.log(2)])  # -(.5 ln .5 + 2 * .25 ln .25)
    out = above_floor([1.0, 1.1, 0.9], [1.5, 1.5, 1.5], maximize=False)  # a loss: lower is better
    assert out["learned"] and out["margin"] == pytest.approx(0.5)
    assert not above_floor([1.6, 1.4, 1.5], [1.5, 1.5, 1.5], maximize=False)["learned"]


CHANCE, NULL = [0.02, 0.02, 0.02], [3.9, 3.9, 3.9]  # 52 classes, about one val series each: accuracy says nothing


def test_at_chance_accuracy_the_lowest_val_loss_of_the_preferred_architecture_is_the_pick():
    trials = [trial("searched", 3e-3, [0.02, 0.04, 0.02], fold_losses=[3.0, 3.1, 2.9]),  # lowest, other arch
              trial("backbone", 3e-3, [0.02, 0.02, 0.02], fold_losses=[3.4, 3.5, 3.3]),
              trial("backbone", 1e-3, [0.04, 0.02, 0.00], fold_losses=[3.8, 3.9, 3.85])]
    defaults = {"learning_rate": 1e-3, "architecture": "backbone"}
    pick, floor = floor_pick(trials, defaults, CHANCE, NULL)
    assert pick is trials[1] and floor["rule"] == "loss" and not floor["learned"]
    assert floor["loss"]["margin"] == pytest.approx(0.5) and floor["fallback"] is None


def test_losses_within_noise_of_the_constant_prediction_keep_the_defaults():
    trials = [trial("backbone", 3e-3, [0.02, 0.02, 0.02], fold_losses=[3.7, 4.1, 3.95]),  # margin -0.017 nats
              trial("backbone", 1e-3, [0.02, 0.02, 0.02], fold_losses=[3.9, 4.0, 4.0])]
    pick, floor = floor_pick(trials, {"learning_rate": 1e-3, "architecture": "backbone"}, CHANCE, NULL)
    assert pick is trials[1] and floor["rule"] == "defaults" and not floor["loss"]["learned"]
    assert floor["fallback"] == trials[1]["params"]
    pick, floor = floor_pick(trials, {"learning_rate": 1e-2, "architecture": "backbone"}, CHANCE, NULL)
    assert pick is None and floor["rule"] == "noise"


def test_an_accuracy_above_the_floor_keeps_the_pick():
    trials = [trial("backbone", 3e-3, [0.30, 0.25, 0.35], fold_losses=[5.0, 5.0, 5.0])]
    pick, floor = floor_pick(trials, {"learning_rate": 1e-3}, CHANCE, NULL)
    assert pick is None and floor["rule"] == "accuracy" and floor["learned"] and floor["loss"] is None


def test_a_tuning_cut_to_one_trial_runs_and_keeps_the_preferred_architecture():
    """The searched kernels come first in the candidates, but the backbone's run first: a single trial cannot
    hand over an architecture that was never compared with it."""
    data = create_task("digits")
    args = dict(depth=10, kernel_sizes=(3, 5), dilations=(1,))
    backbone = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    searched = {label: "k5d1" for label in backbone}
    assert searched != backbone
    result = tune(data, {"searched": searched, "backbone": backbone}, prefer="backbone", backbone="wrn",
                  backbone_args=args, max_trials=1, trial_epochs=1, trial_batch_fraction=0.3, folds=2)
    assert [t["params"]["architecture"] for t in result.trials] == ["backbone"]
    assert result.best["architecture"] == "backbone"
