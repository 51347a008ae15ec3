"""Backbone registry: ``register_backbone``, ``create_backbone``, ``list_backbones``, ``rebuild``.

A backbone is an NNI ``ModelSpace`` whose searchable convolutions are ``DashConv1d/2d`` with
labels that do not depend on width, so an architecture searched on a narrow network can be
rebuilt wide (``rebuild("wrn", sample, width=4)``, WRN-16-1 -> WRN-16-4) with fresh weights.
Every backbone takes ``in_channels``, ``num_outputs``, ``head`` ("classification": global pooling
then a linear layer; "dense": a per-position 1x1 conv, no downsampling), ``kernel_sizes`` and
``dilations``, and defines ``default_sample()``: the hand-designed kernels (the "plain backbone").
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn
from nni.nas.nn.pytorch import ModelSpace, model_context

from nni_dash.errors import ConfigError
from nni_dash.nn.standardize import set_input_stats

__all__ = ["HEADS", "AUTO_BACKBONES", "register_backbone", "create_backbone", "list_backbones", "rebuild",
           "default_sample", "backbone_class", "resolve_backbone"]

HEADS = ("classification", "dense")
#: ``backbone.name: auto``: the DASH backbone of the data's dimensionality
AUTO_BACKBONES = {1: "resnet1d", 2: "wrn"}
_REGISTRY: dict[str, type[ModelSpace]] = {}


def register_backbone(name: str) -> Callable[[type[ModelSpace]], type[ModelSpace]]:
    def deco(cls: type[ModelSpace]) -> type[ModelSpace]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls
    return deco


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type[ModelSpace]:
    if name not in _REGISTRY:
        raise ConfigError(f"backbone: unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())}")
    return _REGISTRY[name]


def resolve_backbone(name: str, ndim: int) -> str:
    """``"auto"`` -> the backbone for ``ndim``-D inputs; a named backbone must match ``ndim`` (one-line error)."""
    if name == "auto":
        if ndim not in AUTO_BACKBONES:
            raise ConfigError(f"backbone.name=auto: no backbone for {ndim}-D inputs; inputs must be (N, C, L) or "
                              f"(N, C, H, W)")
        return AUTO_BACKBONES[ndim]
    want = getattr(backbone_class(name), "ndim", None)
    if want is not None and want != ndim:
        fits = ", ".join(n for n in list_backbones() if getattr(_REGISTRY[n], "ndim", None) == ndim)
        raise ConfigError(f"backbone.name={name!r}: a {want}-D backbone, but the task's inputs are {ndim}-D; "
                          f"allowed for this data: auto, {fits}")
    return name


def create_backbone(name: str, *, input_stats: Any = None, **kwargs: Any) -> ModelSpace:
    """Build the model space of backbone ``name`` (keyword arguments as the backbone's class).

    ``input_stats``: ``(mean, std)`` per input channel for the input standardisation layer (None: identity).
    """
    cls = backbone_class(name)
    try:
        space = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # bad keyword / bad value of a layer (one line, names the argument)
        raise ConfigError(f"backbone.{name}: {' '.join(str(err).split())}") from None
    return set_input_stats(space, input_stats)


def default_sample(name: str, **kwargs: Any) -> dict[str, str]:
    """The plain backbone's architecture (hand-designed kernels) as a sample."""
    return create_backbone(name, **kwargs).default_sample()


def rebuild(name: str, sample: dict[str, str], *, input_stats: Any = None, **kwargs: Any) -> nn.Module:
    """A plain network of backbone ``name`` with the architecture ``sample`` and fresh weights.

    ``kwargs`` may differ from the searched space (e.g. ``width``), as long as labels agree;
    ``input_stats`` as in :func:`create_backbone`.
    """
    cls = backbone_class(name)
    space = create_backbone(name, **kwargs)  # validates the sample against this space's labels/values
    missing = set(space.simplify()) - set(sample)
    if missing:
        raise ConfigError(f"architecture: no choice for layer(s) {', '.join(sorted(missing))} of backbone {name!r}")
    for label, mutable in space.simplify().items():
        if sample[label] not in mutable.values:
            raise ConfigError(f"architecture.{label}={sample[label]!r}: not a candidate; allowed: "
                              f"{', '.join(mutable.values)}")
    with model_context(sample):
        return set_input_stats(cls(**kwargs), input_stats)
