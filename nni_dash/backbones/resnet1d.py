"""1-D ResNet, the DASH backbone for 1-D tasks (three residual blocks of three conv blocks).

ConvBlock: DashConv1d -> dropout -> BN -> ReLU. Channels ``[in -> m, m -> 2m, 2m -> 2m]``; the
residual is a 1x1 conv + BN when channels change, the identity otherwise (the reference code drops
the identity shortcut of block 3; we keep it). ``causal=True`` makes every searchable conv causal
in the search **and** in the exported network (the reference searches centred but retrains causal).
Hand-designed kernels per block: 7, 5, 3 (the reference's 8 rounded to the odd 7). Labels:
``b{block}c{conv}``. The first layer standardises the input per channel
(:class:`~nni_dash.nn.InputStandardize`, set by the pipeline).
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

__all__ = ["ResNet1D"]

_DEFAULT_KERNELS = (7, 5, 3)
#: ``m`` when ``base_channels`` is not given: the search runs at 16 and the retrain, through
#: ``retrain_defaults``, at ``width=2`` (32). The reference rule ``min(4 ** (num_classes // 10 + 1), 64)``
#: gives 4 channels for up to 9 classes; at 32 channels training matched 64 and beat 16 on small sets
#: (benchmarks/results/recipe.md).
DEFAULT_BASE_CHANNELS = 16


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, block: int, dropout: float, padding: str, **dash: Sequence[int]) -> None:
        super().__init__()
        layers = []
        for i in range(3):
            layers += [DashConv1d(c_in if i == 0 else c_out, c_out, padding=padding, label=f"b{block}c{i + 1}", **dash),
                       nn.Dropout(dropout), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.residual = nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)) \
            if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.residual(x)


@register_backbone("resnet1d")
class ResNet1D(ModelSpace):
    """1-D ResNet with DashConv1d layers (see module docstring); ``width`` scales ``base_channels``."""

    ndim = 1
    #: what the pipeline retrains with when ``backbone.retrain_args`` is not set
    retrain_defaults = {"width": 2}

    def __init__(self, *, in_channels: int, num_outputs: int, base_channels: int | None = None, width: int = 1,
                 head: str = "classification", causal: bool = False, dropout: float = 0.0,
                 kernel_sizes: Sequence[int] = (3, 7, 11, 15, 19), dilations: Sequence[int] = (1, 3, 7, 15)) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"backbone.head={head!r}: allowed values are {', '.join(HEADS)}")
        self.input_norm = InputStandardize(in_channels)
        m = (base_channels or DEFAULT_BASE_CHANNELS) * width
        dash = dict(kernel_sizes=kernel_sizes, dilations=dilations)
        padding = "causal" if causal else "same"
        channels = [(in_channels, m), (m, 2 * m), (2 * m, 2 * m)]
        self.blocks = nn.Sequential(*[_ResBlock(ci, co, b + 1, dropout, padding, **dash)
                                      for b, (ci, co) in enumerate(channels)])
        self.head = Head(2 * m, num_outputs, kind=head, ndim=1, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.input_norm(x)))

    def default_sample(self) -> dict[str, str]:
        return {label: nearest_candidate(_DEFAULT_KERNELS[int(label[1]) - 1], 1, m.values)
                for label, m in self.simplify().items()}
