"""Train a plain CNN's big dilated convolutions by FFT, keeping ``nn.Conv1d/2d`` modules and state dicts.

:func:`use_fft_convs` switches, in place, every eligible ``nn.Conv1d``/``nn.Conv2d`` (and
:class:`~nni_dash.nn.dash_conv.CausalConv1d`) of a model to a subclass whose ``forward`` takes the
exact FFT path (:func:`nni_dash.ops.fft_conv`) whenever the cost model
(:func:`nni_dash.ops.dispatch.conv_path`) predicts it is cheaper for the input's shape, and the usual
direct convolution otherwise. The subclasses add no parameters or buffers, so a state dict or
checkpoint saved in either form loads into the other, and :func:`use_plain_convs` switches back (the
exported network is always plain). Outputs and gradients equal the direct convolution's up to float
rounding.

Eligible: zero padding that keeps the size ("same": ``padding = dilation*(k-1)/2`` on each side, odd
k) or causal padding, any stride, groups and dilation. Others (e.g. padding 0 or ``padding_mode``
other than zeros) stay as they are.

    from nni_dash.nn import use_fft_convs, use_plain_convs
    n = use_fft_convs(model)      # number of convs switched
    trainer.fit(...)              # same numbers, FFT speed on long dilated kernels
    use_plain_convs(model)        # a plain nn.Conv1d/2d network again
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from nni_dash.nn.dash_conv import CausalConv1d

__all__ = ["FFTConv1d", "FFTConv2d", "FFTCausalConv1d", "use_fft_convs", "use_plain_convs", "conv_padding_mode"]


def conv_padding_mode(conv: nn.Module) -> str | None:
    """``"same"``, ``"causal"`` or None (not eligible for the FFT path) for a conv module."""
    if isinstance(conv, CausalConv1d):
        return "causal"
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or conv.padding_mode != "zeros":
        return None
    if any(k % 2 == 0 for k in conv.kernel_size) or len(set(conv.stride)) != 1:
        return None
    if isinstance(conv.padding, str):
        return "same" if conv.padding == "same" else None
    same = all(p == d * (k - 1) // 2 for k, d, p in zip(conv.kernel_size, conv.dilation, conv.padding))
    return "same" if same else None


class _FFTMixin:
    """``forward`` by the path the cost model picks for this input shape (cached per shape)."""

    _fft_padding = "same"

    def _pick(self, x: Tensor) -> str:
        from nni_dash.ops.dispatch import conv_path
        if x.dtype not in (torch.float32, torch.float64) or torch.is_autocast_enabled():
            return "direct"  # half-precision FFTs need power-of-two sizes: leave those to cuDNN
        cache = self.__dict__.setdefault("_fft_paths", {})
        key = tuple(x.shape)
        if key not in cache:
            w_shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
            cache[key] = conv_path(x.shape, w_shape, groups=self.groups, stride=self.stride[0],
                                   padding=self._fft_padding, dilation=self.dilation)
        return cache[key]

    def forward(self, x: Tensor) -> Tensor:
        if self._pick(x) == "fft":
            from nni_dash.ops import fft_conv
            return fft_conv(x, self.weight, self.bias, stride=self.stride[0], dilation=self.dilation,
                            groups=self.groups, padding=self._fft_padding)
        return super().forward(x)


class FFTConv1d(_FFTMixin, nn.Conv1d):
    """``nn.Conv1d`` ("same" zero padding) computed by FFT when cheaper; see the module docstring."""


class FFTConv2d(_FFTMixin, nn.Conv2d):
    """``nn.Conv2d`` ("same" zero padding) computed by FFT when cheaper; see the module docstring."""


class FFTCausalConv1d(_FFTMixin, CausalConv1d):
    """:class:`CausalConv1d` computed by FFT when cheaper (the FFT path pads left itself)."""

    _fft_padding = "causal"

    def forward(self, x: Tensor) -> Tensor:
        if self._pick(x) == "fft":
            from nni_dash.ops import fft_conv
            return fft_conv(x, self.weight, self.bias, stride=self.stride[0], dilation=self.dilation,
                            groups=self.groups, padding="causal")
        return nn.Conv1d.forward(self, F.pad(x, (self.dilation[0] * (self.kernel_size[0] - 1), 0)))


_TO_FFT = {nn.Conv1d: FFTConv1d, nn.Conv2d: FFTConv2d, CausalConv1d: FFTCausalConv1d}
_TO_PLAIN = {fast: plain for plain, fast in _TO_FFT.items()}


#: spatial dimensionalities switched by default. 2-D is off: with the recalibrated cost model (00549ba)
#: the largest-kernel WRN-16-1 at 64x64 is 8 % faster through it at batch 16 (1020 against 1113 ms) but
#: 16 % slower at batch 64 (5068 against 4359 ms; ``benchmarks/results/step_cost_quick.md``).
DEFAULT_NDIMS = (1,)


def use_fft_convs(model: nn.Module, *, ndims: tuple[int, ...] = DEFAULT_NDIMS) -> int:
    """Switch every eligible conv of ``model`` with ``ndims`` spatial axes to its FFT-when-cheaper class, in place.

    Returns how many were switched. ``ndims=(1, 2)`` includes 2-D convs (see :data:`DEFAULT_NDIMS`).
    """
    count = 0
    for module in model.modules():
        fast = _TO_FFT.get(type(module))
        if fast is not None and module.weight.dim() - 2 in ndims and conv_padding_mode(module) is not None:
            module.__class__ = fast
            count += 1
    return count


def use_plain_convs(model: nn.Module) -> int:
    """Undo :func:`use_fft_convs`: plain ``nn.Conv1d/2d``/``CausalConv1d`` again; return how many."""
    count = 0
    for module in model.modules():
        plain = _TO_PLAIN.get(type(module))
        if plain is not None:
            module.__dict__.pop("_fft_paths", None)
            module.__class__ = plain
            count += 1
    return count
