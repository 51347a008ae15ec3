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
* **Channel mixing** per frequency bin runs as real BLAS matmuls on contiguous real/imaginary
  planes (:class:`_ChannelMix`); the FFTs run over trailing axes, the matmuls with frequency as the
  batch axis, and the layouts are exchanged by one transpose per operand.
* **Backward**: custom one-sided FFT adjoints (:class:`_PaddedRFFT`, :class:`_CroppedIRFFT`) instead
  of autograd's, which rebuild two-sided spectra and zero-filled full-size gradients.
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
from torch.autograd.function import once_differentiable

__all__ = [
    "PADDING_MODES", "fft_conv", "fft_length", "direct_conv", "dilate_kernel", "pad_amounts", "crop_kernel_to_input",
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


def _rfft_grad_weights(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Per-bin factors turning a one-sided ``rfft`` gradient into an ``irfft`` input (see :class:`_PaddedRFFT`)."""
    half = size // 2 + 1
    scale = torch.full((half,), 0.5, dtype=dtype, device=device)
    scale[0] = 1.0
    if size % 2 == 0:
        scale[-1] = 1.0
    return scale


class _PaddedRFFT(torch.autograd.Function):
    """``rfftn(x zero-padded by `lefts` in front and to `sizes`)`` with a one-sided backward.

    Autograd's own backward of a real-to-complex FFT rebuilds the full two-sided spectrum and runs a
    complex-to-complex transform. The adjoint needs only a half-size one: for a one-sided gradient
    ``G``, ``Re(ifftn_unnormalised(zero-extend(G))) == irfftn_unnormalised(H)`` where ``H`` is ``G``
    with the interior bins of the last axis halved (``irfftn`` counts each of them twice). The padding's
    adjoint is a crop.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, lefts: tuple[int, ...], sizes: tuple[int, ...]) -> Tensor:
        ndim = len(sizes)
        ctx.lefts, ctx.sizes, ctx.spatial = lefts, sizes, tuple(x.shape[-ndim:])
        dims = tuple(range(-ndim, 0))
        if not any(lefts):  # rfftn zero-pads at the end by itself
            return torch.fft.rfftn(x, s=sizes, dim=dims)
        pad: list[int] = []
        for n, left, size in zip(reversed(ctx.spatial), reversed(lefts), reversed(sizes)):
            pad += [left, size - n - left]
        return torch.fft.rfftn(F.pad(x, pad), dim=dims)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        sizes = ctx.sizes
        scale = _rfft_grad_weights(sizes[-1], grad.real.dtype, grad.device)
        full = torch.fft.irfftn(grad * scale, s=sizes, dim=tuple(range(-len(sizes), 0)), norm="forward")
        return full[(Ellipsis, *(slice(left, left + n) for left, n in zip(ctx.lefts, ctx.spatial)))], None, None


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
        y = torch.fft.irfftn(y_hat, s=sizes, dim=tuple(range(-len(sizes), 0)))
        return y[(Ellipsis, *(slice(0, n) for n in spatial))]  # a view: fft_conv makes the one contiguous copy

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        sizes = ctx.sizes
        g = torch.fft.rfftn(grad, s=sizes, dim=tuple(range(-len(sizes), 0)))
        scale = _rfft_grad_weights(sizes[-1], grad.dtype, grad.device).reciprocal_().div_(math.prod(sizes))
        return g * scale, None, None


def _planes(z: Tensor, order: tuple[int, ...]) -> Tensor:
    """Complex ``z`` -> contiguous real ``(2, ...)`` (real plane, imaginary plane) in axis ``order``: one copy."""
    return torch.view_as_real(z).permute(z.dim(), *order).contiguous()


def _interleave(re: Tensor, im: Tensor, shape: tuple[int, ...], order: tuple[int, ...]) -> Tensor:
    """Planes laid out as ``shape`` -> complex tensor with axes permuted by ``order``, contiguous."""
    out_shape = tuple(shape[i] for i in order)
    out = re.new_empty(*out_shape, 2)
    out[..., 0] = re.reshape(shape).permute(order)
    out[..., 1] = im.reshape(shape).permute(order)
    return torch.view_as_complex(out)


class _ChannelMix(torch.autograd.Function):
    """Per-frequency channel mixing ``Y[b, g, o, f] = sum_i X[b, g, i, f] * conj(W[g, o, i, f])``.

    Runs as real batched matmuls over ``(group, frequency)`` on separate real/imaginary planes,
    ``(a + ib)(u - iv) = (au + bv) + i(bu - av)``: 4 real matmuls per complex one, each a BLAS call on
    contiguous operands. (CPU complex batched matmul does not reach BLAS and is ~20x slower; matmuls
    on strided views fall back to one small matmul per frequency bin.) Gradients follow PyTorch's
    convention for complex tensors: ``grad_X = grad_Y @ W``, ``grad_W = grad_Y^H @ X`` per bin.
    """

    @staticmethod
    def forward(ctx: Any, x_hat: Tensor, w_hat: Tensor) -> Tensor:
        b, g, ci, nf = x_hat.shape
        co = w_hat.shape[1]
        xp = _planes(x_hat, (1, 3, 0, 2)).reshape(2, g * nf, b, ci)   # (2, G*F, B, C_in/g)
        wp = _planes(w_hat, (0, 3, 2, 1)).reshape(2, g * nf, ci, co)  # (2, G*F, C_in/g, C_out/g)
        (a, bi), (u, v) = xp.unbind(0), wp.unbind(0)
        y_re = torch.bmm(a, u).baddbmm_(bi, v)
        y_im = torch.bmm(bi, u).baddbmm_(a, v, alpha=-1)
        ctx.save_for_backward(xp, wp)
        return _interleave(y_re, y_im, (g, nf, b, co), (2, 0, 3, 1))  # (B, G, C_out/g, F)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        xp, wp = ctx.saved_tensors
        (a, bi), (u, v) = xp.unbind(0), wp.unbind(0)
        gnf, b, ci = a.shape
        co = u.shape[2]
        g = grad_y.shape[1]
        nf = gnf // g
        gp = _planes(grad_y, (1, 3, 0, 2)).reshape(2, gnf, b, co)
        p, q = gp.unbind(0)  # grad_y = p + iq
        grad_x = grad_w = None
        # intermediates are dropped as soon as they are consumed: the backward's peak memory is what
        # bounds the op's (it already holds both spectra's planes)
        if ctx.needs_input_grad[0]:  # (p + iq)(u + iv)^T
            gx_re = torch.bmm(p, u.mT).baddbmm_(q, v.mT, alpha=-1)
            gx_im = torch.bmm(q, u.mT).baddbmm_(p, v.mT)
            grad_x = _interleave(gx_re, gx_im, (g, nf, b, ci), (2, 0, 3, 1))
            del gx_re, gx_im
        if ctx.needs_input_grad[1]:  # (p - iq)^T (a + ib), laid out (C_in/g, C_out/g)
            gw_re = torch.bmm(a.mT, p).baddbmm_(bi.mT, q)
            gw_im = torch.bmm(bi.mT, p).baddbmm_(a.mT, q, alpha=-1)
            del gp, p, q
            grad_w = _interleave(gw_re, gw_im, (g, nf, ci, co), (0, 3, 2, 1))
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
    kernel span except through the padding. For the backward it keeps the real and imaginary planes
    of both one-sided spectra (``(B*C_in + C_out*C_in/groups) * M/2`` complex values). First-order
    gradients only: the backward is a custom one (``once_differentiable``; double backward raises).
    """
    ndim = _check(x, weight, groups, padding)
    strides = _tuple(stride, ndim, "stride")
    w = dilate_kernel(weight, dilation)
    spatial = list(x.shape[2:])
    lefts = [pad_amounts(s, padding)[0] for s in w.shape[2:]]
    w, lefts = crop_kernel_to_input(w, spatial, lefts)
    spans = list(w.shape[2:])
    sizes = [next_fast_len(fft_length(n, s, left)) for n, s, left in zip(spatial, spans, lefts)]

    # x shifted right by `left` (output i reads x_pad[i + j]) and zero-padded to the FFT size.
    x_hat = _PaddedRFFT.apply(x, tuple(lefts), tuple(sizes))               # (B, C_in, *F)
    w_hat = _PaddedRFFT.apply(w, (0,) * ndim, tuple(sizes))                # (C_out, C_in/g, *F)

    B, c_in, c_out = x.shape[0], x.shape[1], w.shape[0]
    freq = x_hat.shape[2:]
    n_freq = math.prod(freq)
    ci, co = c_in // groups, c_out // groups
    if ci == 1:  # depthwise / channel multiplier: no channel mixing
        y_hat = x_hat.reshape(B, groups, 1, n_freq) * w_hat.reshape(1, groups, co, n_freq).conj()
    else:
        y_hat = _ChannelMix.apply(x_hat.reshape(B, groups, ci, n_freq), w_hat.reshape(groups, co, ci, n_freq))
    y = _CroppedIRFFT.apply(y_hat.reshape(B, c_out, *freq), tuple(sizes), tuple(spatial))
    if any(st > 1 for st in strides):
        y = y[(Ellipsis, *(slice(None, None, st) for st in strides))]
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
