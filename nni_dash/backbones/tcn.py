"""Temporal convolutional network (1-D): residual blocks of two causal DashConv1d layers.

Block ``i``: conv -> ReLU -> dropout -> conv -> ReLU -> dropout, plus a 1x1 conv residual when the
channel count changes. The hand-designed TCN uses k=3 with dilation 2^i in block i; DASH searches
(k, d) per conv instead. Labels: ``l{level}c{1,2}``. ``causal=False`` gives centred convs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from nni.nas.nn.pytorch import ModelSpace

from nni_dash.backbones._common import Head, nearest_candidate
from nni_dash.backbones._registry import HEADS, register_backbone
from nni_dash.errors import ConfigError
from nni_dash.nn import DashConv1d, InputStandardize

__all__ = ["TCN"]


class _TemporalBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, level: int, dropout: float, padding: str, **dash: Sequence[int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            DashConv1d(c_in, c_out, padding=padding, label=f"l{level}c1", **dash), nn.ReLU(), nn.Dropout(dropout),
            DashConv1d(c_out, c_out, padding=padding, label=f"l{level}c2", **dash), nn.ReLU(), nn.Dropout(dropout))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.residual(x))


@register_backbone("tcn")
class TCN(ModelSpace):
    """TCN with ``levels`` temporal blocks of ``channels * width`` channels (see module docstring)."""

    ndim = 1

    def __init__(self, *, in_channels: int, num_outputs: int, channels: int = 32, width: int = 1, levels: int = 4,
                 head: str = "classification", causal: bool = True, dropout: float = 0.0,
                 kernel_sizes: Sequence[int] = (3, 5, 7), dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"backbone.head={head!r}: allowed values are {', '.join(HEADS)}")
        if levels < 1:
            raise ConfigError(f"backbone.levels={levels}: must be a positive int")
        self.input_norm = InputStandardize(in_channels)
        c = channels * width
        padding = "causal" if causal else "same"
        dash = dict(kernel_sizes=kernel_sizes, dilations=dilations)
        self.blocks = nn.Sequential(*[_TemporalBlock(in_channels if i == 0 else c, c, i + 1, dropout, padding, **dash)
                                      for i in range(levels)])
        self.head = Head(c, num_outputs, kind=head, ndim=1, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.input_norm(x)))

    def default_sample(self) -> dict[str, str]:
        return {label: nearest_candidate(3, 2 ** (int(label[1:label.index("c")]) - 1), m.values)
                for label, m in self.simplify().items()}
