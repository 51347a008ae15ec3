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

__all__ = ["HEADS", "register_backbone", "create_backbone", "list_backbones", "rebuild", "default_sample",
           "backbone_class"]

HEADS = ("classification", "dense")
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


def create_backbone(name: str, **kwargs: Any) -> ModelSpace:
    """Build the model space of backbone ``name`` (keyword arguments as the backbone's class)."""
    cls = backbone_class(name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # bad keyword / bad value of a layer (one line, names the argument)
        raise ConfigError(f"backbone.{name}: {' '.join(str(err).split())}") from None


def default_sample(name: str, **kwargs: Any) -> dict[str, str]:
    """The plain backbone's architecture (hand-designed kernels) as a sample."""
    return create_backbone(name, **kwargs).default_sample()


def rebuild(name: str, sample: dict[str, str], **kwargs: Any) -> nn.Module:
    """A plain network of backbone ``name`` with the architecture ``sample`` and fresh weights.

    ``kwargs`` may differ from the searched space (e.g. ``width``), as long as labels agree.
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
        return cls(**kwargs)
