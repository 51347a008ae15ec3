"""Spectrum of a kernel given on a tap grid, computed by DFT matmuls in the channel-mixing layout.

A DASH kernel is sparse: its taps sit only at the offsets some candidate occupies (for K={3,5,7,9},
D={1,3,7,15} in 2-D, 31 of the 121 rows and columns of the frame). Its spectrum is therefore cheap
to compute as a plain DFT, one matmul per axis against the occupied offsets only, and a matmul can
write its result in any layout: here frequency first, ``(2, F, C)``, which is what the batched
channel-mixing matmuls of :mod:`nni_dash.ops.fft_conv` read. The FFT route instead pads the kernel
to the full frame, transforms it, and transposes the ``C_out*C_in*F`` spectrum (and its gradient)
between the FFT layout and the matmul layout; at 2-D C=64 those transposes cost more than the
mixing itself.

Conventions
-----------
* ``offsets[a][t]``: tap ``t`` of axis ``a`` is read at input position ``i + offsets[a][t]`` for
  output ``i`` (cross-correlation, as in :func:`nni_dash.ops.fft_conv.fft_conv`).
* The result is the real and imaginary planes of the **conjugate** spectrum
  ``P[f] = sum_t w[t] * exp(+2 pi i sum_a f_a offsets[a][t_a] / N_a)``, i.e.
  ``conj(rfftn(frame))`` for the kernel placed circularly (``frame[off mod N] = w``), over the
  frequencies of ``rfftn(s=sizes)``: all ``N_a`` on the leading axes, ``N_last // 2 + 1`` on the last.
  The circular cross-correlation of ``x`` with the kernel is then ``irfftn(rfftn(x) * P)``.
* Layout: ``weight`` is ``(C, R_1, ..., R_n)`` (``C`` = any flattened channel axes), the result
  ``(2, F_1, ..., F_n, C)`` contiguous (plane 0 real, plane 1 imaginary).
* Method: ``"dft"`` (the matmuls above, ``O(C * F * R)``) or ``"fft"`` (scatter into the frame,
  ``rfftn``, transpose; ``O(C * M log M)`` plus the transpose) -- the same numbers. ``"auto"``
  picks ``"dft"`` while its multiply-adds per channel stay below :data:`DFT_COST_RATIO` times
  ``M log2 M`` (``M = prod(N)``): the break-even measured by ``python -m benchmarks.kernel_dft_breakeven``
  (``benchmarks/results/kernel_dft.md``; forward+backward, 4096 kernel rows, 2 CPU threads). In 1-D
  (N = 1152) the DFT was faster up to 271 dense taps (ratio 27) and slower at 401 (ratio 40); in 2-D
  (64x64) it was faster at every size tried, dense 63x63 included (ratio 16, 2.1x).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from nni_dash.ops.rfft import padded_rfftn

__all__ = ["DFT_COST_RATIO", "kernel_spectrum_planes", "kernel_spectrum_adjoint", "dft_cost", "pick_method"]

#: ``"auto"`` uses the DFT matmuls while their multiply-adds per channel are below this many ``M log2 M``.
DFT_COST_RATIO = 30.0


def _freqs(sizes: Sequence[int]) -> list[int]:
    return [*sizes[:-1], sizes[-1] // 2 + 1]


def dft_cost(offsets: Sequence[Sequence[int]], sizes: Sequence[int]) -> float:
    """Real multiply-adds per channel of the DFT route (last axis real-to-complex, then complex steps)."""
    taps, freqs = [len(o) for o in offsets], _freqs(sizes)
    cost = 2 * freqs[-1] * math.prod(taps)  # last axis: (2 F_n, R_n) @ (R_n, ...) per leading tap
    for a in range(len(taps) - 2, -1, -1):  # axis a: (2 F_a, 2 R_a) @ (2 R_a, F_{a+1..n}) per leading tap
        cost += 4 * freqs[a] * taps[a] * math.prod(taps[:a]) * math.prod(freqs[a + 1:])
    return float(cost)


def pick_method(offsets: Sequence[Sequence[int]], sizes: Sequence[int]) -> str:
    """``"dft"`` or ``"fft"`` for :func:`kernel_spectrum_planes` (see module docstring)."""
    m = math.prod(sizes)
    return "dft" if dft_cost(offsets, sizes) <= DFT_COST_RATIO * m * math.log2(max(m, 2)) else "fft"


@lru_cache(maxsize=256)
def _dft_matrices(offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> tuple[Tensor, ...]:
    """Per axis, the real matrices of ``f -> exp(+2 pi i f off / N)``; cached per device and dtype.

    Last axis: ``[cos; sin]`` stacked, ``(2 F, R)`` (its input is real). Other axes: the real form of
    a complex multiply, ``(2 F, 2 R)`` with rows ``(plane, f)`` and columns ``(r, plane)``.
    """
    with torch.inference_mode(False):  # cached: must stay usable by later calls that record autograd
        return _build_dft_matrices(offsets, sizes, dtype, device)


def _build_dft_matrices(offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...], dtype: torch.dtype,
                        device: torch.device) -> tuple[Tensor, ...]:
    mats = []
    last = len(sizes) - 1
    for a, (offs, n, nf) in enumerate(zip(offsets, sizes, _freqs(sizes))):
        f = torch.arange(nf, dtype=torch.int64)[:, None]
        phase = (f * torch.tensor(offs, dtype=torch.int64)[None]) % n  # exact integer phase, then one rounding
        theta = phase.to(torch.float64) * (2 * math.pi / n)
        cos, sin = torch.cos(theta), torch.sin(theta)
        if a == last:
            mat = torch.cat([cos, sin], 0)
        else:  # [[cos, -sin], [sin, cos]] with the input plane as the fastest column index
            mat = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 0).reshape(2 * nf, 2 * len(offs))
        mats.append(mat.to(dtype=dtype, device=device).contiguous())
    return tuple(mats)


class _KernelDFT(torch.autograd.Function):
    """``weight (C, *R) -> planes (2, *F, C)`` by one batched matmul per axis; the backward is the transpose chain."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...]) -> Tensor:
        mats = _dft_matrices(offsets, sizes, weight.dtype, weight.device)
        ctx.offsets, ctx.sizes, ctx.shape = offsets, sizes, tuple(weight.shape)
        c, taps, freqs = weight.shape[0], list(weight.shape[1:]), _freqs(sizes)
        lead = math.prod(taps[:-1])
        # last axis: per leading tap, (2 F_n, R_n) @ (R_n, C) on a strided view of the weight
        kp = weight.reshape(c, lead, taps[-1]).transpose(0, 1)
        t = torch.bmm(mats[-1].expand(lead, -1, -1), kp.mT)             # (R_1..R_{n-1}, 2, F_n, C)
        rest = freqs[-1] * c  # columns per (tap, plane) row: (F_{a+1..n}, C)
        for a in range(len(taps) - 2, -1, -1):
            batch = math.prod(taps[:a])
            t = torch.bmm(mats[a].expand(batch, -1, -1), t.reshape(batch, 2 * taps[a], rest))  # (.., 2, F_a, ..)
            rest *= freqs[a]
        return t.reshape(2, *freqs, c)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return _dft_adjoint(grad, ctx.offsets, ctx.sizes, ctx.shape), None, None


def _dft_adjoint(grad: Tensor, offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...],
                 shape: tuple[int, ...]) -> Tensor:
    """The transpose of :class:`_KernelDFT`: planes-shaped ``grad (2, *F, C)`` -> weight-shaped ``(C, *R)``."""
    mats = _dft_matrices(offsets, sizes, grad.dtype, grad.device)
    c, taps, freqs = shape[0], list(shape[1:]), _freqs(sizes)
    g = grad.contiguous()
    rest = math.prod(freqs[1:]) * c
    for a in range(len(taps) - 1):
        batch = math.prod(taps[:a])
        g = torch.bmm(mats[a].mT.expand(batch, -1, -1), g.reshape(batch, 2 * freqs[a], rest))  # (.., R_a, 2, ..)
        rest //= freqs[a + 1]
    lead = math.prod(taps[:-1])
    gk = torch.bmm(g.reshape(lead, 2 * freqs[-1], c).mT, mats[-1].expand(lead, -1, -1))  # (lead, C, R_n)
    return gk.transpose(0, 1).reshape(shape)


def _frame_index(offsets: Sequence[Sequence[int]], sizes: Sequence[int], device: torch.device) -> Tensor:
    """Flat positions ``off mod N`` (row-major over the axes) of every grid tap in the circular frame."""
    flat = torch.zeros(1, dtype=torch.long)
    for offs, n in zip(offsets, sizes):
        flat = (flat[:, None] * n + torch.tensor(offs, dtype=torch.long)[None] % n).reshape(-1)
    return flat.to(device)


def _fft_planes(weight: Tensor, offsets: Sequence[Sequence[int]], sizes: Sequence[int]) -> Tensor:
    """The same planes through a frame and ``rfftn`` (for dense kernels with many taps); autograd backward."""
    c, ndim = weight.shape[0], len(sizes)
    frame = weight.new_zeros(c, math.prod(sizes))
    frame = frame.index_copy(1, _frame_index(offsets, sizes, weight.device), weight.reshape(c, -1))
    spec = torch.view_as_real(padded_rfftn(frame.view(c, *sizes), tuple(sizes)))  # (C, *F, 2)
    planes = spec.permute(ndim + 1, *range(1, ndim + 1), 0)                     # (2, *F, C)
    return torch.stack([planes[0], -planes[1]]).contiguous()                    # conjugate


def kernel_spectrum_adjoint(grad: Tensor, offsets: Sequence[Sequence[int]], sizes: Sequence[int],
                            shape: Sequence[int], *, method: str = "auto") -> Tensor:
    """The gradient w.r.t. a ``shape`` weight of :func:`kernel_spectrum_planes`, given the planes' gradient ``grad``.

    The map is linear, so this needs no weight: ``"dft"`` runs the transposed matmuls; ``"fft"``
    (autograd's backward of the frame route) differentiates it at a zero weight.
    """
    offs = tuple(tuple(int(o) for o in axis) for axis in offsets)
    if method == "auto":
        method = pick_method(offs, sizes)
    if method == "dft":
        return _dft_adjoint(grad, offs, tuple(sizes), tuple(shape))
    if method == "fft":
        with torch.enable_grad():
            w0 = grad.new_zeros(tuple(shape), requires_grad=True)
            return torch.autograd.grad(_fft_planes(w0, offs, sizes), w0, grad)[0]
    raise ValueError(f"method={method!r}: allowed values are 'auto', 'dft', 'fft'")


def kernel_spectrum_planes(weight: Tensor, offsets: Sequence[Sequence[int]], sizes: Sequence[int], *,
                           method: str = "auto") -> Tensor:
    """Planes ``(2, *F, C)`` of the conjugate spectrum of ``weight (C, *R)`` with taps at ``offsets`` (module docstring).

    Every ``offsets[a]`` must lie in ``(-N_a, N_a)`` with distinct residues mod ``N_a`` (true for the
    cropped kernels :func:`nni_dash.ops.fft_conv.spectral_conv` passes).
    """
    offs = tuple(tuple(int(o) for o in axis) for axis in offsets)
    if len(offs) != len(sizes) or any(len({o % n for o in axis}) != len(axis) or any(abs(o) >= n for o in axis)
                                      for axis, n in zip(offs, sizes)):
        raise ValueError(f"offsets {[list(a) for a in offs]} for FFT sizes {tuple(sizes)}: need one list per axis, "
                         f"each inside (-N, N) with distinct residues mod N (use N > max offset - min offset)")
    if method == "auto":
        method = pick_method(offs, sizes)
    if method == "dft":
        return _KernelDFT.apply(weight, offs, tuple(sizes))
    if method == "fft":
        return _fft_planes(weight, offs, sizes)
    raise ValueError(f"method={method!r}: allowed values are 'auto', 'dft', 'fft'")
