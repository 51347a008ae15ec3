"""Task container, registry and cache for the built-in tasks.

A *task* is data (train/val/test arrays) plus what a backbone needs to fit it: the input shape,
the output kind and size, and the metric. Arrays follow PyTorch's channel-first layout:

* inputs ``x``: float32, ``(N, C_in, L)`` for 1-D tasks or ``(N, C_in, H, W)`` for 2-D tasks;
* ``classification``: ``y`` int64 ``(N,)`` with values in ``[0, num_outputs)``;
* ``multilabel``: ``y`` float32 ``(N, num_outputs)`` with values in {0, 1};
* ``dense_regression``: ``y`` float32 ``(N, num_outputs, *spatial)`` (same spatial size as ``x``);
* ``segmentation``: ``y`` float32 ``(N, 1, *spatial)`` binary mask (``num_outputs == 1``).

Builders are registered with :func:`register_task` and looked up with :func:`create_task`. Derived
arrays are cached as ``.npz`` under :func:`cache_dir` (``$NNI_DASH_CACHE``, default
``~/.cache/nni_dash``), never inside the repository.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nni_dash.errors import ConfigError, DashError, DataError, MissingExtraError

__all__ = [
    "TASK_KINDS", "TaskData", "register_task", "create_task", "list_tasks", "cache_dir",
    "cached_arrays", "require",
]

TASK_KINDS = ("classification", "multilabel", "dense_regression", "segmentation")


@dataclasses.dataclass
class TaskData:
    """Arrays and metadata of one task (see the module docstring for layouts)."""

    name: str
    kind: str
    metric: str
    num_outputs: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str = ""
    #: per-channel input standardisation ``(C,)`` fitted on the train split (None: off); the model applies it
    input_mean: np.ndarray | None = None
    input_std: np.ndarray | None = None

    @property
    def input_stats(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.input_mean is None else (self.input_mean, self.input_std)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[2:])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1 or 2)."""
        return self.x_train.ndim - 2

    def summary(self) -> str:
        return (f"{self.name}: {self.kind}, x {self.in_channels}x{'x'.join(map(str, self.spatial))}, "
                f"{self.num_outputs} outputs, train/val/test {len(self.x_train)}/{len(self.x_val)}/"
                f"{len(self.x_test)}, metric {self.metric}")


_REGISTRY: dict[str, Callable[..., TaskData]] = {}


def register_task(name: str) -> Callable[[Callable[..., TaskData]], Callable[..., TaskData]]:
    """Decorator registering a builder ``fn(*, seed: int = 0, **options) -> TaskData`` under ``name``."""
    def deco(fn: Callable[..., TaskData]) -> Callable[..., TaskData]:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn
    return deco


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_task(name: str, **options: Any) -> TaskData:
    """Build the task ``name``; ``options`` go to its builder (``seed``, sizes, ...)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"task: unknown task {name!r}; registered tasks: {', '.join(sorted(_REGISTRY))}")
    builder = _REGISTRY[name]
    try:
        inspect.signature(builder).bind(**options)
    except TypeError as err:  # unknown or missing builder option
        allowed = ", ".join(p for p in inspect.signature(builder).parameters)
        raise ConfigError(f"task.options: {err} (task {name!r} takes: {allowed})") from None
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ConfigError(f"task.options.seed={seed!r}: expected an integer in [0, 2**32 - 1]")
    try:
        data = builder(**options)
    except (ValueError, TypeError) as err:
        if isinstance(err, DashError):
            raise
        # a value the builder (or numpy/sklearn under it) rejects: one line naming the options
        raise ConfigError(f"task.options: task {name!r} rejected {options}: {' '.join(str(err).split())}") from None
    from nni_dash.tasks.validate import validate_task_data
    validate_task_data(data)
    return data


def _load_builtin() -> None:
    # Importing the modules registers their builders; kept lazy so `import nni_dash` stays light.
    importlib.import_module("nni_dash.tasks.builtin")


def cache_dir() -> Path:
    """Directory for derived arrays: ``$NNI_DASH_CACHE`` or ``~/.cache/nni_dash`` (created on demand)."""
    path = Path(os.environ.get("NNI_DASH_CACHE", Path.home() / ".cache" / "nni_dash"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_arrays(key: str, params: dict[str, Any], build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, cached in ``cache_dir()/<key>-<hash(params)>.npz``.

    The file is written to a temporary name and renamed, so a crash never leaves a truncated cache.
    """
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = cache_dir() / f"{key}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except Exception:  # corrupt cache: rebuild
            path.unlink(missing_ok=True)
    arrays = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays


def require(module: str, *, task: str, extra: str = "tasks", hint: str | None = None) -> Any:
    """Import ``module`` or raise a :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        how = hint or f"pip install 'nni-dash[{extra}]'"
        raise MissingExtraError(f"task {task!r} needs the package {module!r}: {how}") from None


def check_kind(kind: str) -> str:
    if kind not in TASK_KINDS:
        raise DataError(f"task kind {kind!r} is not one of {', '.join(TASK_KINDS)}")
    return kind
