"""Splits and derived views of a :class:`~nni_dash.tasks.base.TaskData` (numpy only).

* :func:`stratified_split` - a seeded held-out split that keeps every class on both sides.
* :func:`kfold` - stratified (classification) or plain k-fold indices over the pooled train+val
  samples, for tuning on sets too small for one held-out split.
* :func:`pooled`, :func:`fold_view`, :func:`refit_view` - task views for a tuning fold and for the
  final retrain on train+val.
* :func:`input_stats` - the per-channel mean and standard deviation of the **train split**, which
  the backbones' input layer applies (:class:`~nni_dash.nn.InputStandardize`).

Index arrays are sorted; every function is deterministic for a given ``seed``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from nni_dash.errors import DataError
from nni_dash.tasks.base import TaskData

__all__ = ["stratified_split", "kfold", "pooled", "fold_view", "refit_view", "input_stats", "class_counts",
           "MIN_PER_CLASS"]

#: a class with at least this many samples keeps one in each part of a split
MIN_PER_CLASS = 2


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)


def stratified_split(y: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: about ``val_fraction`` of each class goes to val.

    Classes with at least :data:`MIN_PER_CLASS` members keep at least one in each part; a class with
    a single member stays in train. Indices are sorted.
    """
    train, val = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = int(round(val_fraction * len(idx)))
        n_val = min(max(n_val, 1), len(idx) - 1) if len(idx) >= MIN_PER_CLASS else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def kfold(y: np.ndarray, folds: int, *, seed: int = 0, stratify: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` pairs ``(train, held_out)`` of indices into ``y``; each sample is held out exactly once.

    With ``stratify`` the members of each class are dealt round-robin over the folds after a seeded
    shuffle, so every fold holds each class in proportion (a class with fewer members than folds
    is held out in only some folds).
    """
    n = len(y)
    if folds < 2 or folds > n:
        raise DataError(f"cross-validation: {folds} folds need 2 <= folds <= {n} samples")
    rng = np.random.default_rng(seed)
    assign = np.empty(n, dtype=np.int64)
    if stratify:
        offset = 0
        for cls in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == cls))
            assign[idx] = (np.arange(len(idx)) + offset) % folds
            offset += len(idx)  # continue the round-robin, so small classes spread over different folds
    else:
        assign[rng.permutation(n)] = np.arange(n) % folds
    return [(np.flatnonzero(assign != f), np.flatnonzero(assign == f)) for f in range(folds)]


def pooled(data: TaskData) -> tuple[np.ndarray, np.ndarray]:
    """Train and val samples together: ``(x, y)``."""
    return np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])


def fold_view(data: TaskData, x: np.ndarray, y: np.ndarray, train: np.ndarray, held_out: np.ndarray) -> TaskData:
    """``data`` with train/val replaced by a fold of the pooled ``(x, y)`` (test and input stats unchanged)."""
    return dataclasses.replace(data, x_train=x[train], y_train=y[train], x_val=x[held_out], y_val=y[held_out])


def refit_view(data: TaskData) -> TaskData:
    """``data`` training on train+val (the final retrain); val is kept for reporting only."""
    x, y = pooled(data)
    return dataclasses.replace(data, x_train=x, y_train=y)


def input_stats(x_train: np.ndarray, *, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mean, std)`` of ``x_train`` ``(N, C, *spatial)`` over samples and positions (float32).

    A constant channel gets std 1 (it is only centred).
    """
    axes = (0, *range(2, x_train.ndim))
    x = x_train.astype(np.float64)
    mean, std = x.mean(axis=axes), x.std(axis=axes)
    std = np.where(std > eps, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)
