"""What the stages after the current one will train, and how long they will need.

The budget (:mod:`nni_dash.budget`) splits a run's time limit over its stages. A later stage that
trains plain CNNs (the tuning's runs, the retrain) can be costed before it starts: its auto step
count (:func:`~nni_dash.budget.auto_steps`) times the step time of its architectures, measured here
(:func:`~nni_dash.pipeline.retrain.step_seconds`, cached per architecture and batch size). Before the
search only the backbone's kernels are known; the tuning re-plans the retrain with the searched ones.
"""
from __future__ import annotations

from typing import Any

from nni_dash.budget import RUN_SECONDS, auto_batch_size, auto_steps

__all__ = ["tune_shape", "tune_trials", "retrain_shape", "later_needs"]

#: the stages that train plain CNNs and can be costed before they start
COSTED = ("tune", "retrain")


def tune_shape(run: Any) -> tuple[int, int, int]:
    """``(folds, training samples of one tuning run, batch size)`` of ``run``'s tuning."""
    from nni_dash.pipeline.tune import auto_folds
    data = run.data
    folds = run.cfg.tune.folds or auto_folds(data)
    n_train, n_val = len(data.x_train), len(data.x_val)
    n = n_train if folds == 1 else (n_train + n_val) * (folds - 1) // folds
    return folds, n, run.cfg.retrain.batch_size or auto_batch_size(n)


def tune_trials(run: Any, *, compared: bool) -> int:
    """Trials ``run``'s tuning starts at most: its grid or ``tune.max_trials`` (``compared``: it also
    picks between the searched and the backbone's kernels, which doubles a grid)."""
    from nni_dash.pipeline.tune import ARCHITECTURE_KEY, DEFAULT_GRID, planned_trials
    t = run.cfg.tune
    space = dict(t.search_space or DEFAULT_GRID)
    if t.compare_backbone and compared:
        space[ARCHITECTURE_KEY] = {"_type": "choice", "_value": ["searched", "backbone"]}
    return planned_trials(space, tuner=t.tuner, max_trials=t.max_trials)


def retrain_shape(run: Any) -> tuple[Any, int]:
    """``(data the retrain fits, its batch size)``: train+val with ``retrain.refit``, else train."""
    from nni_dash.tasks.splits import refit_view
    data = refit_view(run.data) if run.cfg.retrain.refit else run.data
    return data, run.cfg.retrain.batch_size or auto_batch_size(len(data.x_train))


def _per_step(run: Any, batch_size: int) -> float:
    """Seconds of one training step of the slowest architecture the later stages may train."""
    from nni_dash.pipeline.retrain import step_seconds
    backbone = run._space(run.retrain_args).default_sample()
    samples = [backbone] + ([run.sample] if run.sample and run.sample != backbone else [])
    times = []
    for sample in samples:
        key = (tuple(sorted(sample.items())), batch_size)
        if key not in run.step_times:
            run.step_times[key] = step_seconds(run.data, sample, backbone=run.cfg.backbone.name,
                                               backbone_args=run.retrain_args, batch_size=batch_size)
        times.append(run.step_times[key])
    return max(times)


def later_needs(run: Any, stage: str) -> dict[str, float]:
    """Estimated seconds of the costed stages still to run after ``stage`` (see the module docstring).

    The tuning's need is its planned runs (trials x folds) times ``steps x step time + RUN_SECONDS``.
    Empty without a time limit or when no costed stage follows; prints what it estimated.
    """
    later = [s for s in run._left(stage)[1:] if s in COSTED]
    if run.budget.end is None or not later:
        return {}
    from nni_dash.budget import NEED_MARGIN
    needs, said = {}, []
    if "tune" in later:
        folds, n, batch_size = tune_shape(run)
        compared = run.searched() if run.sample else run.cfg.search.strategy != "none"
        runs = tune_trials(run, compared=compared) * folds
        steps, per_step = auto_steps("trial", n, batch_size), _per_step(run, batch_size)
        needs["tune"] = runs * (steps * per_step + RUN_SECONDS)
        said.append(f"tune {runs} runs x {steps} steps x {1e3 * per_step:.0f} ms = {needs['tune']:.0f} s")
    if "retrain" in later:
        data, batch_size = retrain_shape(run)
        steps, per_step = auto_steps("retrain", len(data.x_train), batch_size), _per_step(run, batch_size)
        needs["retrain"] = steps * per_step
        said.append(f"retrain {steps} steps x {1e3 * per_step:.0f} ms = {needs['retrain']:.0f} s")
    run.echo(f"budget: measured step times give {'; '.join(said)} (a stage that needs less than its share "
             f"reserves only that, x{NEED_MARGIN:g})")
    return needs
