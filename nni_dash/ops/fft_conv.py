"""FFT convolution with PyTorch's conventions, and its direct-convolution reference.

Conventions (shared by :func:`fft_conv` and :func:`direct_conv`, and identical to ``F.conv{1,2,3}d``):

* **Cross-correlation**, not convolution: ``y[o, i] = sum_j w[o, :, j] . x[:, i*stride + j*dilation - left]``.
* **Layouts**: ``x`` is ``(B, C_in, *S)``, ``weight`` is ``(C_out, C_in // groups, *k)``, output
  ``(B, C_out, *S_out)`` with ``S_out = ceil(S / stride)`` per axis.
* **Padding** (zeros, per spatial axis, span ``s = dilation*(k-1)+1``):

  - ``"same"``: ``left = (s-1)//2``, ``right = s-1-left``. For odd ``k`` this is the symmetric
    ``padding=dilation*(k-1)//2`` of ``F.conv``; for even ``k`` it is PyTorch's ``padding="same"``.
  - ``"causal"`` (1-D only): ``left = s-1``, ``right = 0``; output ``i`` sees inputs ``<= i``.

  With ``stride > 1`` the stride-1 output is subsampled (``[::stride]``), which equals ``F.conv``
  with the same integer padding.
* **FFT**: ``rfftn``/``irfftn`` with ``norm="backward"`` (forward unscaled, inverse scaled by
  ``1/prod(N)``), so ``irfftn(rfftn(x) * conj(rfftn(w)))`` is exactly the circular
  cross-correlation. The input is zero-padded to ``N >= n + max(left, right)`` per axis (after
  cropping, rounded up to a 2/3/5-smooth length; see :func:`fft_length`), the shortest length for
  which no wrap-around reaches the kept outputs.
* **Cropping**: a tap more than ``n - 1`` away from the output position only ever meets padding, so
  it is dropped before the FFT (``crop_kernel_to_input``). This keeps the FFT small when the
  dilated kernel is much larger than the input (e.g. span 121 on an 8x8 image).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PADDING_MODES", "complex_matmul", "fft_conv", "fft_length", "direct_conv", "dilate_kernel", "pad_amounts", "crop_kernel_to_input",
    "next_fast_len",
]

PADDING_MODES = ("same", "causal")


def _tuple(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        out = (value,) * ndim
    else:
        out = tuple(int(v) for v in value)
    if len(out) != ndim or any(v < 1 for v in out):
        raise ValueError(f"{name}={value!r}: expected a positive int or {ndim} positive ints")
    return out


def _check(x: Tensor, weight: Tensor, groups: int, padding: str) -> int:
    ndim = weight.dim() - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"weight: expected (C_out, C_in/groups, *k) with 1-3 spatial dims, got shape {tuple(weight.shape)}")
    if x.dim() != ndim + 2:
        raise ValueError(f"x: expected shape (B, C_in, <{ndim} spatial dims>) for a {ndim}-D weight, got {tuple(x.shape)}")
    if groups < 1 or x.shape[1] % groups or weight.shape[0] % groups:
        raise ValueError(f"groups={groups}: C_in={x.shape[1]} and C_out={weight.shape[0]} must both be divisible by groups")
    if weight.shape[1] * groups != x.shape[1]:
        raise ValueError(f"weight: shape {tuple(weight.shape)} expects C_in={weight.shape[1] * groups} with groups={groups}, "
                         f"input has C_in={x.shape[1]}")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding={padding!r}: allowed values are {', '.join(PADDING_MODES)}")
    if padding == "causal" and ndim != 1:
        raise ValueError("padding='causal' is only defined for 1-D convolutions")
    return ndim


def dilate_kernel(weight: Tensor, dilation: int | Sequence[int]) -> Tensor:
    """Insert ``d - 1`` zeros between taps on every spatial axis: size ``k -> d*(k-1)+1``.

    ``conv(x, dilate_kernel(w, d), dilation=1) == conv(x, w, dilation=d)`` for the same padding.
    """
    ndim = weight.dim() - 2
    dil = _tuple(dilation, ndim, "dilation")
    if all(d == 1 for d in dil):
        return weight
    size = [d * (k - 1) + 1 for d, k in zip(dil, weight.shape[2:])]
    out = weight.new_zeros(*weight.shape[:2], *size)
    out[(Ellipsis, *(slice(None, None, d) for d in dil))] = weight
    return out


def pad_amounts(span: int, padding: str) -> tuple[int, int]:
    """(left, right) zero padding of one axis for a kernel of dilated ``span`` (see module docstring)."""
    if padding == "causal":
        return span - 1, 0
    left = (span - 1) // 2
    return left, span - 1 - left


def crop_kernel_to_input(weight: Tensor, spatial: Sequence[int], lefts: Sequence[int]) -> tuple[Tensor, list[int]]:
    """Drop taps that can only ever meet padding for an input of size ``spatial``.

    Tap ``j`` of an axis with left padding ``left`` reads input ``i + j - left``; for some output
    ``i`` in ``[0, n)`` that is inside ``[0, n)`` iff ``left - (n-1) <= j <= left + (n-1)``.
    Returns the cropped kernel and the new left paddings.
    """
    slices, new_lefts = [], []
    for n, left, span in zip(spatial, lefts, weight.shape[2:]):
        lo, hi = max(0, left - (n - 1)), min(span, left + n)
        slices.append(slice(lo, hi))
        new_lefts.append(left - lo)
    if all(s.start == 0 and s.stop == k for s, k in zip(slices, weight.shape[2:])):
        return weight, new_lefts
    return weight[(Ellipsis, *slices)], new_lefts


def fft_length(n: int, span: int, left: int) -> int:
    """Shortest circular length giving exact outputs ``0..n-1``: ``n + max(left, right)``.

    Output ``i`` reads ``x_pad[i + j]`` (``x`` shifted right by ``left``); a wrapped read lands at
    ``i + j - N <= n + right - 1 - N``, which must stay below the data start ``left``, and the data
    ``[left, left + n)`` must fit: ``N >= n + max(left, right)`` with ``right = span - 1 - left``.
    """
    return n + max(left, span - 1 - left)


def next_fast_len(n: int) -> int:
    """Smallest 2/3/5-smooth integer ``>= n`` (sizes pocketfft transforms fastest)."""
    best = 1 << max(0, math.ceil(math.log2(max(n, 1))))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p235 = p35
            while p235 < n:
                p235 *= 2
            best = min(best, p235)
            p35 *= 3
        p5 *= 5
    return best


def complex_matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w`` for complex tensors with three real (BLAS) matmuls (Gauss's trick).

    PyTorch's CPU complex batched matmul does not reach BLAS and is ~20x slower than real matmuls of
    the same size: ``(a+ib)(c+id) = (k1 - k3) + i(k1 + k2)`` with ``k1 = (a+b)c``, ``k2 = a(d-c)``,
    ``k3 = b(c+d)``. Operands are made contiguous: a batched matmul on strided views falls back to
    one small matmul per matrix.
    """
    a, b = x.real.contiguous(), x.imag.contiguous()
    c, d = w.real.contiguous(), w.imag.contiguous()
    k1 = torch.matmul(a + b, c)
    k2 = torch.matmul(a, d - c)
    k3 = torch.matmul(b, c + d)
    return torch.complex(k1 - k3, k1 + k2)


class _ChannelMix(torch.autograd.Function):
    """``y = x @ w`` per frequency with a backward that also runs on contiguous operands.

    (Autograd would hand the backward a permuted ``grad_y`` and loop over frequency bins.) PyTorch's
    complex convention: ``grad_x = grad_y @ w^H``, ``grad_w = x^H @ grad_y``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return complex_matmul(x, w)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        grad_x = complex_matmul(grad_y, w.mH) if ctx.needs_input_grad[0] else None
        grad_w = complex_matmul(x.mH, grad_y) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


def fft_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding: str = "same",
) -> Tensor:
    """N-d (1-3) convolution computed by FFT; equals :func:`direct_conv` (see module docstring).

    Cost is ``O(B*C*M log M + B*C_out*C_in/groups*M)`` for ``M`` FFT points, independent of the
    kernel span except through the padding; memory holds the complex spectra of ``x`` and ``weight``.
    """
    ndim = _check(x, weight, groups, padding)
    strides = _tuple(stride, ndim, "stride")
    w = dilate_kernel(weight, dilation)
    spatial = list(x.shape[2:])
    lefts = [pad_amounts(s, padding)[0] for s in w.shape[2:]]
    w, lefts = crop_kernel_to_input(w, spatial, lefts)
    spans = list(w.shape[2:])
    sizes = [next_fast_len(fft_length(n, s, left)) for n, s, left in zip(spatial, spans, lefts)]
    dims = tuple(range(-ndim, 0))

    # Shift x right by `left` so output i reads x_pad[i + j]; zeros fill the rest up to the FFT size.
    pad: list[int] = []
    for n, left, size in zip(reversed(spatial), reversed(lefts), reversed(sizes)):
        pad += [left, size - n - left]
    x_hat = torch.fft.rfftn(F.pad(x, pad), s=sizes, dim=dims)  # (B, C_in, *F)
    w_hat = torch.fft.rfftn(w, s=sizes, dim=dims).conj()        # (C_out, C_in/g, *F)

    B, c_in, c_out = x.shape[0], x.shape[1], w.shape[0]
    freq = x_hat.shape[2:]
    n_freq = math.prod(freq)
    ci, co = c_in // groups, c_out // groups
    if ci == 1:  # depthwise / channel multiplier: no channel mixing
        y_hat = x_hat.reshape(B, groups, 1, n_freq) * w_hat.reshape(1, groups, co, n_freq)
    else:
        # Per-frequency channel mixing y[f] = x[f] @ w[f] as one batched complex matmul with the
        # frequency axis leading (an einsum over trailing frequency axes is ~30x slower on CPU).
        x_f = x_hat.reshape(B, groups, ci, n_freq).permute(1, 3, 0, 2)   # (G, F, B, C_in/g)
        w_f = w_hat.reshape(groups, co, ci, n_freq).permute(0, 3, 2, 1)  # (G, F, C_in/g, C_out/g)
        y_hat = _ChannelMix.apply(x_f.contiguous(), w_f.contiguous()).permute(2, 0, 3, 1)  # (B, G, C_out/g, F)
    y = torch.fft.irfftn(y_hat.reshape(B, c_out, *freq), s=sizes, dim=dims)
    y = y[(Ellipsis, *(slice(0, n, s) for n, s in zip(spatial, strides)))]
    if bias is not None:
        y = y + bias.reshape(1, -1, *([1] * ndim))
    return y.contiguous()


def direct_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding: str = "same",
) -> Tensor:
    """``F.conv{1,2,3}d`` with the padding conventions of :func:`fft_conv` (the reference)."""
    ndim = _check(x, weight, groups, padding)
    dil = _tuple(dilation, ndim, "dilation")
    spans = [d * (k - 1) + 1 for d, k in zip(dil, weight.shape[2:])]
    amounts = [pad_amounts(s, padding) for s in spans]
    conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    if all(left == right for left, right in amounts):
        return conv(x, weight, bias, stride=stride, padding=tuple(a[0] for a in amounts), dilation=dil, groups=groups)
    pad: list[int] = []
    for left, right in reversed(amounts):
        pad += [left, right]
    return conv(F.pad(x, pad), weight, bias, stride=stride, dilation=dil, groups=groups)
