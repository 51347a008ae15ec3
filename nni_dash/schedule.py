"""Learning-rate schedules over a step budget (pure Python; ``torch.optim.lr_scheduler.LambdaLR`` factors).

The total step count is read from a :class:`~nni_dash.budget.StepBudget` at every call, so a schedule
built before the budget's step time is measured follows the count fixed later (the warm-up covers
those first steps).
"""
from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["warmup_cosine", "cosine_factor"]


def cosine_factor(step: int, total: int, *, warmup: int = 0) -> float:
    """Linear warm-up from ``1/warmup`` to 1 over ``warmup`` steps, then a cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(budget: Any, *, warmup_fraction: float = 0.0, total: int | None = None) -> Callable[[int], float]:
    """A ``LambdaLR`` factor: :func:`cosine_factor` over ``budget.limit`` steps (or a fixed ``total``)."""
    if budget is None and total is None:
        raise ValueError("warmup_cosine needs a step budget or a total step count")

    def factor(step: int) -> float:
        steps = int(total if total is not None else budget.limit)
        return cosine_factor(step, steps, warmup=int(warmup_fraction * steps))

    return factor
