"""Real FFTs with one-sided adjoints (pure torch; used by :mod:`nni_dash.ops.fft_conv` and :mod:`nni_dash.ops.kernel_dft`).

Conventions: ``torch.fft`` with ``norm="backward"`` unless stated (forward unscaled, inverse scaled by
``1/prod(N)``); transforms run over the trailing ``len(sizes)`` axes; zero-padding is at the end of
each axis and crops keep the leading block. Autograd's own backwards of ``rfftn``/``irfftn`` rebuild
two-sided spectra and zero-filled full-size gradients; the adjoints here stay one-sided.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["BLOCK_BYTES", "padded_rfftn", "cropped_irfftn", "irfftn_leading", "irfft_grad_scale"]


def _rfft_grad_weights(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Per-bin factors turning a one-sided ``rfft`` gradient into an ``irfft`` input (see :class:`_RFFTN`)."""
    half = size // 2 + 1
    scale = torch.full((half,), 0.5, dtype=dtype, device=device)
    scale[0] = 1.0
    if size % 2 == 0:
        scale[-1] = 1.0
    return scale


#: ``irfftn_leading`` inverts this many bytes of spectrum at a time (its temporaries are that size).
BLOCK_BYTES = 8 * 2 ** 20


def irfftn_leading(z: Tensor, sizes: Sequence[int], keep: Sequence[int], norm: str = "backward") -> Tensor:
    """``irfftn(z, s=sizes)[..., :keep_1, ..., :keep_n]``, contiguous, cropping the leading axes before the c2r.

    In 2-D/3-D the leading axes are inverted first (complex-to-complex) and cut to the kept rows, so
    the last axis' complex-to-real transform runs on those rows only (half the work when ``N = 2n``).
    The transform runs over blocks of the leading (batch, channel) rows of about
    :data:`BLOCK_BYTES` each, written into the cropped output: the full-size complex and uncropped
    real intermediates never exist at once (at 2-D C=64 they were 3x the output).
    """
    ndim = len(sizes)
    lead, freq = tuple(z.shape[:-ndim]), tuple(z.shape[-ndim:])
    rows = z.reshape(-1, *freq)
    out = torch.empty(*lead, *keep, dtype=z.real.dtype, device=z.device)
    out_rows = out.view(-1, *keep)
    step = max(1, BLOCK_BYTES // max(1, z.element_size() * math.prod(freq)))
    for lo in range(0, rows.shape[0], step):
        block = rows[lo:lo + step]
        if ndim > 1:
            block = torch.fft.ifftn(block, s=sizes[:-1], dim=tuple(range(-ndim, -1)), norm=norm)
            block = block[(Ellipsis, *(slice(0, k) for k in keep[:-1]), slice(None))]
        out_rows[lo:lo + step] = torch.fft.irfft(block, n=sizes[-1], dim=-1, norm=norm)[..., :keep[-1]]
    return out


class _RFFTN(torch.autograd.Function):
    """``rfftn(x, s=sizes)`` (zero-padded at the end) with a one-sided backward.

    Autograd's own backward of a real-to-complex FFT rebuilds the full two-sided spectrum and runs a
    complex-to-complex transform. The adjoint needs only a half-size one: for a one-sided gradient
    ``G``, ``Re(ifftn_unnormalised(zero-extend(G))) == irfftn_unnormalised(H)`` where ``H`` is ``G``
    with the interior bins of the last axis halved (``irfftn`` counts each of them twice). The
    padding's adjoint is a crop.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: tuple[int, ...]) -> Tensor:
        ctx.sizes, ctx.spatial = sizes, tuple(x.shape[-len(sizes):])
        return torch.fft.rfftn(x, s=sizes, dim=tuple(range(-len(sizes), 0)))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        scale = _rfft_grad_weights(ctx.sizes[-1], grad.real.dtype, grad.device)
        return irfftn_leading(grad * scale, ctx.sizes, ctx.spatial, norm="forward"), None


def padded_rfftn(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """``rfftn`` of ``x`` zero-padded at the end to ``sizes`` over its trailing axes, with a one-sided backward."""
    return _RFFTN.apply(x, tuple(sizes))


class _CroppedIRFFT(torch.autograd.Function):
    """``irfftn(y_hat, s=sizes)[..., :n]`` (the first ``n`` points per axis) with a direct backward.

    The adjoint of "crop the leading block" is "zero-pad at the end", which ``rfftn(s=sizes)`` does
    by itself; the adjoint of ``irfftn`` (``norm="backward"``) on the one-sided input is
    ``rfftn(grad) / prod(N)`` with the interior bins of the last axis doubled. Autograd would
    instead materialise a zero-filled full-size gradient and copy into it.
    """

    @staticmethod
    def forward(ctx: Any, y_hat: Tensor, sizes: tuple[int, ...], spatial: tuple[int, ...]) -> Tensor:
        ctx.sizes = sizes
        return irfftn_leading(y_hat, sizes, spatial)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        sizes = ctx.sizes
        g = torch.fft.rfftn(grad, s=sizes, dim=tuple(range(-len(sizes), 0)))
        return g * irfft_grad_scale(sizes, grad.dtype, grad.device), None, None


def irfft_grad_scale(sizes: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Per last-axis bin: the adjoint of one-sided ``irfftn`` is ``rfftn`` times this (2 for interior bins, / prod(N))."""
    return _rfft_grad_weights(sizes[-1], dtype, device).reciprocal_().div_(math.prod(sizes))


def cropped_irfftn(y_hat: Tensor, sizes: tuple[int, ...], spatial: tuple[int, ...]) -> Tensor:
    """``irfftn(y_hat, s=sizes)`` cropped to the leading ``spatial`` block (a view), with a one-sided backward."""
    return _CroppedIRFFT.apply(y_hat, tuple(sizes), tuple(spatial))
