"""``InputStandardize``: the per-channel input standardisation a run fits on its train split.

The backbones start with this layer, so a trained network (exported from a search, retrained, or
loaded from a checkpoint) takes **raw** inputs: ``(x - mean[c]) / std[c]`` for every channel ``c``.
The statistics are buffers (saved in ``state_dict`` and checkpoints); until
:func:`set_input_stats` fills them the layer is the identity.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["InputStandardize", "set_input_stats"]


class InputStandardize(nn.Module):
    """``(x - mean) / std`` per channel for inputs ``(B, C, *spatial)``; identity until set."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"{self.mean.numel()}"


def set_input_stats(model: nn.Module, stats: tuple[Sequence[float], Sequence[float]] | None) -> nn.Module:
    """Fill every :class:`InputStandardize` of ``model`` with ``(mean, std)`` (no-op for ``None``); returns ``model``."""
    if stats is None:
        return model
    mean, std = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in stats)
    for module in model.modules():
        if isinstance(module, InputStandardize):
            if module.mean.numel() != mean.numel():
                raise ValueError(f"input stats for {mean.numel()} channels, the model's input has {module.mean.numel()}")
            with torch.no_grad():
                module.mean.copy_(mean.to(module.mean.device))
                module.std.copy_(std.to(module.std.device))
    return model
