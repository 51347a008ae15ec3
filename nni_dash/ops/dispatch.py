"""Per-call choice between FFT and direct convolution (both exact; see :mod:`nni_dash.ops.fft_conv`).

The cost model counts multiply-adds:

* direct: ``B * C_out * C_in/g * prod(ceil(n/stride)) * prod(taps)``: every tap of a dense kernel
  (an aggregated DASH kernel runs as its dense frame), or only the ``k`` real taps per axis of a
  dilated one, times ``c_dilated`` (oneDNN/cuDNN skip the inserted zeros but read with strides),
* FFT: ``c_fft * (B*C_in + B*C_out + C_out*C_in/g) * M * log2(M) + c_mix * 4 * B*C_out*C_in/g * M/2``
  for ``M = prod(FFT sizes)`` (``M/2`` complex bins of the real FFT, 4 real multiply-adds each),

with the constants below calibrated for forward+backward on CPU (oneDNN direct conv vs. MKL FFTs +
planar BLAS channel mixing; 2-core Intel Xeon, torch 2.13, 88 shapes including the dilated layers of
ResNet1D and WRN-16-1, 76 picked right: ``python -m benchmarks.op_speed --quick --calibrate``, table in
``benchmarks/results/op_speed_quick.md``). For DASH's sparse
aggregated kernel the FFT path computes the kernel spectrum by DFT matmuls on the tap grid
(:mod:`nni_dash.ops.kernel_dft`), which costs less than the ``C_out*C_in/g * M log M`` term charges, so
the model errs towards the direct path there. A wrong guess costs only time: both paths give the
same result up to float rounding.
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor

from nni_dash.ops.fft_conv import (
    PADDING_MODES, crop_kernel_to_input, direct_conv, fft_conv, fft_length, next_fast_len, pad_amounts,
    spectral_conv,
)
from nni_dash.ops.kernel_mix import KernelBank, frame_size, aggregate_kernels, aggregate_on_grid, receptive_span

__all__ = ["CostModel", "DEFAULT_COST_MODEL", "C_DILATED", "conv_path", "conv", "mixed_conv"]

#: Extra cost per multiply-add of a dilated direct convolution over an undilated one (strided reads).
C_DILATED = 1.5


class CostModel:
    """Relative cost of the FFT path against oneDNN/cuDNN direct convolution.

    Parameters
    ----------
    c_fft
        Cost of one ``n log2 n`` FFT unit relative to one direct multiply-add.
    c_mix
        Cost of one real multiply-add of the frequency-domain channel mixing.
    fft_overhead
        Fixed cost (in multiply-adds) of the extra kernel launches of the FFT path.
    c_dilated
        Cost of one multiply-add of a dilated direct convolution relative to an undilated one.
    """

    def __init__(self, *, c_fft: float = 0.2, c_mix: float = 12.6, fft_overhead: float = 1.78e6,
                 c_dilated: float = C_DILATED) -> None:
        self.c_fft = c_fft
        self.c_mix = c_mix
        self.fft_overhead = fft_overhead
        self.c_dilated = c_dilated

    def costs(self, x_shape: Sequence[int], w_shape: Sequence[int], *, groups: int = 1,
              stride: int = 1, padding: str = "same", dilation: int | Sequence[int] = 1) -> tuple[float, float]:
        """(direct, fft) estimated multiply-adds for a ``w_shape`` kernel with taps ``dilation`` apart.

        With ``dilation`` 1 the kernel is dense (an aggregated DASH kernel is passed that way, already
        placed in its frame). With ``dilation > 1`` the direct path multiplies only the ``k`` real taps
        per axis (oneDNN and cuDNN skip the inserted zeros; measured: a 9x9 kernel at dilation 15
        costs 3.9x the undilated one at 2-D 64x64, not the 180x of its 121x121 span), times
        ``c_dilated`` for the strided reads; the FFT path transforms the whole span.
        """
        b, c_in, *spatial = x_shape
        c_out, c_per_group, *ks = w_shape
        dil = [dilation] * len(ks) if isinstance(dilation, int) else list(dilation)
        spans = [d * (k - 1) + 1 for k, d in zip(ks, dil)]
        lefts = [pad_amounts(s, padding)[0] for s in spans]
        # cropping applies to both paths (the direct path also only needs the visible taps)
        eff = [min(s, left + n) - max(0, left - (n - 1)) for s, left, n in zip(spans, lefts, spatial)]
        taps = [sum(1 for j in range(k) if -(n - 1) <= d * j - left <= n - 1)
                for k, d, left, n in zip(ks, dil, lefts, spatial)]
        out_points = math.prod(math.ceil(n / stride) for n in spatial)
        direct = b * c_out * c_per_group * out_points * math.prod(taps)
        if any(d > 1 for d in dil):
            direct *= self.c_dilated
        m = math.prod(next_fast_len(fft_length(n, s, pad_amounts(s, padding)[0])) for n, s in zip(spatial, eff))
        fft = (self.c_fft * (b * c_in + b * c_out + c_out * c_per_group) * m * math.log2(max(m, 2))
               + self.c_mix * 4 * b * c_out * c_per_group * (m / 2) + self.fft_overhead)
        return float(direct), float(fft)


DEFAULT_COST_MODEL = CostModel()


def conv_path(x_shape: Sequence[int], w_shape: Sequence[int], *, groups: int = 1, stride: int = 1,
              padding: str = "same", dilation: int | Sequence[int] = 1, model: CostModel = DEFAULT_COST_MODEL) -> str:
    """``"fft"`` or ``"direct"``: the cheaper path under ``model`` (see :meth:`CostModel.costs` for ``dilation``)."""
    direct, fft = model.costs(x_shape, w_shape, groups=groups, stride=stride, padding=padding, dilation=dilation)
    return "fft" if fft < direct else "direct"


def conv(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, stride: int = 1, groups: int = 1,
         padding: str = "same", path: str = "auto") -> Tensor:
    """Convolve with an already dilated/aggregated kernel by the path ``"auto"``, ``"fft"`` or ``"direct"``.

    Same conventions as :func:`nni_dash.ops.fft_conv.fft_conv` (dilation 1: the kernel is dense).
    """
    if path == "auto":
        path = conv_path(x.shape, weight.shape, groups=groups, stride=stride, padding=padding)
    if path == "fft":
        return fft_conv(x, weight, bias, stride=stride, groups=groups, padding=padding)
    if path == "direct":
        lefts = [pad_amounts(s, padding)[0] for s in weight.shape[2:]]
        w, new_lefts = crop_kernel_to_input(weight, list(x.shape[2:]), lefts)
        if w is not weight and padding == "same" and any(
                left != pad_amounts(s, padding)[0] for left, s in zip(new_lefts, w.shape[2:])):
            # cropping an off-centre window: fall back to the full kernel (still exact)
            w = weight
        return direct_conv(x, w, bias, stride=stride, groups=groups, padding=padding)
    raise ValueError(f"path={path!r}: allowed values are 'auto', 'fft', 'direct'")


def mixed_conv(x: Tensor, weights: Sequence[Tensor] | KernelBank, dilations: Sequence[int], probs: Tensor,
               bias: Tensor | None = None, *, stride: int = 1, groups: int = 1, padding: str = "same",
               path: str = "auto") -> Tensor:
    """DASH's mixture ``sum_i probs[i] * conv(x, weights[i], dilation=dilations[i])`` as one convolution.

    The candidates are aggregated into one kernel cropped to what ``x`` can see
    (:mod:`nni_dash.ops.kernel_mix`). ``path="fft"`` keeps that kernel on its tap grid
    (:func:`~nni_dash.ops.kernel_mix.aggregate_on_grid`) and runs :func:`spectral_conv`;
    ``path="direct"`` builds the dense frame and runs one direct convolution; ``"auto"`` asks the
    cost model about the dense frame. ``weights`` is a list of kernels or a
    :class:`~nni_dash.ops.kernel_mix.KernelBank` (no copy). Same conventions as :func:`fft_conv`.
    """
    if padding not in PADDING_MODES or (padding == "causal" and x.dim() != 3):
        raise ValueError(f"padding={padding!r} for a {x.dim() - 2}-D input: allowed values are 'same' and, "
                         f"for 1-D only, 'causal'")
    align = "right" if padding == "causal" else "center"
    max_half = max(x.shape[2:]) - 1
    weights = weights if isinstance(weights, KernelBank) else KernelBank.stack(weights)
    if path == "auto":
        spans = [receptive_span(k, d) for k, d in zip(weights.kernel_sizes, dilations)]
        size = frame_size(spans, align, max_half)[0]
        path = conv_path(x.shape, (*weights.flat.shape[:2], *([size] * (x.dim() - 2))),
                         groups=groups, stride=stride, padding=padding)
    if path == "fft":
        kernel, offsets = aggregate_on_grid(weights, dilations, probs, align=align, max_half=max_half)
        return spectral_conv(x, kernel, [offsets] * (x.dim() - 2), bias, stride=stride, groups=groups)
    if path == "direct":
        kernel = aggregate_kernels(weights, dilations, probs, align=align, max_half=max_half)
        return conv(x, kernel, bias, stride=stride, groups=groups, padding=padding, path="direct")
    raise ValueError(f"path={path!r}: allowed values are 'auto', 'fft', 'direct'")
