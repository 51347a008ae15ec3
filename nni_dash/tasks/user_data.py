"""The ``npz`` task: user data from one ``.npz`` file.

Keys: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (required) and optionally ``x_val`` with
``y_val``; without them a seeded ``val_fraction`` of the training samples becomes the validation
split, stratified by class for classification (every class with two or more samples keeps at least
one on each side). Inputs stay raw: the run standardises them per channel with statistics fitted on
the train split (``task.standardize``), inside the model.

Input layouts (cast to float32, channel-first as in :mod:`nni_dash.tasks.base`):

* ``(N, L)`` -> ``(N, 1, L)``; ``(N, C, H, W)`` is kept;
* a 3-D ``x`` is ambiguous: it is read as ``(N, H, W)`` images (a channel axis is added) when
  ``spatial_dims=2``, and as ``(N, C, L)`` series when ``spatial_dims=1``. With ``spatial_dims=None``
  dense kinds decide from ``y_train``'s trailing shape and the other kinds read square ``(N, S, S)``
  arrays as images and everything else as ``(N, C, L)``.

Targets: classification ``(N,)`` integer labels (num_outputs = max label + 1 unless given);
multilabel ``(N, K)`` 0/1; dense regression ``(N, *spatial)`` or ``(N, K, *spatial)``;
segmentation ``(N, *spatial)`` or ``(N, 1, *spatial)`` 0/1. Every malformed input raises a one-line
:class:`~nni_dash.errors.DataError` naming the key.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nni_dash.errors import DataError
from nni_dash.tasks.base import TaskData, check_kind, register_task
from nni_dash.tasks.metrics import check_metric, default_metric
from nni_dash.tasks.splits import stratified_split
from nni_dash.tasks.validate import check_classes_in_train, check_finite, check_inputs, check_targets

__all__ = ["load_npz_task", "REQUIRED_KEYS"]

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
_DENSE = ("dense_regression", "segmentation")


def _read(path: str) -> dict[str, np.ndarray]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"npz path {str(p)!r} is not a file; pass the path of a .npz written with np.savez")
    try:
        loaded = np.load(p, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"npz path {str(p)!r} holds a single array, not an .npz archive; "
                            f"save with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"npz path {str(p)!r} is not a readable .npz archive ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(f"npz file {str(p)!r} lacks key {missing[0]!r} (found: {', '.join(sorted(arrays)) or 'none'}; "
                        f"required: {', '.join(REQUIRED_KEYS)}; optional: x_val, y_val)")
    if ("x_val" in arrays) != ("y_val" in arrays):
        have, lack = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise DataError(f"npz file {str(p)!r} has {have!r} but no {lack!r}; give both or neither")
    for key, arr in arrays.items():
        if key[:2] in ("x_", "y_") and arr.dtype.kind not in "biuf":
            raise DataError(f"{key} has dtype {arr.dtype}; expected a numeric array")
    return arrays


def _spatial_dims(x: np.ndarray, y: np.ndarray, kind: str, spatial_dims: int | None) -> int:
    if x.ndim == 2:
        return 1
    if x.ndim == 4:
        return 2
    if x.ndim != 3:
        raise DataError(f"x_train has shape {x.shape}; expected (N, L), (N, H, W), (N, C, L) or (N, C, H, W)")
    if spatial_dims in (1, 2):
        return spatial_dims
    if spatial_dims is not None:
        raise DataError(f"spatial_dims is {spatial_dims!r}; expected 1, 2 or None")
    if kind in _DENSE:  # y is (N, *spatial) or (N, K, *spatial)
        if y.shape[1:] == x.shape[1:] or (y.ndim == 4 and y.shape[2:] == x.shape[1:]):
            return 2
        return 1
    return 2 if x.shape[1] == x.shape[2] else 1


def _inputs(key: str, x: np.ndarray, dims: int) -> np.ndarray:
    if x.ndim == dims + 1:
        x = x[:, None]
    if x.ndim != dims + 2:
        want = "(N, L) or (N, C, L)" if dims == 1 else "(N, H, W) or (N, C, H, W)"
        raise DataError(f"{key} has shape {x.shape}; expected {want} like x_train")
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_inputs(key, x)
    return x


def _targets(key: str, y: np.ndarray, *, kind: str, spatial: tuple[int, ...]) -> np.ndarray:
    check_finite(key, y)
    if kind == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim == 1 and y.dtype.kind == "f" and np.any(y != np.round(y)):
            raise DataError(f"{key} holds non-integer values; expected integer class labels of shape (N,)")
        return y.astype(np.int64) if y.ndim == 1 else y
    if kind in _DENSE and y.ndim == len(spatial) + 1:
        y = y[:, None]
    return np.ascontiguousarray(y, dtype=np.float32)


def _infer_outputs(kind: str, y: np.ndarray) -> int:
    if kind == "classification":
        if y.ndim != 1:
            raise DataError(f"y_train has shape {y.shape}; expected integer class labels of shape (N,)")
        return int(y.max()) + 1 if y.size else 1
    if y.ndim < 2:
        want = "(N, K)" if kind == "multilabel" else "(N, K, *spatial)"
        raise DataError(f"y_train has shape {y.shape}; expected {want} for kind {kind!r}")
    return 1 if kind == "segmentation" else int(y.shape[1])


@register_task("npz")
def load_npz_task(*, path: str, kind: str, metric: str | None = None, num_outputs: int | None = None,
                  val_fraction: float = 0.1, seed: int = 0, spatial_dims: int | None = None) -> TaskData:
    """Load a user task from ``path`` (see the module docstring for keys and layouts)."""
    check_kind(kind)
    metric = check_metric(metric or default_metric(kind), kind=kind)
    raw = _read(path)
    dims = _spatial_dims(raw["x_train"], raw["y_train"], kind, spatial_dims)
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in raw]  # other keys are ignored
    xs = {f"x_{s}": _inputs(f"x_{s}", raw[f"x_{s}"], dims) for s in splits}
    spatial = xs["x_train"].shape[2:]
    for key, x in xs.items():
        if x.shape[1:] != xs["x_train"].shape[1:]:
            raise DataError(f"{key} has per-sample shape {x.shape[1:]} but x_train has "
                            f"{xs['x_train'].shape[1:]}; all splits need the same channels and spatial size")
    ys = {f"y_{s}": _targets(f"y_{s}", raw[f"y_{s}"], kind=kind, spatial=spatial) for s in splits}
    if num_outputs is None:  # classification: the largest label of any split (a class missing from train is
        num_outputs = _infer_outputs(kind, ys["y_train"])  # then reported as such, not as a label range)
        if kind == "classification":
            num_outputs = max([num_outputs] + [int(y.max()) + 1 for y in ys.values() if y.ndim == 1 and y.size])
    elif kind == "segmentation" and num_outputs != 1:
        raise DataError(f"num_outputs is {num_outputs} for a segmentation task; expected 1")
    for split in splits:
        check_targets(f"y_{split}", ys[f"y_{split}"], kind=kind, num_outputs=num_outputs,
                      n=len(xs[f"x_{split}"]), spatial=spatial)
    if "x_val" not in xs:
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"val_fraction is {val_fraction}; expected a value in (0, 1) when the file has no x_val")
        n = len(xs["x_train"])
        n_val = int(round(val_fraction * n))
        if n_val < 1 or n_val >= n:
            raise DataError(f"x_train has {n} samples: too few to split off val_fraction={val_fraction}; "
                            f"add x_val/y_val to the file")
        rng = np.random.default_rng(seed)
        if kind == "classification":  # every class with >= 2 samples keeps one on each side
            train, val = stratified_split(ys["y_train"], val_fraction, rng)
        else:
            perm = rng.permutation(n)
            val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        xs["x_val"], ys["y_val"] = xs["x_train"][val], ys["y_train"][val]
        xs["x_train"], ys["y_train"] = xs["x_train"][train], ys["y_train"][train]
    if kind == "classification":
        check_classes_in_train(ys["y_train"], [("y_val", ys["y_val"]), ("y_test", ys["y_test"])])
    return TaskData(name="npz", kind=kind, metric=metric, num_outputs=int(num_outputs),
                    x_train=xs["x_train"], y_train=ys["y_train"], x_val=xs["x_val"], y_val=ys["y_val"],
                    x_test=xs["x_test"], y_test=ys["y_test"],
                    description=f"user data from {Path(path).name}")
