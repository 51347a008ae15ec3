"""Cross-field checks of :class:`~nni_dash.config.ExperimentConfig` that need no data.

Each failure is a one-line :class:`~nni_dash.errors.ConfigError` naming the dotted key, the value
found and what is allowed. Data-dependent checks (dilated spans against the input size) live in
:func:`nni_dash.cli.validation.crop_search_space`.
"""
from __future__ import annotations

from typing import Any

from nni_dash.config._typed import one_of
from nni_dash.errors import ConfigError

__all__ = ["check_experiment", "check_candidate_list", "NAN_POLICIES", "NNI_SPACE_TYPES"]

NAN_POLICIES = ("stop", "skip")
NNI_SPACE_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform", "normal", "qnormal",
                   "lognormal", "qlognormal")


def check_candidate_list(key: str, values: Any, *, odd: bool) -> list[int]:
    """``kernel_sizes``/``dilations``: a positive int or a non-empty list of distinct positive ints (odd kernels)."""
    what = "odd positive integers (centred padding), e.g. [3, 5, 7]" if odd else "positive integers, e.g. [1, 2, 4]"
    items = [values] if isinstance(values, int) and not isinstance(values, bool) else values
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{key}={values!r}: expected a list of {what}")
    if not items:
        raise ConfigError(f"{key}=[]: empty candidate list; allowed: a non-empty list of {what}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key}={list(items)!r}: {v!r} is not allowed; allowed: {what}")
        if odd and v % 2 == 0:
            raise ConfigError(f"{key}={list(items)!r}: kernel size {v} is even; allowed: {what}")
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}={list(items)!r}: duplicate values; allowed: distinct {what}")
    return list(items)


def check_experiment(cfg: Any) -> None:
    one_of("trainer.nan_policy", cfg.trainer.nan_policy, NAN_POLICIES)
    if cfg.trainer.nan_policy == "skip" and cfg.search.strategy not in ("DASH", "none"):
        raise ConfigError(f"trainer.nan_policy='skip': search.strategy {cfg.search.strategy!r} cannot skip "
                          f"batches; allowed with skip: DASH, none (or use nan_policy: stop)")
    for section in ("args", "retrain_args"):
        args = getattr(cfg.backbone, section) or {}
        for name, odd in (("kernel_sizes", True), ("dilations", False)):
            if name in args:
                check_candidate_list(f"backbone.{section}.{name}", args[name], odd=odd)
    for i, m in enumerate(cfg.retrain.lr_milestones):
        if m < 1:
            raise ConfigError(f"retrain.lr_milestones[{i}]={m!r}: must be an epoch >= 1")
    for key, spec in cfg.tune.search_space.items():
        if isinstance(spec, dict) and "_type" in spec:
            one_of(f"tune.search_space.{key}._type", spec["_type"], NNI_SPACE_TYPES)
            if not isinstance(spec.get("_value"), list) or not spec["_value"]:
                raise ConfigError(f"tune.search_space.{key}._value={spec.get('_value')!r}: expected a non-empty "
                                  f"list")
