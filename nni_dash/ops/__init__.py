"""Pure tensor operations of DASH (no NNI import): FFT convolution, kernel aggregation, dispatch."""
from nni_dash.ops.dispatch import CostModel, conv, conv_path, mixed_conv
from nni_dash.ops.fft_conv import (
    PADDING_MODES, crop_kernel_to_input, dilate_kernel, direct_conv, fft_conv, next_fast_len, spectral_conv,
)
from nni_dash.ops.kernel_dft import kernel_spectrum_planes
from nni_dash.ops.kernel_mix import KernelBank, aggregate_kernels, aggregate_on_grid, place_kernel, receptive_span

__all__ = [
    "PADDING_MODES", "CostModel", "KernelBank", "aggregate_kernels", "aggregate_on_grid", "conv", "conv_path",
    "crop_kernel_to_input", "dilate_kernel", "direct_conv", "fft_conv", "kernel_spectrum_planes", "mixed_conv",
    "next_fast_len", "place_kernel", "receptive_span", "spectral_conv",
]
