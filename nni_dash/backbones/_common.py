"""Pieces shared by the backbones: candidate lookup and heads."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from nni_dash.nn.dash_conv import format_candidate, parse_candidate

__all__ = ["nearest_candidate", "Head"]


def nearest_candidate(kernel_size: int, dilation: int, values: Sequence[str]) -> str:
    """The candidate closest to (kernel_size, dilation): exact if present, else nearest k then d."""
    want = format_candidate(kernel_size, dilation)
    if want in values:
        return want
    return min(values, key=lambda v: (abs(parse_candidate(v)[0] - kernel_size), abs(parse_candidate(v)[1] - dilation)))


class Head(nn.Module):
    """``"classification"``: BN-ReLU, mean over positions, Linear -> ``(B, num_outputs)``.
    ``"dense"``: BN-ReLU, 1x1 conv per position -> ``(B, num_outputs, *spatial)``."""

    def __init__(self, channels: int, num_outputs: int, *, kind: str, ndim: int, norm: bool = True) -> None:
        super().__init__()
        bn = nn.BatchNorm1d if ndim == 1 else nn.BatchNorm2d
        self.kind, self.ndim = kind, ndim
        self.pre = nn.Sequential(bn(channels), nn.ReLU(inplace=True)) if norm else nn.Identity()
        if kind == "classification":
            self.out: nn.Module = nn.Linear(channels, num_outputs)
        else:
            self.out = (nn.Conv1d if ndim == 1 else nn.Conv2d)(channels, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        if self.kind == "classification":
            return self.out(x.flatten(2).mean(-1))
        return self.out(x)
