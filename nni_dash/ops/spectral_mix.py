"""DASH's FFT channel mixing as one autograd node: ``crop(irfftn(mix(rfftn(x), P(w))))`` with a written-out backward.

Used by :func:`nni_dash.ops.fft_conv.spectral_conv` for kernels with more than one input channel
per group; conventions (cross-correlation, padding, FFT sizes, the conjugate kernel spectrum) are
those of :mod:`nni_dash.ops.fft_conv` and :mod:`nni_dash.ops.kernel_dft`. Pure torch.

Layouts: spectra come from ``rfftn`` as ``(B, C, *F)`` complex and the mixing matmuls read real
planes ``(2, nf*G, B, C)`` (frequency, then group, as the batch axis); :func:`_freq_major`,
:func:`_split` and :func:`_from_pairs` convert between them with one blocked transpose each way.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from nni_dash.ops.kernel_dft import kernel_spectrum_adjoint, kernel_spectrum_planes
from nni_dash.ops.rfft import irfft_grad_scale, irfftn_leading

__all__ = ["KERNEL_CHUNK_BYTES", "chunk_channels", "SpectralMix"]


def _freq_major(z: Tensor, groups: int) -> Tensor:
    """Complex spectrum ``(B, G*C, *F)`` -> contiguous complex ``(nf*G, B, C)``, frequency first: one copy.

    With one group this is a 2-D transpose of the ``(B*C, nf)`` matrix, which PyTorch copies by cache
    blocks; the real/imaginary split then runs on contiguous data (:func:`_split`). Together they
    take half the time of one permuted copy from the FFT layout into planes.
    """
    b, nf = z.shape[0], math.prod(z.shape[2:])
    c = z.shape[1] // groups
    if groups == 1:
        return z.reshape(b * c, nf).t().contiguous().view(nf, b, c)
    return z.reshape(b, groups, c, nf).permute(3, 1, 0, 2).contiguous().view(nf * groups, b, c)


def _split(t: Tensor) -> Tensor:
    """Complex ``(..., C)`` -> contiguous real planes ``(2, ..., C)`` (real, imaginary)."""
    return torch.view_as_real(t).movedim(-1, 0).contiguous()


def _from_pairs(pairs: Tensor, freq: tuple[int, ...]) -> Tensor:
    """Real ``(nf, G, B, C, 2)`` (real, imaginary) pairs -> contiguous complex spectrum ``(B, G*C, *F)``: one transpose."""
    nf, groups, b, c, _ = pairs.shape
    z = torch.view_as_complex(pairs)                                            # (nf, G, B, C)
    out = z.view(nf, b * c).t().contiguous() if groups == 1 else z.permute(2, 1, 3, 0).contiguous()
    return out.view(b, groups * c, *freq)


#: The kernel spectrum of one chunk of output channels is kept to about this many bytes (see :class:`SpectralMix`).
KERNEL_CHUNK_BYTES = 16 * 2 ** 20


def chunk_channels(c_out_per_group: int, per_channel_bytes: int, chunk_bytes: int) -> int:
    """Output channels per group in one chunk: as many as fit ``chunk_bytes``, at least 1."""
    return max(1, min(c_out_per_group, chunk_bytes // max(per_channel_bytes, 1)))


class SpectralMix(torch.autograd.Function):
    """``crop(irfftn(mix(rfftn(x), P(w))))`` in one node: ``Y[b, g, o, f] = sum_i X[b, g, i, f] * P[f, g, o, i]``.

    ``x`` is real ``(B, C_in, *n)``; ``weight`` is the kernel on its tap grid, ``(C_out, C_in/g, *R)``
    with taps at ``offsets``. ``P`` is the conjugate kernel spectrum of
    :func:`nni_dash.ops.kernel_dft.kernel_spectrum_planes` (frequency first, as the matmuls read it).

    **Chunks.** The spectrum is ``C_out * C_in/g * M/2`` complex values, more than the input's
    spectrum whenever ``C_out > B``, and its gradient as much again. It is therefore never built
    whole: output channels are taken ``chunk`` per group at a time, each chunk's spectrum is
    computed, used and dropped, and nothing kernel-spectrum sized is saved between forward and
    backward. The backward runs two passes over the chunks, so that the input gradient's spectrum
    and the input's own spectrum never coexist: the input gradient first (it recomputes each chunk's
    spectrum: one more DFT of the grid kernel), then the kernel gradient, whose spectrum-sized part
    goes back to the tap grid chunk by chunk through the DFT's adjoint (linear, so it needs no
    spectrum). Any chunking gives the same numbers up to float summation order.

    **Mixing** runs as real batched matmuls over ``(frequency, group)`` on separate planes,
    ``(a + ib)(P_r + iP_i) = (aP_r - bP_i) + i(aP_i + bP_r)``: 4 BLAS matmuls per complex product on
    contiguous operands. (CPU complex batched matmul does not reach BLAS and is ~20x slower.)

    **Backward**, written out instead of chained through three autograd nodes: the adjoint of the
    cropped ``irfftn`` is ``rfftn(grad) / prod(N)`` with interior last-axis bins doubled; the adjoint
    of ``rfftn`` halves them again, so ``grad_x = crop(irfftn(mix^T(rfftn(grad))))`` needs no per-bin
    scaling at all. The kernel gradient keeps the doubling, folded into the input planes. The forward
    saves ``x`` and the grid kernel only; the backward recomputes the input planes (one more
    ``rfftn``) and the kernel spectrum (one more DFT of the grid kernel).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...],
                groups: int, method: str, chunk: int) -> Tensor:
        b, c_in, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
        c_out, ci, taps = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
        co = c_out // groups
        a, bi, freq = _input_planes(x, sizes, groups)
        nf = math.prod(freq)
        pairs = x.new_empty(nf, groups, b, co, 2)
        w = weight.view(groups, co, ci, *taps)
        for lo in range(0, co, chunk):
            hc = min(chunk, co - lo)
            pr, pi = _chunk_planes(w, lo, hc, offsets, sizes, method).unbind(0)
            y_re = torch.bmm(a, pr.mT).baddbmm_(bi, pi.mT, alpha=-1)      # (nf*G, B, hc)
            y_im = torch.bmm(a, pi.mT).baddbmm_(bi, pr.mT)
            pairs[:, :, :, lo:lo + hc, 0] = y_re.view(nf, groups, b, hc)
            pairs[:, :, :, lo:lo + hc, 1] = y_im.view(nf, groups, b, hc)
            del pr, pi, y_re, y_im
        del a, bi
        y_hat = _from_pairs(pairs, freq)
        del pairs
        y = irfftn_leading(y_hat, sizes, spatial)
        ctx.save_for_backward(x, weight)
        ctx.offsets, ctx.sizes, ctx.groups, ctx.method, ctx.chunk = offsets, sizes, groups, method, chunk
        ctx.spatial, ctx.shape = spatial, (b, c_in, ci, co, freq)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None, None, None]:
        x, weight = ctx.saved_tensors
        sizes, groups, chunk = ctx.sizes, ctx.groups, ctx.chunk
        b, c_in, ci, co, freq = ctx.shape
        nf, taps = math.prod(freq), tuple(weight.shape[2:])
        g_hat = torch.fft.rfftn(grad_y, s=sizes, dim=tuple(range(-len(sizes), 0)))  # (B, C_out, *F)
        g_hat = _freq_major(g_hat, groups)
        p, q = _split(g_hat).unbind(0)                                            # (nf*G, B, co) each
        del g_hat
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.view(groups, co, ci, *taps)
        starts = range(0, co, chunk)
        # Two passes, so the input-gradient spectrum and the input's own spectrum never coexist: grad_x
        # first (its accumulators are gone before the kernel gradient needs the input planes).
        grad_x = None
        if need_x:  # dL/da = p P_r + q P_i, dL/db = q P_r - p P_i
            gx_re = gx_im = None
            for lo in starts:
                hc = min(chunk, co - lo)
                pr, pi = _chunk_planes(w, lo, hc, ctx.offsets, sizes, ctx.method).unbind(0)
                pc, qc = p[..., lo:lo + hc], q[..., lo:lo + hc]                 # (nf*G, B, hc) views
                if gx_re is None:
                    gx_re = torch.bmm(pc, pr).baddbmm_(qc, pi)
                    gx_im = torch.bmm(qc, pr).baddbmm_(pc, pi, alpha=-1)
                else:
                    gx_re.baddbmm_(pc, pr).baddbmm_(qc, pi)
                    gx_im.baddbmm_(qc, pr).baddbmm_(pc, pi, alpha=-1)
                del pr, pi
            pairs = torch.stack([gx_re, gx_im], -1).view(nf, groups, b, ci, 2)
            del gx_re, gx_im
            gx_hat = _from_pairs(pairs, freq)
            del pairs
            grad_x = irfftn_leading(gx_hat, sizes, ctx.spatial)
            del gx_hat
        grad_w = None
        if need_w:  # dL/dP_r = p^T a + q^T b, dL/dP_i = q^T a - p^T b, laid out (hc, C_in/g); then the DFT's adjoint
            a, bi, _ = _input_planes(x, sizes, groups, scale=True)  # times the irfftn-adjoint factor
            grad_w = torch.empty_like(weight).view(groups, co, ci, *taps)
            for lo in starts:
                hc = min(chunk, co - lo)
                pc, qc = p[..., lo:lo + hc], q[..., lo:lo + hc]
                g_planes = a.new_empty(2, a.shape[0], hc, ci)
                torch.bmm(pc.mT, a, out=g_planes[0]).baddbmm_(qc.mT, bi)
                torch.bmm(qc.mT, a, out=g_planes[1]).baddbmm_(pc.mT, bi, alpha=-1)
                g_w = kernel_spectrum_adjoint(g_planes.view(2, *freq, groups * hc * ci), ctx.offsets, sizes,
                                              (groups * hc * ci, *taps), method=ctx.method)
                grad_w[:, lo:lo + hc] = g_w.view(groups, hc, ci, *taps)
                del g_planes, g_w
            del a, bi
            grad_w = grad_w.view(weight.shape)
        del p, q
        return grad_x, grad_w, None, None, None, None, None


def _input_planes(x: Tensor, sizes: tuple[int, ...], groups: int, *, scale: bool = False
                  ) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Real and imaginary planes ``(nf*G, B, C_in/g)`` of ``rfftn(x, s=sizes)``, and the frequency shape.

    ``scale`` multiplies by the irfftn-adjoint factor of each last-axis bin (for the kernel gradient).
    """
    x_hat = torch.fft.rfftn(x, s=sizes, dim=tuple(range(-len(sizes), 0)))       # (B, C_in, *F)
    freq = tuple(x_hat.shape[2:])
    nf = math.prod(freq)
    x_hat = _freq_major(x_hat, groups)                                           # (nf*G, B, ci); the FFT layout freed
    xp = _split(x_hat)                                                           # (2, nf*G, B, ci)
    del x_hat
    if scale:
        xp.view(2, nf // freq[-1], freq[-1], -1).mul_(irfft_grad_scale(sizes, x.dtype, x.device)[:, None])
    a, bi = xp.unbind(0)
    return a, bi, freq


def _chunk_planes(w: Tensor, lo: int, hc: int, offsets: tuple[tuple[int, ...], ...], sizes: tuple[int, ...],
                  method: str) -> Tensor:
    """Spectrum planes ``(2, nf*G, hc, C_in/g)`` of output channels ``lo..lo+hc`` of every group of ``w (G, co, ci, *R)``."""
    g, _, ci, *taps = w.shape
    part = w[:, lo:lo + hc].reshape(g * hc * ci, *taps)
    planes = kernel_spectrum_planes(part, offsets, sizes, method=method)         # (2, *F, G*hc*ci)
    return planes.view(2, -1, hc, ci)

