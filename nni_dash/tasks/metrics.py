"""Metrics and losses per task kind (pure torch / torchmetrics; no NNI).

Every metric from :func:`make_metric` takes the model's *raw* outputs and the task's targets in
the layouts of :mod:`nni_dash.tasks.base`:

* ``classification``: logits ``(N, K)`` and int64 labels ``(N,)``;
* ``multilabel``: logits ``(N, K)`` and {0, 1} targets ``(N, K)`` (a sigmoid is applied here);
* ``segmentation``: logits ``(N, 1, *spatial)`` and a {0, 1} mask; pixel-level binary AUROC with
  ``thresholds`` binned (:data:`AUROC_BINS`) so memory stays bounded on large masks;
* ``dense_regression``: values ``(N, K, *spatial)`` and targets of the same shape.

Unknown metrics, or a metric that does not fit the kind, raise :class:`~nni_dash.errors.ConfigError`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torchmetrics
from torch import nn
from torchmetrics import classification as tmc
from torchmetrics.wrappers import LambdaInputTransformer

from nni_dash.errors import ConfigError
from nni_dash.tasks.base import TaskData

__all__ = [
    "METRICS", "AUROC_BINS", "RelativeL2", "make_metric", "check_metric", "higher_is_better",
    "default_metric", "make_loss", "trivial_baseline_score",
]

AUROC_BINS = 200


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """What a metric means: its direction and the task kinds it applies to."""

    description: str
    higher_is_better: bool
    kinds: tuple[str, ...]


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("top-1 accuracy", True, ("classification",)),
    "macro_f1": MetricSpec("macro-averaged F1 over classes", True, ("classification",)),
    "map": MetricSpec("macro average precision over labels", True, ("multilabel",)),
    "auroc": MetricSpec("macro AUROC over labels / binary pixel AUROC", True, ("multilabel", "segmentation")),
    "rel_l2": MetricSpec("mean over samples of ||pred - y||_2 / ||y||_2", False, ("dense_regression",)),
    "mae": MetricSpec("mean absolute error", False, ("dense_regression",)),
}

_DEFAULTS = {"classification": "accuracy", "multilabel": "map", "dense_regression": "rel_l2",
             "segmentation": "auroc"}


class RelativeL2(torchmetrics.Metric):
    """Mean over samples of ``||pred_i - y_i||_2 / ||y_i||_2`` (norms over all non-batch axes)."""

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, *, eps: float = 1e-12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps
        self.add_state("ratio_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape:
            raise ValueError(f"rel_l2: preds shape {tuple(preds.shape)} != target shape {tuple(target.shape)}")
        preds, target = preds.detach().reshape(len(target), -1).double(), target.reshape(len(target), -1).double()
        diff, ref = (preds - target).norm(dim=1), target.norm(dim=1).clamp_min(self.eps)
        self.ratio_sum += (diff / ref).sum()
        self.count += len(target)

    def compute(self) -> torch.Tensor:
        return (self.ratio_sum / self.count.clamp_min(1)).float()


def _as_long(t: torch.Tensor) -> torch.Tensor:
    return t.long()


def _flat_long(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).long()


def _flat_sigmoid(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t.reshape(-1).float())


def _sigmoid(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t.float())


def check_metric(name: str, *, kind: str) -> str:
    """Return ``name`` if it is a known metric that fits ``kind``; else a one-line ConfigError."""
    if name not in METRICS:
        raise ConfigError(f"metric: unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    if kind not in METRICS[name].kinds:
        fits = [m for m, spec in METRICS.items() if kind in spec.kinds]
        raise ConfigError(f"metric: {name!r} does not apply to {kind!r} tasks; allowed for {kind}: "
                          f"{', '.join(fits) or 'none'}")
    return name


def make_metric(name: str, *, kind: str, num_outputs: int) -> torchmetrics.Metric:
    """A fresh torchmetrics metric ``name`` for a task of ``kind`` that accepts raw model outputs."""
    check_metric(name, kind=kind)
    if kind == "classification":
        cls = tmc.MulticlassAccuracy if name == "accuracy" else tmc.MulticlassF1Score
        avg = "micro" if name == "accuracy" else "macro"
        return cls(num_classes=max(int(num_outputs), 2), average=avg)
    if kind == "multilabel":
        cls = tmc.MultilabelAveragePrecision if name == "map" else tmc.MultilabelAUROC
        return LambdaInputTransformer(cls(num_labels=int(num_outputs), average="macro"),
                                      transform_pred=_sigmoid, transform_target=_as_long)
    if kind == "segmentation":
        return LambdaInputTransformer(tmc.BinaryAUROC(thresholds=AUROC_BINS),
                                      transform_pred=_flat_sigmoid, transform_target=_flat_long)
    return RelativeL2() if name == "rel_l2" else torchmetrics.MeanAbsoluteError()


def higher_is_better(name: str) -> bool:
    """Whether larger values of metric ``name`` are better."""
    if name not in METRICS:
        raise ConfigError(f"metric: unknown metric {name!r}; allowed: {', '.join(METRICS)}")
    return METRICS[name].higher_is_better


def default_metric(kind: str) -> str:
    """The NAS-Bench-360-style default metric of a task kind."""
    if kind not in _DEFAULTS:
        raise ConfigError(f"task kind {kind!r} is not one of {', '.join(_DEFAULTS)}")
    return _DEFAULTS[kind]


def make_loss(kind: str, *, label_smoothing: float = 0.0) -> nn.Module:
    """Training loss on raw outputs: CE (classification, optionally label-smoothed), BCE-with-logits
    (multilabel, segmentation), MSE (dense regression)."""
    losses = {"classification": nn.CrossEntropyLoss, "multilabel": nn.BCEWithLogitsLoss,
              "segmentation": nn.BCEWithLogitsLoss, "dense_regression": nn.MSELoss}
    if kind not in losses:
        raise ConfigError(f"task kind {kind!r} is not one of {', '.join(losses)}")
    if kind == "classification":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    return losses[kind]()


def _baseline_outputs(data: TaskData) -> torch.Tensor:
    """Input-independent predictions on the test split, fitted on the train split only."""
    n = len(data.y_test)
    if data.kind == "classification":
        counts = np.bincount(data.y_train, minlength=data.num_outputs)
        logits = torch.full((n, data.num_outputs), -10.0)
        logits[:, int(np.argmax(counts))] = 10.0  # majority class
        return logits
    if data.kind == "multilabel":  # constant label frequencies (as logits)
        p = torch.as_tensor(data.y_train.mean(axis=0)).clamp(1e-6, 1 - 1e-6)
        return torch.logit(p).expand(n, -1).clone()
    if data.kind == "segmentation":  # all-zero mask
        return torch.full(data.y_test.shape, -10.0)
    mean = torch.as_tensor(data.y_train.mean(axis=0))  # per-position mean of the train targets
    return mean.expand(n, *mean.shape).clone()


def trivial_baseline_score(data: TaskData) -> float:
    """Test score (with ``data.metric``) of the best input-independent predictor.

    Majority class (classification), train label frequencies (multilabel), an all-zero mask
    (segmentation) or the per-position train mean of ``y`` (dense regression). A model that has
    learnt anything from the inputs should beat this.
    """
    metric = make_metric(data.metric, kind=data.kind, num_outputs=data.num_outputs)
    metric.update(_baseline_outputs(data), torch.as_tensor(data.y_test))
    return float(metric.compute())
