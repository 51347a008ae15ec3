"""Stage 3: retrain the discretised CNN from scratch and score it on the test split.

The network is rebuilt from the exported architecture with fresh weights, optionally at another
width than the search (``width``: WRN-16-1 searched, WRN-16-4 retrained), with the task's input
standardisation (``data.input_stats``). Training length is either ``epochs`` or a
:class:`~nni_dash.budget.StepBudget` (``steps``), which :class:`~nni_dash.budget.StepLimit` enforces
and the cosine schedule follows. Validation runs about :data:`EVALS_PER_RUN` times per run.

The model of the last step is tested; with ``select_best=True`` the step with the best validation
score is tested instead (``validate=False`` - the final retrain on train+val - has no validation).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from nni_dash.backbones import rebuild
from nni_dash.budget import StepBudget, StepLimit, steps_per_epoch
from nni_dash.evaluator import TaskModule, task_evaluator
from nni_dash.nn.fast_conv import use_fft_convs, use_plain_convs
from nni_dash.pipeline.search import head_for
from nni_dash.progress import StepProgressBar
from nni_dash.tasks.base import TaskData

__all__ = ["RetrainResult", "retrain", "evaluate", "evaluate_loss", "EVALS_PER_RUN", "step_trainer_kwargs",
           "step_seconds"]

#: validation passes per step-budgeted run (and metric records per stage)
EVALS_PER_RUN = 20


@dataclasses.dataclass
class RetrainResult:
    """Test (and validation) score of the retrained network, its size and timing.

    ``val_score``/``val_loss`` are None when the run trained on its validation split (``validate=False``).
    """

    metric: str
    test_score: float
    val_score: float | None
    num_parameters: int
    seconds: float
    epochs: int
    hparams: dict[str, Any]
    val_loss: float | None = None
    steps: int | None = None
    budget: dict[str, Any] | None = None


def _split(data: TaskData, split: str) -> tuple[Any, Any]:
    return (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)


@torch.no_grad()
def _outputs(model: torch.nn.Module, x: Any, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(torch.from_numpy(x[i:i + batch_size]).to(device)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def evaluate(model: torch.nn.Module, data: TaskData, *, split: str = "test", batch_size: int = 256) -> float:
    """Score ``model`` on ``split`` with the task's metric (eval mode, no gradients)."""
    from nni_dash.tasks.metrics import make_metric
    x, y = _split(data, split)
    metric = make_metric(data.metric, kind=data.kind, num_outputs=data.num_outputs)
    metric.update(_outputs(model, x, batch_size), torch.from_numpy(y))
    return float(metric.compute())


def evaluate_loss(model: torch.nn.Module, data: TaskData, *, split: str = "val", batch_size: int = 256) -> float:
    """The task's (unsmoothed) training loss of ``model`` on ``split``."""
    from nni_dash.tasks.metrics import make_loss
    x, y = _split(data, split)
    return float(make_loss(data.kind)(_outputs(model, x, batch_size), torch.from_numpy(y)))


def step_trainer_kwargs(steps: StepBudget, n_train: int, batch_size: int, *, validate: bool = True) -> dict[str, Any]:
    """Trainer settings for a step-budgeted run: enough epochs, validation about every ``limit/EVALS_PER_RUN`` steps."""
    per_epoch = steps_per_epoch(n_train, batch_size)
    every = max(1, round(max(1, steps.wanted // EVALS_PER_RUN) / per_epoch))
    kwargs: dict[str, Any] = {"max_epochs": math.ceil(steps.wanted / per_epoch) + 1, "check_val_every_n_epoch": every}
    if not validate:
        kwargs["limit_val_batches"] = 0
    return kwargs


def retrain(data: TaskData, sample: dict[str, str], *, backbone: str, backbone_args: dict[str, Any] | None = None,
            epochs: int = 20, steps: StepBudget | None = None, batch_size: int = 64, learning_rate: float = 1e-3,
            momentum: float = 0.9, weight_decay: float = 1e-2, dropout: float | None = None,
            optimizer: str = "adamw", label_smoothing: float = 0.0, schedule: str = "cosine",
            warmup_fraction: float = 0.0, lr_milestones: Sequence[int] = (), lr_gamma: float = 0.2, seed: int = 0,
            select_best: bool = False, validate: bool = True, limit_train_batches: float | int = 1.0,
            callbacks: list | None = None, logger: Any = False, enable_progress_bar: bool = False,
            ckpt_dir: str | None = None, ckpt_path: str | None = None, checkpoint_every_n_steps: int = 0,
            nan_policy: str = "stop", trainer_kwargs: dict[str, Any] | None = None) -> RetrainResult:
    """Train the architecture ``sample`` of ``backbone`` from scratch on ``data`` and test it.

    ``steps`` (a :class:`~nni_dash.budget.StepBudget`) replaces ``epochs`` when given. ``schedule``:
    ``"cosine"`` (over the run's steps), ``"constant"`` or ``"step"`` (``lr_gamma`` at each of
    ``lr_milestones`` epochs, the reference). With ``ckpt_dir``: ``best.ckpt`` (best validation)
    and an atomic ``last.ckpt`` written at each epoch end and every ``checkpoint_every_n_steps``
    batches (:class:`~nni_dash.checkpoint.ResumeCheckpoint`); ``ckpt_path`` resumes from such a
    checkpoint, mid-epoch included. A non-finite training loss raises
    :class:`~nni_dash.errors.NumericalError` (``nan_policy="stop"``) or skips the batch (``"skip"``).
    """
    pl.seed_everything(seed, verbose=False)
    args = dict(backbone_args or {})
    if dropout is not None:
        args["dropout"] = dropout
    model = rebuild(backbone, sample, in_channels=data.in_channels, num_outputs=data.num_outputs,
                    head=head_for(data.kind), input_stats=data.input_stats, **args)
    use_fft_convs(model)  # big dilated kernels train by FFT where the cost model says it is cheaper
    callbacks = list(callbacks or [])
    kwargs = dict(trainer_kwargs or {})
    run_epochs = epochs
    if steps is not None:  # a step budget: StepLimit ends the run
        kwargs.update(step_trainer_kwargs(steps, len(data.x_train), batch_size, validate=validate))
        run_epochs = kwargs.pop("max_epochs")
        callbacks.append(StepLimit(steps))
        if enable_progress_bar:  # one line over the step budget instead of Lightning's bar per epoch
            callbacks.append(StepProgressBar(steps, "retrain"))
        schedule_steps = steps
    else:
        if not validate:
            kwargs["limit_val_batches"] = 0
        schedule_steps = StepBudget(epochs * _batches(data, batch_size, limit_train_batches))
    best = None
    if validate and (select_best or ckpt_dir):
        mode = "max" if _higher(data.metric) else "min"
        best = ModelCheckpoint(dirpath=ckpt_dir, monitor=f"val_{data.metric}", mode=mode, save_last=False,
                               filename="best")
        callbacks.append(best)
    if ckpt_dir:
        from nni_dash.checkpoint import ResumeCheckpoint
        callbacks.append(ResumeCheckpoint(ckpt_dir, every_n_steps=checkpoint_every_n_steps))
    module = TaskModule(kind=data.kind, metric=data.metric, num_outputs=data.num_outputs, learning_rate=learning_rate,
                        momentum=momentum, weight_decay=weight_decay, optimizer=optimizer, lr_milestones=lr_milestones,
                        lr_gamma=lr_gamma, nan_policy=nan_policy, label_smoothing=label_smoothing, schedule=schedule,
                        warmup_fraction=warmup_fraction, step_budget=schedule_steps)
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=run_epochs, module=module, seed=seed,
                               callbacks=callbacks, logger=logger, enable_progress_bar=enable_progress_bar,
                               limit_train_batches=limit_train_batches, trainer_kwargs=kwargs)
    if ckpt_path:
        evaluator.fit_kwargs["ckpt_path"] = ckpt_path
    start = time.perf_counter()
    evaluator.evaluate(model)
    seconds = time.perf_counter() - start
    if select_best and best is not None and best.best_model_path:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    hparams = dict(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                   dropout=args.get("dropout", 0.0), optimizer=optimizer)
    val_score = evaluate(model, data, split="val") if validate else None
    val_loss = evaluate_loss(model, data, split="val") if validate else None
    done = steps.limit if steps is not None else None
    test_score = evaluate(model, data, split="test")
    use_plain_convs(model)  # the trained network is plain nn.Conv1d/2d again (same state dict)
    return RetrainResult(data.metric, test_score, val_score,
                         sum(p.numel() for p in model.parameters()), seconds, epochs, hparams, val_loss=val_loss,
                         steps=done, budget=steps.summary() if steps is not None else None)


def step_seconds(data: TaskData, sample: dict[str, str], *, backbone: str, backbone_args: dict[str, Any] | None = None,
                 batch_size: int, steps: int = 3) -> float:
    """Seconds of one training step of the plain CNN ``sample`` at ``batch_size``, measured here.

    A step is what :func:`retrain` does per batch without Lightning: forward, the task loss, backward
    and an AdamW update, on the first ``batch_size`` training samples. The median of ``steps`` timed
    steps after one warm-up step; the budget uses it to plan the stages before they start
    (:func:`nni_dash.budget.allocate`). Global RNG state is saved and restored, so a run that probes
    trains the same weights as one that does not.
    """
    from nni_dash.tasks.metrics import make_loss
    with torch.random.fork_rng(devices=[]):
        model = rebuild(backbone, sample, in_channels=data.in_channels, num_outputs=data.num_outputs,
                        head=head_for(data.kind), input_stats=data.input_stats, **dict(backbone_args or {}))
        use_fft_convs(model)
        model.train()
        x = torch.from_numpy(np.ascontiguousarray(data.x_train[:batch_size]))
        y = torch.from_numpy(np.ascontiguousarray(data.y_train[:batch_size]))
        loss_fn, optimizer = make_loss(data.kind), torch.optim.AdamW(model.parameters(), lr=1e-3)
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _batches(data: TaskData, batch_size: int, limit_train_batches: float | int) -> int:
    per_epoch = steps_per_epoch(len(data.x_train), batch_size)
    if isinstance(limit_train_batches, float):
        return max(1, int(per_epoch * limit_train_batches))
    return max(1, min(per_epoch, int(limit_train_batches)))


def _higher(metric: str) -> bool:
    from nni_dash.tasks.metrics import higher_is_better
    return higher_is_better(metric)
