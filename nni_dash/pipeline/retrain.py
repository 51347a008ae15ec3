"""Stage 3: retrain the discretised CNN from scratch and score it on the test split.

The network is rebuilt from the exported architecture with fresh weights, optionally at another
width than the search (``width``: WRN-16-1 searched, WRN-16-4 retrained). Weights: SGD with
Nesterov momentum (or Adam) and a step schedule. The model of the last epoch is tested; with
``select_best=True`` the epoch with the best validation score is tested instead.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from nni_dash.backbones import rebuild
from nni_dash.evaluator import TaskModule, task_evaluator, tensor_dataset
from nni_dash.pipeline.search import head_for
from nni_dash.tasks.base import TaskData

__all__ = ["RetrainResult", "retrain", "evaluate"]


@dataclasses.dataclass
class RetrainResult:
    """Test (and validation) score of the retrained network, its size and timing."""

    metric: str
    test_score: float
    val_score: float
    num_parameters: int
    seconds: float
    epochs: int
    hparams: dict[str, Any]


def evaluate(model: torch.nn.Module, data: TaskData, *, split: str = "test", batch_size: int = 256) -> float:
    """Score ``model`` on ``split`` with the task's metric (eval mode, no gradients)."""
    from nni_dash.tasks.metrics import make_metric
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    metric = make_metric(data.metric, kind=data.kind, num_outputs=data.num_outputs)
    loader = torch.utils.data.DataLoader(tensor_dataset(x, y), batch_size=batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for xb, yb in loader:
            metric.update(model(xb.to(device)).cpu(), yb)
    model.train(was_training)
    return float(metric.compute())


def retrain(data: TaskData, sample: dict[str, str], *, backbone: str, backbone_args: dict[str, Any] | None = None,
            epochs: int = 20, batch_size: int = 64, learning_rate: float = 0.1, momentum: float = 0.9,
            weight_decay: float = 5e-4, dropout: float | None = None, optimizer: str = "sgd",
            lr_milestones: Sequence[int] = (), lr_gamma: float = 0.2, seed: int = 0, select_best: bool = False,
            limit_train_batches: float | int = 1.0, callbacks: list | None = None, logger: Any = False,
            enable_progress_bar: bool = False, ckpt_dir: str | None = None, ckpt_path: str | None = None,
            checkpoint_every_n_steps: int = 0, nan_policy: str = "stop",
            trainer_kwargs: dict[str, Any] | None = None) -> RetrainResult:
    """Train the architecture ``sample`` of ``backbone`` from scratch on ``data`` and test it.

    With ``ckpt_dir``: ``best.ckpt`` (best validation) and an atomic ``last.ckpt`` written at each
    epoch end and every ``checkpoint_every_n_steps`` batches (:class:`~nni_dash.checkpoint.ResumeCheckpoint`);
    ``ckpt_path`` resumes from such a checkpoint, mid-epoch included. A non-finite training loss raises
    :class:`~nni_dash.errors.NumericalError` (``nan_policy="stop"``) or skips the batch (``"skip"``).
    """
    pl.seed_everything(seed, verbose=False)
    args = dict(backbone_args or {})
    if dropout is not None:
        args["dropout"] = dropout
    model = rebuild(backbone, sample, in_channels=data.in_channels, num_outputs=data.num_outputs,
                    head=head_for(data.kind), **args)
    callbacks = list(callbacks or [])
    best = None
    if select_best or ckpt_dir:
        mode = "max" if _higher(data.metric) else "min"
        best = ModelCheckpoint(dirpath=ckpt_dir, monitor=f"val_{data.metric}", mode=mode, save_last=False,
                               filename="best")
        callbacks.append(best)
    if ckpt_dir:
        from nni_dash.checkpoint import ResumeCheckpoint
        callbacks.append(ResumeCheckpoint(ckpt_dir, every_n_steps=checkpoint_every_n_steps))
    module = TaskModule(kind=data.kind, metric=data.metric, num_outputs=data.num_outputs, learning_rate=learning_rate,
                        momentum=momentum, weight_decay=weight_decay, optimizer=optimizer, lr_milestones=lr_milestones,
                        lr_gamma=lr_gamma, nan_policy=nan_policy)
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=epochs, module=module, seed=seed,
                               callbacks=callbacks, logger=logger, enable_progress_bar=enable_progress_bar,
                               limit_train_batches=limit_train_batches, trainer_kwargs=trainer_kwargs)
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
    return RetrainResult(data.metric, evaluate(model, data, split="test"), evaluate(model, data, split="val"),
                         sum(p.numel() for p in model.parameters()), seconds, epochs, hparams)


def _higher(metric: str) -> bool:
    from nni_dash.tasks.metrics import higher_is_better
    return higher_is_better(metric)
