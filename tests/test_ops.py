"""Pure ops: FFT conv equals direct conv; aggregation equals the sum of separate convs; dispatch is exact."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from nni_dash.ops import (
    CostModel, aggregate_kernels, conv, conv_path, crop_kernel_to_input, dilate_kernel, direct_conv, fft_conv,
    next_fast_len,
)

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


GRID = list(itertools.product(
    (1, 2),            # ndim
    (15, 16),          # odd / even input length
    (1, 3, 5),         # kernel size
    (1, 2, 3),         # dilation
    (1, 2),            # stride
    ((4, 8, 1), (4, 8, 2), (4, 4, 4), (4, 8, 4)),  # (C_in, C_out, groups): full, grouped, depthwise, multiplier
    (True, False),     # bias
))


@pytest.mark.parametrize("ndim,n,k,d,stride,channels,bias", GRID)
def test_fft_conv_equals_torch_conv(ndim, n, k, d, stride, channels, bias):
    c_in, c_out, groups = channels
    torch.manual_seed(0)
    x = torch.randn(2, c_in, *([n] * ndim))
    w = torch.randn(c_out, c_in // groups, *([k] * ndim))
    b = torch.randn(c_out) if bias else None
    ref = CONV[ndim](x, w, b, stride=stride, padding=d * (k - 1) // 2, dilation=d, groups=groups)
    out = fft_conv(x, w, b, stride=stride, dilation=d, groups=groups)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("n,k,d,stride", [(20, 3, 1, 1), (20, 5, 2, 1), (7, 5, 3, 1), (21, 3, 4, 2), (3, 7, 5, 1)])
def test_fft_conv_causal_equals_left_padded_conv(n, k, d, stride):
    torch.manual_seed(1)
    x, w, b = torch.randn(3, 4, n), torch.randn(6, 4, k), torch.randn(6)
    ref = F.conv1d(F.pad(x, (d * (k - 1), 0)), w, b, stride=stride, dilation=d)
    out = fft_conv(x, w, b, stride=stride, dilation=d, padding="causal")
    assert out.shape == ref.shape and rel_err(out, ref) <= 1e-5
    # causality: changing the future does not change the past
    x2 = x.clone()
    x2[..., n // 2:] += 1.0
    out2 = fft_conv(x2, w, b, dilation=d, padding="causal")
    full = fft_conv(x, w, b, dilation=d, padding="causal")
    torch.testing.assert_close(out2[..., : n // 2], full[..., : n // 2], rtol=1e-5, atol=1e-5)


def test_fft_conv_3d_and_even_kernel_same_padding():
    torch.manual_seed(2)
    x, w = torch.randn(1, 2, 6, 7, 5), torch.randn(3, 2, 3, 3, 3)
    ref = F.conv3d(x, w, padding=2, dilation=2)
    assert rel_err(fft_conv(x, w, dilation=2), ref) <= 1e-5
    x1, w1 = torch.randn(2, 3, 17), torch.randn(4, 3, 4)  # even kernel: PyTorch's padding="same"
    assert rel_err(fft_conv(x1, w1, dilation=2), F.conv1d(x1, w1, padding="same", dilation=2)) <= 1e-5


def test_kernel_larger_than_input_is_cropped_exactly():
    torch.manual_seed(3)
    x, w = torch.randn(2, 3, 4, 5), torch.randn(3, 3, 9, 9)
    ref = F.conv2d(x, w, padding=28, dilation=7)  # span 57 on a 4x5 input
    assert rel_err(fft_conv(x, w, dilation=7), ref) <= 1e-5
    wd = dilate_kernel(w, 7)
    cropped, lefts = crop_kernel_to_input(wd, [4, 5], [28, 28])
    assert tuple(cropped.shape[2:]) == (7, 9) and lefts == [3, 4]


def test_fft_conv_gradcheck_float64():
    torch.manual_seed(4)
    x = torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: fft_conv(x, w, b, stride=2, dilation=2, groups=2), (x, w, b))
    x2 = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: fft_conv(x, w, dilation=3), (x2, w2))
    assert torch.autograd.gradcheck(lambda x, w: fft_conv(x, w, groups=2, padding="causal"), (x, w))


@pytest.mark.parametrize("shape, c_out, k, groups, padding", [
    ((2, 4, 7), 6, 5, 1, "same"),           # FFT length 9: odd last axis (no Nyquist bin)
    ((2, 4, 7), 4, 3, 4, "same"),           # depthwise, FFT length 8
    ((1, 6, 5, 7), 4, 5, 2, "same"),        # grouped 2-D, last-axis FFT length 9
    ((1, 3, 4, 6), 5, 3, 1, "same"),        # 2-D, even FFT lengths (Nyquist bin on the last axis)
    ((2, 2, 10), 3, 7, 1, "causal"),
    ((1, 2, 3, 4, 5), 2, 3, 1, "same"),     # 3-D
])
def test_fft_conv_gradcheck_fft_sizes_and_groups(shape, c_out, k, groups, padding):
    """The one-sided rfft backward and the planar channel-mixing backward against finite differences."""
    torch.manual_seed(5)
    ndim = len(shape) - 2
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, shape[1] // groups, *([k] * ndim), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: fft_conv(x, w, groups=groups, padding=padding), (x, w))


@pytest.mark.parametrize("shape, k, padding", [
    ((2, 3, 1), 5, "same"), ((2, 3, 2), 3, "same"), ((2, 3, 1), 3, "causal"),   # FFT lengths 1-2
    ((1, 2, 1, 1), 3, "same"), ((1, 2, 2, 1), 5, "same"), ((1, 4, 3, 2), 7, "same"),
])
def test_fft_conv_tiny_inputs_exact_and_differentiable(shape, k, padding):
    """Inputs of 1-3 points per axis: the kernel is cropped to one or a few taps and the FFT has 1-4 points."""
    torch.manual_seed(6)
    ndim = len(shape) - 2
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, shape[1], *([k] * ndim), dtype=torch.float64, requires_grad=True)
    ref = direct_conv(x, w, padding=padding, dilation=2)
    torch.testing.assert_close(fft_conv(x, w, padding=padding, dilation=2), ref, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x, w: fft_conv(x, w, padding=padding, dilation=2), (x, w))


def test_dilate_kernel_places_taps():
    w = torch.arange(1.0, 4.0).reshape(1, 1, 3)
    assert dilate_kernel(w, 3).flatten().tolist() == [1, 0, 0, 2, 0, 0, 3]
    w2 = torch.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    assert dilate_kernel(w2, 2)[0, 0].tolist() == [[1, 0, 2], [0, 0, 0], [3, 0, 4]]


@pytest.mark.parametrize("ndim,n,align", [(1, 30, "center"), (1, 5, "center"), (2, 9, "center"), (2, 4, "center"),
                                          (1, 30, "right"), (1, 4, "right")])
def test_aggregate_equals_sum_of_separate_convs(ndim, n, align):
    torch.manual_seed(5)
    padding = "causal" if align == "right" else "same"
    pairs = [(k, d) for k in (3, 5, 7) for d in (1, 2, 4)]
    weights = [torch.randn(5, 3, *([k] * ndim)) for k, _ in pairs]
    dils = [d for _, d in pairs]
    probs = torch.softmax(torch.randn(len(pairs)), 0)
    x = torch.randn(2, 3, *([n] * ndim))
    ref = sum(p * direct_conv(x, w, dilation=d, padding=padding) for p, w, d in zip(probs, weights, dils))
    full = aggregate_kernels(weights, dils, probs, align=align)
    assert full.shape[-1] == 4 * 6 + 1
    assert rel_err(fft_conv(x, full, padding=padding), ref) <= 1e-5
    cropped = aggregate_kernels(weights, dils, probs, align=align, max_half=n - 1)
    assert cropped.shape[-1] <= full.shape[-1]
    assert rel_err(fft_conv(x, cropped, padding=padding), ref) <= 1e-5
    assert rel_err(direct_conv(x, cropped, padding=padding), ref) <= 1e-5


def test_aggregate_crafted_kernel_centering():
    """Passes only if dilation and centring are right: unit taps land at known offsets."""
    w3 = torch.zeros(1, 1, 3)
    w3[0, 0, 0] = 1.0  # leftmost tap of k=3
    w5 = torch.zeros(1, 1, 5)
    w5[0, 0, 4] = 1.0  # rightmost tap of k=5
    agg = aggregate_kernels([w3, w5], [4, 1], torch.tensor([2.0, 3.0]))
    # span: k3d4 -> 9, k5d1 -> 5; frame 9, centre index 4; k3d4 leftmost tap at 0, k5d1 rightmost at 4+2
    expect = torch.zeros(9)
    expect[0], expect[6] = 2.0, 3.0
    assert agg.flatten().tolist() == expect.tolist()
    right = aggregate_kernels([w3, w5], [4, 1], torch.tensor([2.0, 3.0]), align="right")
    expect = torch.zeros(9)
    expect[0], expect[8] = 2.0, 3.0
    assert right.flatten().tolist() == expect.tolist()


@pytest.mark.parametrize("x_shape,w_shape,stride", [((8, 16, 1000), (16, 16, 271), 1), ((8, 16, 40), (16, 16, 3), 2),
                                                    ((4, 8, 28, 28), (8, 8, 121, 121), 1), ((4, 8, 8, 8), (8, 8, 3, 3), 1)])
def test_dispatch_paths_agree(x_shape, w_shape, stride):
    torch.manual_seed(6)
    x, w, b = torch.randn(*x_shape), torch.randn(*w_shape) * 0.01, torch.randn(w_shape[0])
    ref = direct_conv(x, w, b, stride=stride)
    for path in ("fft", "direct", "auto"):
        assert rel_err(conv(x, w, b, stride=stride, path=path), ref) <= 1e-5
    assert conv_path(x_shape, w_shape, stride=stride) in ("fft", "direct")


def test_cost_model_prefers_fft_for_huge_spans_and_direct_for_tiny_kernels():
    model = CostModel()
    assert conv_path((32, 64, 1000), (64, 64, 271), model=model) == "fft"
    assert conv_path((32, 64, 1000), (64, 64, 3), model=model) == "direct"


def test_cost_model_counts_only_the_real_taps_of_a_dilated_direct_conv():
    """k=3 at dilation 4 ("same", span 9): 3 taps when the input reaches all of them, 1 when n=3 (offsets -4, 0, 4)."""
    model = CostModel(c_dilated=2.5)
    assert model.costs((1, 1, 10), (1, 1, 3), dilation=4)[0] == 10 * 3 * 2.5
    assert model.costs((1, 1, 3), (1, 1, 3), dilation=4)[0] == 3 * 1 * 2.5
    assert model.costs((1, 1, 10), (1, 1, 9))[0] == 10 * 9  # the same span, dense: every tap
    # 2-D: 9x9 at dilation 15 on 64x64 multiplies 81 taps per output, not 121x121
    assert model.costs((1, 1, 64, 64), (1, 1, 9, 9), dilation=15)[0] == 64 * 64 * 9 * 9 * 2.5
    # the FFT side sees the span either way
    assert model.costs((1, 1, 10), (1, 1, 3), dilation=4)[1] == model.costs((1, 1, 10), (1, 1, 9))[1]


def test_next_fast_len():
    for n in (1, 7, 97, 121, 1000, 1021, 4097):
        m = next_fast_len(n)
        assert m >= n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1
    assert next_fast_len(121) == 125 and next_fast_len(1000) == 1000


@pytest.mark.parametrize("call,match", [
    (lambda: fft_conv(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3)), "spatial dims"),
    (lambda: fft_conv(torch.randn(2, 3, 8), torch.randn(4, 3, 3), groups=2), "groups=2"),
    (lambda: fft_conv(torch.randn(2, 4, 8), torch.randn(4, 3, 3)), "C_in"),
    (lambda: fft_conv(torch.randn(2, 3, 8), torch.randn(4, 3, 3), padding="valid"), "padding='valid'"),
    (lambda: fft_conv(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), padding="causal"), "1-D"),
    (lambda: fft_conv(torch.randn(2, 3, 8), torch.randn(4, 3, 3), stride=0), "stride=0"),
    (lambda: conv(torch.randn(2, 3, 8), torch.randn(4, 3, 3), path="gpu"), "path='gpu'"),
])
def test_bad_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
