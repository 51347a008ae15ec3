"""Wide-ResNet (2-D), the DASH backbone for 2-D tasks: WRN-16-1 to search, WRN-16-4 to retrain.

Pre-activation basic block: BN-ReLU-conv1-dropout-BN-ReLU-conv2(stride) + shortcut; the stride sits
on conv2 of the first block of stages 2 and 3; the shortcut is a 1x1 conv only when the stride or
channel count changes. Stage widths ``[16, 16w, 32w, 64w]``, ``(depth-4)/6`` blocks per stage.
Searchable convs (labels): ``stem``, then ``s{stage}b{block}c{1,2}`` (13 for depth 16); 1x1
shortcuts are not searched. ``head="dense"`` removes every stride (full resolution).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from nni.nas.nn.pytorch import ModelSpace

from nni_dash.backbones._common import Head, nearest_candidate
from nni_dash.backbones._registry import HEADS, register_backbone
from nni_dash.errors import ConfigError
from nni_dash.nn import DashConv2d, InputStandardize

__all__ = ["WideResNet"]


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, label: str, **dash: Sequence[int]) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = DashConv2d(c_in, c_out, label=f"{label}c1", **dash)
        self.drop = nn.Dropout(dropout)
        self.conv2 = DashConv2d(c_out, c_out, stride=stride, label=f"{label}c2", **dash)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(self.drop(out))))
        return out + skip


@register_backbone("wrn")
class WideResNet(ModelSpace):
    """WRN-``depth``-``width`` with DashConv2d layers (see module docstring)."""

    ndim = 2

    def __init__(self, *, in_channels: int, num_outputs: int, depth: int = 16, width: int = 1,
                 head: str = "classification", dropout: float = 0.0, kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 dilations: Sequence[int] = (1, 3, 7, 15)) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ConfigError(f"backbone.depth={depth}: WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...)")
        if width < 1:
            raise ConfigError(f"backbone.width={width}: must be a positive int")
        if head not in HEADS:
            raise ConfigError(f"backbone.head={head!r}: allowed values are {', '.join(HEADS)}")
        self.input_norm = InputStandardize(in_channels)
        dash = dict(kernel_sizes=kernel_sizes, dilations=dilations)
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.stem = DashConv2d(in_channels, widths[0], label="stem", **dash)
        blocks, c_in = [], widths[0]
        for stage in range(3):
            for b in range((depth - 4) // 6):
                stride = 2 if (stage > 0 and b == 0 and head == "classification") else 1
                blocks.append(_Block(c_in, widths[stage + 1], stride, dropout, f"s{stage + 1}b{b + 1}", **dash))
                c_in = widths[stage + 1]
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(c_in, num_outputs, kind=head, ndim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(self.input_norm(x))))

    def default_sample(self) -> dict[str, str]:
        """All 3x3 undilated convs (the hand-designed WRN)."""
        return {label: nearest_candidate(3, 1, m.values) for label, m in self.simplify().items()}
