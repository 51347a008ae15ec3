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
  ``1/prod(N)``). The kernel is never dilated or padded in memory: :func:`fft_conv` hands its taps
  to :func:`spectral_conv` at offsets ``d*j - left`` from the output position, the input stays
  unshifted and zero-padded at the end, and the kernel counts as placed circularly
  (``frame[offset mod N]``), so ``irfftn(rfftn(x) * conj(rfftn(frame)))`` is exactly the
  cross-correlation on the leading ``n`` points. The FFT length is ``N >= n + max(left, right)`` per
  axis (rounded up to a 2/3/5-smooth length; see :func:`fft_length`), the shortest for which no
  wrap-around reaches the kept outputs.
* **Kernel spectrum**: by DFT matmuls over the occupied tap offsets only, written frequency first
  (:mod:`nni_dash.ops.kernel_dft`); an FFT of the frame when the kernel is long and dense.
* **Channel mixing** per frequency bin runs as real BLAS matmuls on contiguous real/imaginary
  planes (:class:`nni_dash.ops.spectral_mix.SpectralMix`), with frequency as the batch axis; the
  input and output spectra are exchanged between the FFT layout and that one by one transpose each.
  The kernel spectrum is built one chunk of output channels at a time and never saved.
* **Backward**: written out in :class:`~nni_dash.ops.spectral_mix.SpectralMix` (one-sided FFT
  adjoints whose per-bin factors cancel), instead of autograd's, which rebuilds two-sided spectra
  and zero-filled full-size gradients.
* **Cropping**: a tap more than ``n - 1`` away from the output position only ever meets padding, so
  it is dropped before the FFT. This keeps the FFT small when the dilated kernel is much larger
  than the input (e.g. span 121 on an 8x8 image).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from nni_dash.ops.kernel_dft import kernel_spectrum_planes, pick_method
from nni_dash.ops.rfft import cropped_irfftn, padded_rfftn
from nni_dash.ops.spectral_mix import KERNEL_CHUNK_BYTES, SpectralMix, chunk_channels

__all__ = [
    "PADDING_MODES", "fft_conv", "spectral_conv", "fft_length", "direct_conv", "dilate_kernel", "pad_amounts",
    "crop_kernel_to_input", "next_fast_len", "KERNEL_CHUNK_BYTES", "chunk_channels",
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
    """Shortest circular length giving exact outputs ``0..n-1``: ``n + max(left, right)``, ``right = span - 1 - left``.

    Output ``i`` reads ``x[i + o]`` for tap offsets ``o`` in ``[-left, right]``; the input sits
    unshifted at ``[0, n)`` and is zero-padded to ``N``. A read below 0 wraps to ``N + i + o >= N - left``,
    which must land in the zero padding (``N - left >= n``); a read above ``n - 1`` must not wrap
    (``n - 1 + right < N``). Both hold iff ``N >= n + max(left, right)``; then the taps' residues mod
    ``N`` are also distinct (``left + right < N``, since cropping keeps ``left, right <= n - 1``).
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


class _Zeros(torch.autograd.Function):
    """A zero output of ``shape`` that depends on ``x`` and ``weight`` with zero gradients (finite even for inf inputs)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, shape: tuple[int, ...]) -> Tensor:
        ctx.x_meta, ctx.w_meta = (x.shape, x.dtype, x.device), (weight.shape, weight.dtype, weight.device)
        return x.new_zeros(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        (xs, xd, xv), (ws, wd, wv) = ctx.x_meta, ctx.w_meta
        return torch.zeros(xs, dtype=xd, device=xv), torch.zeros(ws, dtype=wd, device=wv), None


def _check_offsets(offsets: Sequence[Sequence[int]], weight: Tensor, ndim: int) -> tuple[tuple[int, ...], ...]:
    if len(offsets) != ndim:
        raise ValueError(f"offsets: expected one sequence per spatial axis ({ndim}), got {len(offsets)}")
    out = tuple(tuple(int(o) for o in axis) for axis in offsets)
    for a, (axis, k) in enumerate(zip(out, weight.shape[2:])):
        if len(axis) != k or any(b <= a_ for a_, b in zip(axis, axis[1:])):
            raise ValueError(f"offsets[{a}]: expected {k} strictly increasing tap offsets (weight has {k} taps on "
                             f"axis {a}), got {list(axis)}")
    return out


def spectral_conv(
    x: Tensor,
    weight: Tensor,
    offsets: Sequence[Sequence[int]],
    bias: Tensor | None = None,
    *,
    stride: int | Sequence[int] = 1,
    groups: int = 1,
    method: str = "auto",
    chunk_bytes: int | None = None,
) -> Tensor:
    """FFT cross-correlation with a kernel given on a tap grid: ``y[i] = sum_t w[t] . x[i*stride + offsets[t]]``.

    ``weight`` is ``(C_out, C_in/g, R_1, ..., R_n)``; tap ``t`` of axis ``a`` reads input position
    ``i + offsets[a][t]`` (zeros outside ``[0, n)``; strictly increasing offsets). A dense kernel with
    dilation ``d`` and "same" padding is ``offsets = d*j - left``; DASH's aggregated kernel lives on
    the union of its candidates' offsets (:func:`nni_dash.ops.kernel_mix.aggregate_on_grid`).
    Taps with ``|offset| > n - 1`` only ever meet zeros and are dropped. The FFT length per axis is
    ``n + max(left, right)`` (``left = max(0, -min offset)``, ``right = max(0, max offset)``), rounded
    up to a 2/3/5-smooth length; the kernel spectrum comes from
    :func:`nni_dash.ops.kernel_dft.kernel_spectrum_planes` (``method``), one chunk of output
    channels at a time, each chunk's spectrum at most ``chunk_bytes`` (default
    :data:`KERNEL_CHUNK_BYTES`; see :class:`nni_dash.ops.spectral_mix.SpectralMix`). First-order gradients only.
    """
    ndim = _check(x, weight, groups, "same")
    strides = _tuple(stride, ndim, "stride")
    offs = _check_offsets(offsets, weight, ndim)
    spatial = list(x.shape[2:])
    kept = []
    for a, (axis, n) in enumerate(zip(offs, spatial)):  # offsets are sorted: the visible taps are one run
        idx = [t for t, o in enumerate(axis) if -(n - 1) <= o <= n - 1]
        if not idx:  # no tap ever meets the input on this axis: the output is the bias
            shape = (x.shape[0], weight.shape[0], *(math.ceil(n / s) for n, s in zip(spatial, strides)))
            out = _Zeros.apply(x, weight, shape)
            return out if bias is None else out + bias.reshape(1, -1, *([1] * ndim))
        if len(idx) < len(axis):
            weight = weight.narrow(2 + a, idx[0], len(idx))
        kept.append(axis[idx[0]:idx[-1] + 1])
    sizes = tuple(next_fast_len(n + max(0, -axis[0], axis[-1])) for n, axis in zip(spatial, kept))

    c_out, ci = weight.shape[0], weight.shape[1]
    if ci == 1:  # depthwise / channel multiplier: an elementwise product per bin, in the FFT layout
        planes = kernel_spectrum_planes(weight.reshape(c_out, *weight.shape[2:]), kept, sizes, method=method)
        b, freq = x.shape[0], planes.shape[1:-1]
        w_conj = torch.complex(planes[0], planes[1]).reshape(-1, c_out).t()           # (C_out, F)
        x_hat = padded_rfftn(x, sizes).reshape(b, groups, 1, -1)
        y_hat = (x_hat * w_conj.reshape(1, groups, c_out // groups, -1)).reshape(b, c_out, *freq)
        y = cropped_irfftn(y_hat, sizes, tuple(spatial))
    else:
        nf = math.prod(sizes[:-1]) * (sizes[-1] // 2 + 1)
        per_channel = 2 * nf * groups * ci * weight.element_size()  # spectrum bytes per output channel of each group
        chunk = chunk_channels(c_out // groups, per_channel, KERNEL_CHUNK_BYTES if chunk_bytes is None else chunk_bytes)
        offs = tuple(tuple(axis) for axis in kept)
        spectrum = pick_method(offs, sizes) if method == "auto" else method
        y = SpectralMix.apply(x, weight, offs, sizes, groups, spectrum, chunk)
    if any(st > 1 for st in strides):
        y = y[(Ellipsis, *(slice(None, None, st) for st in strides))]
    if bias is not None:
        y = y + bias.reshape(1, -1, *([1] * ndim))
    return y.contiguous()


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

    The dilated kernel is never materialised: its taps are passed to :func:`spectral_conv` at
    offsets ``d*j - left``. Cost is ``O(B*C*M log M + B*C_out*C_in/groups*M)`` for ``M`` FFT points
    plus the kernel spectrum (:mod:`nni_dash.ops.kernel_dft`). For the backward it keeps the input and
    the kernel spectrum planes (``B*C_in*n`` reals and ``C_out*C_in/groups * M/2`` complex values). First-order
    gradients only: the backward is a custom one (``once_differentiable``; double backward raises).
    """
    ndim = _check(x, weight, groups, padding)
    dil = _tuple(dilation, ndim, "dilation")
    offsets = []
    for k, d in zip(weight.shape[2:], dil):
        left = pad_amounts(d * (k - 1) + 1, padding)[0]
        offsets.append([d * j - left for j in range(k)])
    return spectral_conv(x, weight, offsets, bias, stride=stride, groups=groups)


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
