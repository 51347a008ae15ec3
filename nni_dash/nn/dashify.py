"""``dashify``: turn the convolutions of an existing CNN into DASH search layers.

Layers are selected by **type** (exactly ``nn.Conv1d`` or ``nn.Conv2d``, the convs DASH replaces),
by shape (square kernel of size > 1, uniform stride and dilation, zero padding that keeps "same"
size, i.e. ``padding == dilation*(k-1)//2``, odd k) and by an optional predicate
``include(name, module) -> bool`` — never by name substrings. 1x1 convs (shortcuts, pointwise
projections) stay as they are. A replaced conv keeps its channels, stride, groups and bias; its own
kernel initialises the matching candidate, which is also the layer's default, so the dashified
model computes exactly what the original did until a search changes it. Labels are the module paths with ``.`` replaced by ``_``.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch.nn as nn
from nni.nas.nn.pytorch import ModelSpace

from nni_dash.errors import ConfigError
from nni_dash.nn.dash_conv import DashConv1d, DashConv2d, candidate_grid, format_candidate

__all__ = ["dashify", "DashifiedSpace", "is_searchable_conv"]

Predicate = Callable[[str, nn.Module], bool]


def is_searchable_conv(module: nn.Module) -> bool:
    """True for a plain ``nn.Conv1d``/``nn.Conv2d`` with a square odd kernel > 1 and "same" zero padding."""
    if type(module) not in (nn.Conv1d, nn.Conv2d):
        return False
    k, s, d, p = module.kernel_size, module.stride, module.dilation, module.padding
    if isinstance(p, str):
        return p == "same" and len(set(k)) == 1 and k[0] > 1 and k[0] % 2 == 1 and len(set(s)) == 1 and s[0] == 1
    return (module.padding_mode == "zeros" and len(set(k)) == 1 and k[0] > 1 and k[0] % 2 == 1
            and len(set(s)) == 1 and len(set(d)) == 1 and all(pi == d[0] * (k[0] - 1) // 2 for pi in p))


class DashifiedSpace(ModelSpace):
    """A model space wrapping ``model`` whose selected convs became ``DashConv1d/2d`` (see :func:`dashify`)."""

    def __init__(self, model: nn.Module, *, kernel_sizes: Sequence[int], dilations: Sequence[int],
                 include: Predicate | None = None) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        replaced = 0
        candidates = candidate_grid(kernel_sizes, dilations)
        for name, module in list(self.model.named_modules()):
            if not is_searchable_conv(module) or (include is not None and not include(name, module)):
                continue
            dash_cls = DashConv1d if isinstance(module, nn.Conv1d) else DashConv2d
            own = format_candidate(module.kernel_size[0], module.dilation[0])
            layer = dash_cls(module.in_channels, module.out_channels, kernel_sizes=kernel_sizes, dilations=dilations,
                             stride=module.stride[0], groups=module.groups, bias=module.bias is not None,
                             label=name.replace(".", "_"), default=own if own in candidates else None)
            # the original kernel seeds the candidate of the same (k, d) when there is one
            if layer.conv.weight.shape == module.weight.shape and layer.conv.dilation == module.dilation:
                layer.conv.load_state_dict(module.state_dict())
            parent_name, _, attr = name.rpartition(".")
            setattr(self.model.get_submodule(parent_name) if parent_name else self.model, attr, layer)
            replaced += 1
        if replaced == 0:
            raise ConfigError(f"dashify: {type(model).__name__} has no nn.Conv1d/nn.Conv2d with a square odd kernel > 1 "
                              "and 'same' zero padding to search; nothing would be searched")
        self.num_searchable = replaced

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


def dashify(module: nn.Module, kernel_sizes: Sequence[int] = (3, 5, 7, 9), dilations: Sequence[int] = (1, 3, 7, 15),
            include: Predicate | None = None) -> DashifiedSpace:
    """A :class:`DashifiedSpace` over a deep copy of ``module`` (the original is left untouched).

    ``include(name, conv)`` can further restrict which eligible convs are searched.
    Raises :class:`~nni_dash.errors.ConfigError` when no conv qualifies.
    """
    return DashifiedSpace(module, kernel_sizes=kernel_sizes, dilations=dilations, include=include)
