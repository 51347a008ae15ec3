"""Checks of task arrays; every failure is a one-line :class:`~nni_dash.errors.DataError`.

The layouts checked are those of :mod:`nni_dash.tasks.base`: ``x`` float32 ``(N, C, L)`` or
``(N, C, H, W)``; ``y`` int64 ``(N,)`` for classification, ``{0, 1}`` float32 ``(N, K)`` for
multilabel, float32 ``(N, K, *spatial)`` for dense regression and a ``{0, 1}`` float32
``(N, 1, *spatial)`` mask for segmentation. Each message names the array (``x_train``,
``y_val``, ...), what was found and what is expected. The per-array helpers are reused by the
``.npz`` loader (:mod:`nni_dash.tasks.user_data`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nni_dash.errors import DataError
from nni_dash.tasks.base import TaskData, check_kind

__all__ = [
    "validate_task_data", "check_kind", "check_inputs", "check_finite", "check_targets", "check_classes_in_train",
    "expected_y_shape",
]

SPLITS = ("train", "val", "test")


def check_finite(name: str, arr: np.ndarray) -> None:
    """Reject NaN/inf, naming the array and how many entries are bad."""
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise DataError(f"{name} has {bad} NaN/inf value(s) of {arr.size}; "
                            f"remove or impute them before training")


def check_inputs(name: str, x: np.ndarray) -> None:
    """``x`` must be a non-empty, finite float32 array of shape (N, C, L) or (N, C, H, W)."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name} is a {type(x).__name__}; expected a numpy array")
    if x.ndim not in (3, 4):
        raise DataError(f"{name} has shape {x.shape}; expected (N, C, L) or (N, C, H, W)")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {x.shape}); every split needs at least one sample")
    if min(x.shape[1:]) == 0:
        raise DataError(f"{name} has shape {x.shape} with a zero-sized channel/spatial axis")
    if x.dtype != np.float32:
        raise DataError(f"{name} has dtype {x.dtype}; expected float32 (cast with .astype(np.float32))")
    check_finite(name, x)


def expected_y_shape(kind: str, num_outputs: int, spatial: Sequence[int]) -> str:
    """Human-readable expected ``y`` shape for ``kind`` (used in messages)."""
    sp = ", ".join(str(s) for s in spatial)
    return {
        "classification": "(N,)",
        "multilabel": f"(N, {num_outputs})",
        "dense_regression": f"(N, {num_outputs}, {sp})",
        "segmentation": f"(N, 1, {sp})",
    }[kind]


def _check_binary(name: str, y: np.ndarray) -> None:
    bad = (y != 0) & (y != 1)
    if bad.any():
        found = np.unique(y[bad])[:5].tolist()
        raise DataError(f"{name} has {int(bad.sum())} value(s) outside {{0, 1}} (e.g. {found}); "
                        f"expected a binary 0/1 array")


def check_targets(name: str, y: np.ndarray, *, kind: str, num_outputs: int, n: int,
                  spatial: Sequence[int]) -> None:
    """Check ``y`` of one split against ``kind``, ``num_outputs``, ``n`` samples and ``x``'s spatial size."""
    check_kind(kind)
    if not isinstance(y, np.ndarray):
        raise DataError(f"{name} is a {type(y).__name__}; expected a numpy array")
    want = expected_y_shape(kind, num_outputs, spatial)
    if y.ndim == 0 or y.shape[0] != n:
        raise DataError(f"{name} has {y.shape[0] if y.ndim else 0} sample(s) (shape {y.shape}) but the "
                        f"matching x has {n}; expected {want}")
    if kind == "classification":
        if y.ndim != 1:
            raise DataError(f"{name} has shape {y.shape}; expected integer class labels of shape {want}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{name} has dtype {y.dtype}; expected int64 class labels")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_outputs:
            raise DataError(f"{name} has labels in [{lo}, {hi}]; expected integers in [0, {num_outputs}) "
                            f"(num_outputs={num_outputs})")
        return
    if y.dtype != np.float32:
        raise DataError(f"{name} has dtype {y.dtype}; expected float32 for kind {kind!r}")
    check_finite(name, y)
    if kind == "multilabel":
        shape_ok = y.ndim == 2 and y.shape[1] == num_outputs
    elif kind == "segmentation":
        shape_ok = y.ndim == 2 + len(spatial) and y.shape[1] == 1 and tuple(y.shape[2:]) == tuple(spatial)
    else:
        shape_ok = (y.ndim == 2 + len(spatial) and y.shape[1] == num_outputs
                    and tuple(y.shape[2:]) == tuple(spatial))
    if not shape_ok:
        raise DataError(f"{name} has shape {y.shape}; expected {want} for kind {kind!r}"
                        + ("" if kind == "multilabel" else " (same spatial size as x)"))
    if kind in ("multilabel", "segmentation"):
        _check_binary(name, y)


def validate_task_data(data: TaskData) -> None:
    """Check a built task: kind, metric name, layouts, dtypes, finiteness and label ranges."""
    check_kind(data.kind)
    if not isinstance(data.num_outputs, (int, np.integer)) or data.num_outputs < 1:
        raise DataError(f"task {data.name!r}: num_outputs is {data.num_outputs!r}; expected an integer >= 1")
    if data.kind == "segmentation" and data.num_outputs != 1:
        raise DataError(f"task {data.name!r}: num_outputs is {data.num_outputs} for segmentation; expected 1")
    from nni_dash.tasks.metrics import check_metric
    check_metric(data.metric, kind=data.kind)
    ref = data.x_train
    for split in SPLITS:
        x = getattr(data, f"x_{split}")
        check_inputs(f"x_{split}", x)
        if x.ndim != ref.ndim or x.shape[1:] != ref.shape[1:]:
            raise DataError(f"x_{split} has per-sample shape {x.shape[1:]} but x_train has {ref.shape[1:]}; "
                            f"all splits need the same channels and spatial size")
    for split in SPLITS:
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        check_targets(f"y_{split}", y, kind=data.kind, num_outputs=int(data.num_outputs), n=len(x),
                      spatial=x.shape[2:])
    if data.kind == "classification":
        check_classes_in_train(data.y_train, [(f"y_{s}", getattr(data, f"y_{s}")) for s in ("val", "test")])


def check_classes_in_train(y_train: np.ndarray, others: Sequence[tuple[str, np.ndarray]]) -> None:
    """A class that occurs in val or test must occur in the train split (a model cannot learn it otherwise)."""
    seen = set(np.unique(y_train).tolist())
    for name, y in others:
        missing = sorted(set(np.unique(y).tolist()) - seen)
        if missing:
            raise DataError(f"{name} has class(es) {missing[:5]} that y_train lacks; every class needs training "
                            f"samples (move some of them into the train split)")
