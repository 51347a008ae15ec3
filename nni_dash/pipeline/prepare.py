"""What a run fixes once its data is loaded, before anything trains or is written.

:func:`prepare` resolves ``backbone.name: auto`` from the inputs' dimensionality (1-D: ``resnet1d``,
2-D: ``wrn``) and rejects a backbone of the wrong dimensionality, fills ``backbone.retrain_args: null``
with the backbone's ``retrain_defaults`` (``resnet1d``: search at 16 base channels, retrain at twice
that, as the reference searches WRN-16-1 and retrains WRN-16-4), crops candidate spans the input
cannot use (:func:`nni_dash.cli.validation.crop_search_space`) and fits the per-channel input
standardisation on the **train split** (``task.standardize``), which the models apply
(:class:`~nni_dash.nn.InputStandardize`). The returned config is the resolved one a run records.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from nni_dash.backbones import resolve_backbone
from nni_dash.tasks.base import TaskData
from nni_dash.tasks.splits import input_stats

__all__ = ["prepare", "resolve_backbone_config", "standardization_record"]


def prepare(cfg: Any, data: TaskData, *, warn: Callable[[str], None]) -> tuple[Any, TaskData]:
    """``(resolved config, data with input statistics)``; one-line :class:`ConfigError` on a mismatch."""
    from nni_dash.cli.validation import crop_search_space
    cfg = resolve_backbone_config(cfg, data.ndim)
    cfg = crop_search_space(cfg, data, warn=warn)
    if cfg.task.standardize:
        mean, std = input_stats(data.x_train)
        data = dataclasses.replace(data, input_mean=mean, input_std=std)
    return cfg, data


def resolve_backbone_config(cfg: Any, ndim: int) -> Any:
    """``backbone.name: auto`` -> the backbone for ``ndim``; ``retrain_args: null`` -> its ``retrain_defaults``."""
    from nni_dash.backbones import backbone_class
    name = resolve_backbone(cfg.backbone.name, ndim)
    retrain_args = cfg.backbone.retrain_args
    if retrain_args is None:
        retrain_args = dict(getattr(backbone_class(name), "retrain_defaults", {}))
    if (name, retrain_args) != (cfg.backbone.name, cfg.backbone.retrain_args):
        cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, name=name, retrain_args=retrain_args))
    return cfg


def standardization_record(data: TaskData) -> dict[str, Any]:
    """What ``preprocess.json`` records: the statistics and where they were fitted."""
    if data.input_stats is None:
        return {"standardize": False}
    mean, std = data.input_stats
    return {"standardize": True, "fitted_on": f"train split ({len(data.x_train)} samples)",
            "formula": "(x - mean[c]) / std[c] per input channel c, applied by the model's input_norm layer",
            "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
