"""DASH's aggregated kernel: the mixture sum_i p_i * conv_{k_i, d_i} as one kernel.

By linearity, ``sum_i p_i * conv(x, dilate(W_i, d_i)) == conv(x, sum_i p_i * place(dilate(W_i, d_i)))``
when every dilated kernel is placed in a common frame of span ``L = max_i d_i*(k_i-1)+1`` so that
the taps line up with the output position:

* ``align="center"`` ("same" padding): each candidate is centred in the frame. Example, 1-D,
  k=3 d=2 (span 5) and k=5 d=1 (span 5) and k=3 d=1 (span 3) in L=5::

      k3d2:  a . b . c        (. = inserted zero)
      k5d1:  p q r s t
      k3d1:  0 u v w 0        (centre-padded by (L-s)//2 on each side)
                 ^ centre tap = output position

* ``align="right"`` ("causal" padding): each candidate ends at the last tap (the current sample),
  i.e. it is left-padded by ``L - s``.

The frame can be cropped to a smaller half-width ``max_half`` (taps farther than ``n - 1`` from the
output only ever meet padding; see :func:`nni_dash.ops.fft_conv.crop_kernel_to_input`): candidate
taps outside the cropped frame are dropped. Accumulation is one ``index_add`` of every candidate's
kept taps (scaled by its probability) at precomputed flat frame positions, so forward and backward
cost ``O(C_out*C_in*(L^N + sum_i k_i^N))``: the backward is a gather of ``sum_i k_i^N`` taps per
channel pair, not one full-frame gradient per candidate (2.5 s against 0.15 s at 2-D C=64, 16 candidates).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["receptive_span", "aggregate_kernels", "aggregate_on_grid", "frame_size", "place_kernel", "KernelBank"]


class KernelBank:
    """All candidate kernels of one layer in one tensor: ``flat`` is ``(C_out, C_in/g, sum_i k_i^N)``.

    Candidate ``i`` is the ``k_i^N`` columns after those of candidates ``0..i-1``, row-major over
    its taps (:meth:`kernels` gives ``(C_out, C_in/g, *[k_i]*N)`` views). Aggregation then needs no
    per-candidate operation or concatenation, and an optimiser updates one tensor per layer. The
    functions of this module accept a bank wherever they take a list of kernels.
    """

    def __init__(self, flat: Tensor, kernel_sizes: Sequence[int], ndim: int) -> None:
        sizes = [int(k) ** ndim for k in kernel_sizes]
        if flat.dim() != 3 or flat.shape[2] != sum(sizes):
            raise ValueError(f"KernelBank: flat has shape {tuple(flat.shape)}, expected (C_out, C_in/g, "
                             f"{sum(sizes)}) for kernel sizes {list(kernel_sizes)} in {ndim}-D")
        self.flat, self.kernel_sizes, self.ndim = flat, tuple(int(k) for k in kernel_sizes), ndim
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]

    @classmethod
    def stack(cls, weights: Sequence[Tensor]) -> "KernelBank":
        """A bank holding a copy of ``weights`` (square kernels ``(C_out, C_in/g, *k)``)."""
        return cls(torch.cat([w.flatten(2) for w in weights], 2), [w.shape[-1] for w in weights], weights[0].dim() - 2)

    def __len__(self) -> int:
        return len(self.kernel_sizes)

    def kernel(self, i: int) -> Tensor:
        k = self.kernel_sizes[i]
        return self.flat.narrow(2, self.starts[i], k ** self.ndim).view(*self.flat.shape[:2], *([k] * self.ndim))

    def kernels(self) -> list[Tensor]:
        return [self.kernel(i) for i in range(len(self))]

    @property
    def shape(self) -> tuple[int, ...]:  # of candidate 0, as a list of kernels would report
        return (*self.flat.shape[:2], *([self.kernel_sizes[0]] * self.ndim))


def _bank(weights: Sequence[Tensor] | KernelBank) -> KernelBank:
    return weights if isinstance(weights, KernelBank) else KernelBank.stack(weights)


def receptive_span(kernel_size: int, dilation: int) -> int:
    """Span of a dilated kernel along one axis: ``d*(k-1)+1``."""
    return dilation * (kernel_size - 1) + 1


def _frame_offset(span: int, frame: int, align: str) -> int:
    if align == "center":
        return (frame - span) // 2
    if align == "right":
        return frame - span
    raise ValueError(f"align={align!r}: allowed values are 'center', 'right'")


def frame_size(spans: Sequence[int], align: str, max_half: int | None) -> tuple[int, int]:
    """Size of the (possibly cropped) dense frame and its start inside the full frame of span ``max(spans)``."""
    full = max(spans)
    if max_half is None:
        return full, 0
    if align == "center":
        half = min((full - 1) // 2, max_half)
        return 2 * half + 1, (full - 1) // 2 - half
    size = min(full, max_half + 1)  # causal: keep the last max_half+1 taps
    return size, full - size


def place_kernel(weight: Tensor, dilation: int, frame: int, *, align: str = "center", start: int = 0) -> Tensor:
    """One candidate, dilated and placed in a zero frame ``[start, start+frame)`` of the full frame.

    ``weight`` is ``(C_out, C_in/g, *k)``; the result is ``(C_out, C_in/g, *[frame]*N)``.
    """
    return aggregate_kernels([weight], [dilation], weight.new_ones(1), align=align,
                             frame=(frame, start))


def aggregate_kernels(
    weights: Sequence[Tensor],
    dilations: Sequence[int],
    probs: Tensor,
    *,
    align: str = "center",
    max_half: int | None = None,
    frame: tuple[int, int] | None = None,
) -> Tensor:
    """``sum_i probs[i] * place(dilate(weights[i], dilations[i]))`` in a common frame.

    Parameters
    ----------
    weights
        Candidate kernels ``(C_out, C_in/g, *k_i)``, square with odd ``k_i``; same channels.
    dilations
        Dilation of each candidate (same length as ``weights``).
    probs
        Mixture weights, shape ``(len(weights),)``; any real values (no normalisation here).
    align
        ``"center"`` for "same" padding, ``"right"`` for causal (see module docstring).
    max_half
        Crop the frame to at most this many taps on the far side(s) of the output position.
    frame
        Internal: explicit ``(size, start)`` of the frame; overrides ``max_half``.

    Returns
    -------
    Tensor ``(C_out, C_in/g, *[L']*N)`` with ``L' = max span`` (or the cropped size).
    """
    bank = _bank(weights)
    _check_lengths(bank, dilations, probs)
    spans = [receptive_span(k, d) for k, d in zip(bank.kernel_sizes, dilations)]
    size, start = frame if frame is not None else frame_size(spans, align, max_half)
    layout = _tap_positions(bank.kernel_sizes, tuple(dilations), bank.ndim, size, start, align, bank.flat.device)
    return _accumulate(bank, probs, layout, size)


def aggregate_on_grid(
    weights: Sequence[Tensor],
    dilations: Sequence[int],
    probs: Tensor,
    *,
    align: str = "center",
    max_half: int | None = None,
) -> tuple[Tensor, tuple[int, ...]]:
    """The aggregated kernel of :func:`aggregate_kernels` on its tap grid only, and the grid's offsets.

    Every candidate tap sits at an offset ``d*j - centre`` from the output position; the union of
    these offsets (cropped like the frame by ``max_half``) is the grid, the same on every axis. Rows
    and columns of the frame that no candidate touches are left out: for K={3,5,7,9},
    D={1,3,7,15} the frame is 121 wide and the grid 31. Returns the kernel
    ``(C_out, C_in/g, *[R]*N)`` and the ``R`` sorted offsets, in the convention of
    :func:`nni_dash.ops.fft_conv.spectral_conv` (tap ``t`` reads input ``i + offsets[t]``).
    Scattering the grid into the frame gives exactly :func:`aggregate_kernels`.
    """
    bank = _bank(weights)
    _check_lengths(bank, dilations, probs)
    spans = [receptive_span(k, d) for k, d in zip(bank.kernel_sizes, dilations)]
    size, start = frame_size(spans, align, max_half)
    grid = _grid_offsets(bank.kernel_sizes, tuple(dilations), size, start, align)
    layout = _tap_positions(bank.kernel_sizes, tuple(dilations), bank.ndim, size, start, align, bank.flat.device,
                            grid=grid)
    return _accumulate(bank, probs, layout, len(grid)), grid


def _check_lengths(bank: KernelBank, dilations: Sequence[int], probs: Tensor) -> None:
    if len(bank) != len(dilations) or probs.shape != (len(bank),):
        raise ValueError(f"aggregate_kernels: {len(bank)} weights, {len(dilations)} dilations and probs of shape "
                         f"{tuple(probs.shape)} must have the same length")


def _accumulate(bank: KernelBank, probs: Tensor, layout: tuple[Tensor | None, Tensor, Tensor], size: int) -> Tensor:
    """``sum_i probs[i] * taps_i`` scattered (one ``index_add``) into a zero ``(C_out, C_in/g, *[size]*N)``.

    Four tensor operations whatever the number of candidates: gather the kept taps (if any are
    cropped), scale each by its candidate's probability, scatter-add; autograd's backward is the
    matching gather and reductions.
    """
    sources, targets, owners = layout
    flat = bank.flat if sources is None else bank.flat.index_select(2, sources)
    out = flat.new_zeros(*flat.shape[:2], size ** bank.ndim)
    out = out.index_add_(2, targets, flat * probs.index_select(0, owners))
    return out.view(*flat.shape[:2], *([size] * bank.ndim))


def _centre(full: int, align: str) -> int:
    """Frame position of the output sample in the full frame of span ``full``."""
    return (full - 1) // 2 if align == "center" else full - 1


@lru_cache(maxsize=256)
def _grid_offsets(kernel_sizes: tuple[int, ...], dilations: tuple[int, ...], size: int, start: int,
                  align: str) -> tuple[int, ...]:
    """Sorted offsets (from the output position) of every candidate tap inside the cropped frame."""
    spans = [receptive_span(k, d) for k, d in zip(kernel_sizes, dilations)]
    full = max(spans)
    centre = _centre(full, align)
    offsets = set()
    for k, d, span in zip(kernel_sizes, dilations, spans):
        first = _frame_offset(span, full, align)
        offsets.update(first + j * d - centre for j in range(k) if 0 <= first + j * d - start < size)
    return tuple(sorted(offsets))


@lru_cache(maxsize=256)
def _tap_positions(kernel_sizes: tuple[int, ...], dilations: tuple[int, ...], ndim: int, size: int, start: int,
                   align: str, device: torch.device, grid: tuple[int, ...] | None = None,
                   ) -> tuple[Tensor | None, Tensor, Tensor]:
    """Indices of the kept taps in the bank's flat tap axis (``None`` = all), their flat frame positions and owners.

    With ``grid`` (sorted offsets from :func:`_grid_offsets`) the positions are on that grid instead
    of the dense frame. Cached per device, so a GPU run does not copy the indices host-to-device on
    every call.
    """
    with torch.inference_mode(False):  # cached: must stay usable by later calls that record autograd
        return _build_tap_positions(kernel_sizes, dilations, ndim, size, start, align, device, grid)


def _build_tap_positions(kernel_sizes: tuple[int, ...], dilations: tuple[int, ...], ndim: int, size: int, start: int,
                         align: str, device: torch.device, grid: tuple[int, ...] | None,
                         ) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(sources, targets, owners)`` over the bank's flat tap axis: the kept taps (``None`` = all),
    their flat frame (or grid) positions and the candidate each belongs to."""
    spans = [receptive_span(k, d) for k, d in zip(kernel_sizes, dilations)]
    full = max(spans)
    index = None if grid is None else {o: i for i, o in enumerate(grid)}
    shift = start - _centre(full, align)  # cropped-frame position -> offset from the output position
    width = size if grid is None else len(grid)
    sources, targets, owners = [], [], []
    base, cropped = 0, False
    for c, (k, d, span) in enumerate(zip(kernel_sizes, dilations, spans)):
        offset = _frame_offset(span, full, align) - start  # position of tap 0 in the cropped frame
        kept = [j for j in range(k) if 0 <= offset + j * d < size]
        cropped |= len(kept) < k
        taps = torch.tensor(kept, dtype=torch.long)
        pos = [offset + j * d if index is None else index[offset + j * d + shift] for j in kept]
        src = torch.zeros(1, dtype=torch.long)
        dst = torch.zeros(1, dtype=torch.long)
        for _ in range(ndim):  # row-major flat index over the N axes
            src = (src[:, None] * k + taps[None]).reshape(-1)
            dst = (dst[:, None] * width + torch.tensor(pos, dtype=torch.long)[None]).reshape(-1)
        sources.append(src + base)
        targets.append(dst)
        owners.append(torch.full((len(src),), c, dtype=torch.long))
        base += k ** ndim
    src_all = None if not cropped else torch.cat(sources).to(device)
    return src_all, torch.cat(targets).to(device), torch.cat(owners).to(device)
