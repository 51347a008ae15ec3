"""The plan of the later stages: their shapes and their measured needs (nni_dash.cli.plan)."""
from __future__ import annotations

import pytest

from nni_dash.budget import RUN_SECONDS, auto_batch_size, auto_steps


def _run(tmp_path, **overrides):
    from nni_dash.cli.stages import Run
    from nni_dash.config import ExperimentConfig
    from nni_dash.tasks import create_task
    cfg = ExperimentConfig().apply_overrides({
        "backbone.args": {"depth": 10, "kernel_sizes": [3, 5], "dilations": [1, 2]}, **overrides}).validate()
    said = []
    run = Run(cfg, create_task("digits"), tmp_path, tmp_path / "tb", echo=said.append)
    run._todo = ["search", "tune", "retrain"]
    return run, said


def test_shapes_follow_the_folds_and_the_refit(tmp_path):
    from nni_dash.cli.plan import retrain_shape, tune_shape
    run, _ = _run(tmp_path, **{"tune.folds": 3})
    n_train, n_val = len(run.data.x_train), len(run.data.x_val)
    assert tune_shape(run) == (3, (n_train + n_val) * 2 // 3, auto_batch_size((n_train + n_val) * 2 // 3))
    data, batch = retrain_shape(run)
    assert len(data.x_train) == n_train + n_val and batch == auto_batch_size(n_train + n_val)
    run, _ = _run(tmp_path, **{"tune.folds": 1, "retrain.refit": False, "retrain.batch_size": 16})
    assert tune_shape(run) == (1, n_train, 16) and len(retrain_shape(run)[0].x_train) == n_train


def test_needs_are_auto_steps_times_a_step_time_measured_once_per_architecture_and_batch(tmp_path):
    from nni_dash.cli.plan import later_needs, retrain_shape, tune_shape
    run, said = _run(tmp_path, **{"budget.mode": "time", "budget.minutes": 5, "tune.folds": 1})
    needs = later_needs(run, "search")
    _, n, batch = tune_shape(run)
    data, rbatch = retrain_shape(run)
    backbone = tuple(sorted(run._space(run.retrain_args).default_sample().items()))
    assert set(run.step_times) == {(backbone, batch), (backbone, rbatch)}  # only the backbone is known yet
    trials = 3 * 2  # the default learning-rate grid x (searched, backbone)
    assert needs["tune"] == pytest.approx(
        trials * (auto_steps("trial", n, batch) * run.step_times[backbone, batch] + RUN_SECONDS))
    assert needs["retrain"] == pytest.approx(auto_steps("retrain", len(data.x_train), rbatch)
                                             * run.step_times[backbone, rbatch])
    assert "budget: measured step times give tune 6 runs" in said[-1]
    measured = dict(run.step_times)
    later_needs(run, "tune")
    assert run.step_times == measured  # nothing measured again
    run._todo = ["retrain"]  # as when the retrain starts
    assert later_needs(run, "retrain") == {}


def test_no_needs_without_a_time_limit(tmp_path):
    from nni_dash.cli.plan import later_needs
    run, said = _run(tmp_path, **{"budget.mode": "epochs"})
    assert later_needs(run, "search") == {} and not run.step_times and not said
