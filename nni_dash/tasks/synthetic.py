"""``lag``: a known-answer task for searches over kernel size and dilation (1-D classification).

Each series has two +-1 spikes ``lag`` samples apart at a random position, plus Gaussian noise of
std ``noise``; the label says whether the two signs agree. A network can only solve it when some
path sees both spikes at once, i.e. its receptive field covers ``lag + 1`` samples: with kernel sizes
up to 5 and no dilation a 2-layer CNN spans at most 9, so ``lag=14`` needs a dilated candidate, and
``lag=1`` does not. Layout as :mod:`nni_dash.tasks.base`: ``x`` float32 ``(N, 1, length)``, ``y``
int64 in {0, 1}; train, val and test are independent draws from ``seed``.
"""
from __future__ import annotations

import numpy as np

from nni_dash.errors import ConfigError
from nni_dash.tasks.base import TaskData, register_task

__all__ = ["lag_task", "lag_series"]


def lag_series(n: int, *, lag: int, length: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``n`` series (see the module docstring)."""
    x = np.zeros((n, 1, length), np.float32)
    start = rng.integers(0, length - lag, n)
    a, b = rng.choice([-1.0, 1.0], n), rng.choice([-1.0, 1.0], n)
    x[np.arange(n), 0, start], x[np.arange(n), 0, start + lag] = a, b
    x += noise * rng.standard_normal(x.shape).astype(np.float32)
    return x, (a == b).astype(np.int64)


@register_task("lag")
def lag_task(*, seed: int = 0, lag: int = 14, length: int = 48, noise: float = 0.05, n_train: int = 512,
             n_val: int = 256, n_test: int = 256) -> TaskData:
    """Two spikes ``lag`` apart: do their signs agree? (see the module docstring)."""
    if not 1 <= lag < length:
        raise ConfigError(f"task 'lag': lag={lag} must be in [1, length={length})")
    splits = [lag_series(n, lag=lag, length=length, noise=noise, rng=np.random.default_rng(3 * seed + i))
              for i, n in enumerate((n_train, n_val, n_test))]
    (xt, yt), (xv, yv), (xs, ys) = splits
    return TaskData(f"lag{lag}", "classification", "accuracy", 2, xt, yt, xv, yv, xs, ys,
                    description=f"two spikes {lag} samples apart in {length}; label: do their signs agree")
