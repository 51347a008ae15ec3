"""Lightning evaluator for nni_dash tasks: the loss, metric and optimiser of one task.

:class:`TaskModule` is an NNI ``LightningModule`` (the inner module of every search and retrain):

* training: the task's loss (:func:`nni_dash.tasks.metrics.make_loss`), logs ``train_loss``;
* validation/test: logs ``val_loss``/``val_<metric>`` (also as ``default``, the key NNI and ENAS
  read) and ``test_<metric>``; metrics are torchmetrics objects accumulated over the whole epoch
  (not per-batch averages);
* optimiser: AdamW (default), Adam or SGD with Nesterov momentum (the DASH reference), and a
  learning-rate schedule: ``"cosine"`` (linear warm-up over ``warmup_fraction`` of the steps, then a
  cosine to zero at the step count of ``step_budget``, a :class:`~nni_dash.budget.StepBudget`, read
  at every step), ``"constant"``, or ``"step"`` (``lr_gamma`` at each ``lr_milestones`` epoch, the
  reference). Under one-shot strategies the step-interval schedule is advanced by NNI's loop.
* loss: the task's loss, with ``label_smoothing`` for classification; ``val_loss`` is the plain
  (unsmoothed) loss.

:func:`task_evaluator` wraps it with NNI's traced ``Trainer``/``DataLoader`` into an NNI
``Lightning`` evaluator.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import itertools

import nni
import numpy as np
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Lightning, LightningModule, Trainer
from torch.utils.data import Sampler, TensorDataset

from nni_dash.errors import NumericalError

from nni_dash.tasks.base import TaskData
from nni_dash.tasks.metrics import higher_is_better, make_loss, make_metric

__all__ = ["TaskModule", "make_optimizer", "EpochShuffleSampler", "ResumableDataLoader", "task_evaluator", "tensor_dataset",
           "OPTIMIZERS", "SCHEDULES", "NAN_POLICIES"]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant", "step")
NAN_POLICIES = ("stop", "skip")


class TaskModule(LightningModule):
    """Loss, metric and optimiser of a task (see the module docstring)."""

    def __init__(self, *, kind: str, metric: str, num_outputs: int, learning_rate: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 1e-2, optimizer: str = "adamw",
                 lr_milestones: Sequence[int] = (), lr_gamma: float = 0.2, nan_policy: str | None = "stop",
                 label_smoothing: float = 0.0, schedule: str = "constant", warmup_fraction: float = 0.0,
                 step_budget: Any = None) -> None:
        super().__init__()
        if nan_policy is not None and nan_policy not in NAN_POLICIES:
            from nni_dash.errors import ConfigError
            raise ConfigError(f"nan_policy={nan_policy!r}: allowed values are stop, skip")
        self.nan_policy = nan_policy  # None: the caller (e.g. the DASH loop) checks the loss itself
        self.skipped_batches = 0
        self.kind, self.metric_name, self.num_outputs = kind, metric, num_outputs
        self.learning_rate, self.momentum, self.weight_decay = learning_rate, momentum, weight_decay
        self.optimizer_name, self.lr_milestones, self.lr_gamma = optimizer, tuple(lr_milestones), lr_gamma
        self.schedule, self.warmup_fraction, self.step_budget = schedule, warmup_fraction, step_budget
        self.criterion = make_loss(kind, label_smoothing=label_smoothing)
        self.eval_criterion = make_loss(kind)  # validation loss without smoothing (a proper score)
        self.val_metric = make_metric(metric, kind=kind, num_outputs=num_outputs)
        self.test_metric = make_metric(metric, kind=kind, num_outputs=num_outputs)
        self.step_metric = make_metric(metric, kind=kind, num_outputs=num_outputs)
        self.higher_is_better = higher_is_better(metric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(out, y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        loss = self._loss(self(x), y)
        if self.nan_policy is not None and not torch.isfinite(loss).all():
            if self.nan_policy == "skip" and self.automatic_optimization and self._trainer is not None:
                self.skipped_batches += 1
                self.log("skipped_batches", float(self.skipped_batches))
                return None  # Lightning skips the optimiser step of this batch
            epoch = self.trainer.current_epoch if self._trainer is not None else "?"
            step = self.trainer.global_step if self._trainer is not None else "?"
            raise NumericalError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {step}, batch "
                                 f"{batch_idx}; lower the learning rate or set trainer.nan_policy=skip")
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        out = self(x)
        if self._trainer is not None and self.trainer.training:
            # NNI's ENAS calls validation_step inside training and reads a per-batch reward "default"
            self.log("default", self.step_metric(out, y), on_step=True, on_epoch=False)
            return
        self.val_metric.update(out, y)
        self.log("val_loss", self.eval_criterion(out, y), prog_bar=True)
        self.log(f"val_{self.metric_name}", self.val_metric, prog_bar=True)
        self.log("default", self.val_metric)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.test_metric.update(self(x), y)
        self.log(f"test_{self.metric_name}", self.test_metric)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = make_optimizer(self.optimizer_name, params, lr=self.learning_rate, momentum=self.momentum,
                             weight_decay=self.weight_decay)
        if self.schedule == "cosine":
            from nni_dash.schedule import warmup_cosine
            factor = warmup_cosine(self.step_budget, warmup_fraction=self.warmup_fraction)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            return [opt], [{"scheduler": sched, "interval": "step"}]
        if not self.lr_milestones:
            return opt
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(self.lr_milestones), gamma=self.lr_gamma)
        return [opt], [sched]


def make_optimizer(name: str, params: list[torch.nn.Parameter], *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """``adamw`` | ``adam`` | ``sgd`` (Nesterov when ``momentum > 0``), as one fused update over all tensors.

    torch's CPU default updates tensor by tensor in Python; a supernet holding one kernel per
    candidate has hundreds of them, and the fused kernels are 4-5x faster there (``foreach`` where
    fusing is not supported, e.g. mixed devices or dtypes).
    """
    def build(**fast: bool) -> torch.optim.Optimizer:
        if name == "adamw":
            return torch.optim.AdamW(params, lr, betas=betas, weight_decay=weight_decay, **fast)
        if name == "adam":
            return torch.optim.Adam(params, lr, betas=betas, weight_decay=weight_decay, **fast)
        if name == "sgd":
            return torch.optim.SGD(params, lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay,
                                   **fast)
        from nni_dash.errors import ConfigError
        raise ConfigError(f"optimizer: unknown value {name!r}; allowed: {', '.join(OPTIMIZERS)}")

    devices = {(p.device.type, p.dtype) for p in params}
    if len(devices) == 1 and next(iter(devices))[1] in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        try:
            return build(fused=True)
        except (RuntimeError, TypeError):
            pass
    return build(foreach=True)


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before each epoch, so a run resumed from a checkpoint sees the same
    batches as an uninterrupted one, whatever else consumed random numbers in between.
    """

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class _ResumableDataLoader(torch.utils.data.DataLoader):
    """A ``DataLoader`` that can continue an epoch part-way through.

    :meth:`position` is ``{"epoch", "batches"}``: the sampler's epoch and how many batches the current
    pass has delivered. :meth:`resume_from` makes the next pass skip that many batches of that epoch's
    order (:class:`EpochShuffleSampler`'s permutation depends only on ``(seed, epoch)``; a sequential
    held-out loader continues its cycle). Passes are lazy generators, so ``resume_from`` may be called
    after ``iter()`` and before the first batch. See :mod:`nni_dash.checkpoint`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delivered = 0
        self._skip = 0

    def position(self) -> dict[str, Any]:
        return {"epoch": getattr(self.sampler, "epoch", None), "batches": self._delivered}

    def resume_from(self, state: dict[str, Any]) -> None:
        if state.get("epoch") is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state["epoch"]))
        self._skip = int(state.get("batches", 0))

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._pass()

    def _pass(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._delivered = skip
        batches = super().__iter__()
        if skip:
            batches = itertools.islice(batches, skip, None)  # in-memory tensors: skipping costs little
        for batch in batches:
            self._delivered += 1
            yield batch


ResumableDataLoader = nni.trace(_ResumableDataLoader)


def tensor_dataset(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    """Arrays of a task split as a ``TensorDataset`` (float32 inputs; labels as the task stores them)."""
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))


def task_evaluator(data: TaskData, *, batch_size: int, max_epochs: int, module: TaskModule | None = None,
                   val_split: str = "val", seed: int = 0, num_workers: int = 0, callbacks: list | None = None,
                   logger: Any = False, enable_progress_bar: bool = False, limit_train_batches: float | int = 1.0,
                   trainer_kwargs: dict[str, Any] | None = None, **module_kwargs: Any) -> Lightning:
    """An NNI ``Lightning`` evaluator training on ``data``'s train split, validating on ``val_split``.

    ``module_kwargs`` go to :class:`TaskModule` (learning rate, momentum, ...); ``trainer_kwargs``
    to Lightning's ``Trainer`` (accelerator, devices, strategy, precision, ...).
    """
    module = module or TaskModule(kind=data.kind, metric=data.metric, num_outputs=data.num_outputs, **module_kwargs)
    train_set = tensor_dataset(data.x_train, data.y_train)
    train = ResumableDataLoader(dataset=train_set, batch_size=batch_size,
                                sampler=EpochShuffleSampler(len(train_set), seed=seed), num_workers=num_workers,
                                drop_last=len(data.x_train) > batch_size)
    val_x, val_y = (data.x_val, data.y_val) if val_split == "val" else (data.x_test, data.y_test)
    val = ResumableDataLoader(dataset=tensor_dataset(val_x, val_y), batch_size=max(batch_size, 64), num_workers=num_workers)
    from pytorch_lightning.callbacks import Checkpoint

    from nni_dash.checkpoint import AtomicCheckpointIO
    kwargs = dict(trainer_kwargs or {})
    kwargs.setdefault("plugins", [AtomicCheckpointIO()])
    trainer = Trainer(max_epochs=max_epochs, logger=logger, enable_progress_bar=enable_progress_bar,
                      enable_model_summary=False, callbacks=callbacks or [], num_sanity_val_steps=0,
                      limit_train_batches=limit_train_batches,
                      enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks or []), **kwargs)
    return Lightning(module, trainer, train_dataloaders=train, val_dataloaders=val)
