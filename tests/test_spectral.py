"""Kernel spectra by DFT matmuls, spectral_conv on tap grids, and DASH's mixture on its grid."""
import pytest
import torch
import torch.nn.functional as F

from nni_dash.ops import (
    aggregate_kernels, aggregate_on_grid, direct_conv, kernel_spectrum_planes, mixed_conv, spectral_conv,
)
from nni_dash.ops.kernel_dft import pick_method

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def reference_planes(weight, offsets, sizes):
    """conj(rfftn(frame)) with every tap written at ``offset mod N``: the definition, by one plain FFT."""
    c = weight.shape[0]
    frame = torch.zeros(c, *sizes, dtype=weight.dtype)
    index = torch.meshgrid(*[torch.tensor(o) % n for o, n in zip(offsets, sizes)], indexing="ij")
    frame[(slice(None), *index)] = weight
    spec = torch.fft.rfftn(frame, dim=tuple(range(1, len(sizes) + 1))).conj()
    return torch.stack([spec.real, spec.imag]).movedim(1, -1)  # (2, *F, C)


CASES = [  # (taps per axis as offsets, FFT sizes)
    (([-3, 0, 2, 5],), (12,)),
    (([-4, -1, 0, 7],), (15,)),                          # odd N: no Nyquist bin
    (([-2, 0, 3], [-5, -1, 0, 1, 4]), (9, 12)),
    (([0], [-3, 3]), (4, 7)),
    (([-1, 0, 1], [-2, 0], [0, 2, 3]), (5, 6, 8)),       # 3-D
]


@pytest.mark.parametrize("offsets,sizes", CASES)
@pytest.mark.parametrize("method", ["dft", "fft"])
def test_kernel_spectrum_planes_equal_the_fft_of_the_circular_frame(offsets, sizes, method):
    torch.manual_seed(0)
    w = torch.randn(6, *[len(o) for o in offsets], dtype=torch.float64)
    got = kernel_spectrum_planes(w, offsets, sizes, method=method)
    torch.testing.assert_close(got, reference_planes(w, offsets, sizes), rtol=1e-10, atol=1e-10)
    assert got.is_contiguous()


@pytest.mark.parametrize("offsets,sizes", CASES)
def test_kernel_dft_gradcheck(offsets, sizes):
    torch.manual_seed(1)
    w = torch.randn(3, *[len(o) for o in offsets], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: kernel_spectrum_planes(w, offsets, sizes, method="dft"), (w,))


@pytest.mark.parametrize("offsets,sizes", CASES)
@pytest.mark.parametrize("method", ["dft", "fft"])
def test_kernel_spectrum_adjoint_is_the_gradient_of_the_spectrum(offsets, sizes, method):
    from nni_dash.ops.kernel_dft import kernel_spectrum_adjoint
    torch.manual_seed(11)
    w = torch.randn(4, *[len(o) for o in offsets], dtype=torch.float64, requires_grad=True)
    planes = kernel_spectrum_planes(w, offsets, sizes, method=method)
    g = torch.randn_like(planes)
    (ref,) = torch.autograd.grad(planes, w, g)
    got = kernel_spectrum_adjoint(g, offsets, sizes, tuple(w.shape), method=method)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_pick_method_prefers_dft_for_sparse_grids_and_fft_for_long_dense_kernels():
    assert pick_method([range(-30, 31, 3)], (1152,)) == "dft"          # 21 taps over a 1152-point FFT
    assert pick_method([range(-500, 501)], (1536,)) == "fft"           # 1001 dense taps
    assert pick_method([range(-200, 201)], (1152,)) == "fft"           # 401 dense taps: FFT measured faster
    grid = [-15, -7, -3, -2, -1, 0, 1, 2, 3, 7, 15]
    assert pick_method([grid, grid], (64, 64)) == "dft"


def scatter_dense(weight, offsets):
    """The grid kernel written into its dense frame; returns the frame and each axis' left padding."""
    lefts = [-min(0, o[0]) for o in offsets]
    rights = [max(0, o[-1]) for o in offsets]
    spans = [max(left, right) * 2 + 1 for left, right in zip(lefts, rights)]
    dense = weight.new_zeros(*weight.shape[:2], *spans)
    index = torch.meshgrid(*[torch.tensor(o) + s // 2 for o, s in zip(offsets, spans)], indexing="ij")
    dense[(slice(None), slice(None), *index)] = weight
    return dense


@pytest.mark.parametrize("shape,offsets,groups,stride", [
    ((2, 4, 20), ([-7, -2, 0, 1, 9],), 1, 1),
    ((2, 4, 20), ([-7, -2, 0, 1, 9],), 2, 2),
    ((2, 4, 6), ([-9, -5, 0, 4, 8],), 1, 1),              # taps beyond n-1 only meet padding
    ((2, 4, 9), ([-6, -3, 0],), 4, 1),                    # depthwise, causal-like grid
    ((2, 4, 8), ([0, 3, 7],), 1, 1),                      # right-dominated: N = n + right = 15 exactly
    ((1, 4, 7, 9), ([-3, 0, 2], [-4, -1, 0, 5]), 1, 1),
    ((1, 6, 7, 9), ([-3, 0, 2], [-4, -1, 0, 5]), 3, 2),
])
@pytest.mark.parametrize("method", ["dft", "fft"])
def test_spectral_conv_on_a_grid_equals_direct_conv_of_the_dense_kernel(shape, offsets, groups, stride, method):
    torch.manual_seed(2)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, shape[1] // groups, *[len(o) for o in offsets], dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, dtype=torch.float64)
    got = spectral_conv(x, w, offsets, b, stride=stride, groups=groups, method=method)
    ref = direct_conv(x, scatter_dense(w, offsets), b, stride=stride, groups=groups)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    dy = torch.randn_like(ref)
    gx, gw = torch.autograd.grad(got, (x, w), dy)
    rx, rw = torch.autograd.grad(ref, (x, w), dy)
    torch.testing.assert_close(gx, rx, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["dft", "fft"])
def test_spectral_conv_gradcheck(method):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: spectral_conv(x, w, [[-4, 1], [-2, 0, 3]], groups=2, method=method),
                                    (x, w))


CHUNK_CASES = [  # (x shape, offsets, C_out, groups, stride): output channels per group 7, 3, 6, 5
    ((3, 4, 20), ([-7, -2, 0, 1, 9],), 7, 1, 1),
    ((2, 6, 11), ([-5, 0, 4],), 6, 2, 2),
    ((2, 3, 7, 9), ([-3, 0, 2], [-4, -1, 0, 5]), 6, 1, 1),
    ((1, 4, 6, 5), ([-2, 0, 1], [0, 3]), 10, 2, 1),
]


def _per_channel_bytes(x, w, offsets, groups):
    """Spectrum bytes of one output channel of each group, as spectral_conv counts them."""
    from nni_dash.ops import next_fast_len
    sizes = [next_fast_len(n + max(0, -o[0], o[-1])) for n, o in zip(x.shape[2:], offsets)]
    nf = sizes[-1] // 2 + 1
    for n in sizes[:-1]:
        nf *= n
    return 2 * nf * groups * w.shape[1] * w.element_size()


@pytest.mark.parametrize("shape,offsets,c_out,groups,stride", CHUNK_CASES)
@pytest.mark.parametrize("channels_per_chunk", [1, 2, 4])
@pytest.mark.parametrize("method", ["dft", "fft"])
def test_chunked_spectral_conv_equals_the_unchunked_one(shape, offsets, c_out, groups, stride, channels_per_chunk,
                                                        method):
    """Any split of the output channels gives the one-chunk outputs and gradients (float64)."""
    torch.manual_seed(8)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, shape[1] // groups, *[len(o) for o in offsets], dtype=torch.float64, requires_grad=True)
    per = _per_channel_bytes(x, w, offsets, groups)
    whole = spectral_conv(x, w, offsets, stride=stride, groups=groups, method=method, chunk_bytes=per * c_out)
    part = spectral_conv(x, w, offsets, stride=stride, groups=groups, method=method,
                         chunk_bytes=per * channels_per_chunk)
    torch.testing.assert_close(part, whole, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(whole)
    for got, ref in zip(torch.autograd.grad(part, (x, w), dy), torch.autograd.grad(whole, (x, w), dy)):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    ref = direct_conv(x, scatter_dense(w, offsets), stride=stride, groups=groups)  # and both are the convolution
    torch.testing.assert_close(part, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,offsets,c_out,groups,stride", CHUNK_CASES[1:3])
def test_chunked_spectral_conv_gradcheck(shape, offsets, c_out, groups, stride):
    """One output channel per chunk (the most chunks there can be): gradients against finite differences."""
    torch.manual_seed(9)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, shape[1] // groups, *[len(o) for o in offsets], dtype=torch.float64, requires_grad=True)
    per = _per_channel_bytes(x, w, offsets, groups)
    assert torch.autograd.gradcheck(
        lambda x, w: spectral_conv(x, w, offsets, stride=stride, groups=groups, chunk_bytes=per), (x, w))


def test_chunked_spectral_conv_gradient_of_the_kernel_alone():
    """With the input not requiring grad the backward still returns the chunked kernel gradient (and no input one)."""
    torch.manual_seed(10)
    x = torch.randn(2, 3, 12, dtype=torch.float64)
    w = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    offsets = ([-4, 0, 3],)
    y = spectral_conv(x, w, offsets, chunk_bytes=1)
    (gw,) = torch.autograd.grad(y.square().sum(), w)
    ref = direct_conv(x, scatter_dense(w, offsets))
    (rw,) = torch.autograd.grad(ref.square().sum(), w)
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-10)


def test_chunk_channels():
    from nni_dash.ops.fft_conv import chunk_channels
    assert chunk_channels(64, 1000, 16000) == 16
    assert chunk_channels(64, 1000, 10 ** 9) == 64      # never more than there are
    assert chunk_channels(64, 1000, 10) == 1            # never fewer than one


def test_spectral_conv_with_no_visible_tap_gives_the_bias():
    x = torch.randn(2, 3, 4, requires_grad=True)
    w = torch.randn(5, 3, 2, requires_grad=True)
    b = torch.randn(5)
    y = spectral_conv(x, w, [[-9, 7]], b)
    torch.testing.assert_close(y, b[None, :, None].expand(2, 5, 4))
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("shape,w_shape,offsets", [
    ((2, 3, 8, 8), (4, 3, 3, 1), [[-1, 0, 1], [0]]),      # last-axis FFT length == n: nothing cropped there
    ((1, 1, 8), (1, 1, 1), [[0]]),                         # 1-D, N == n
])
def test_spectral_conv_output_takes_in_place_ops(shape, w_shape, offsets):
    """The output is a tensor of its own, never a view of the op's internal buffer."""
    torch.manual_seed(7)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*w_shape, dtype=torch.float64, requires_grad=True)
    y = spectral_conv(x, w, offsets)
    y.relu_().sum().backward()
    ref = direct_conv(x, scatter_dense(w, offsets)).relu()
    rx, rw = torch.autograd.grad(ref.sum(), (x, w))
    torch.testing.assert_close(x.grad, rx)
    torch.testing.assert_close(w.grad, rw)


def test_mixed_conv_trains_after_a_call_under_inference_mode():
    """Index and DFT tensors are cached; one built under inference_mode must still serve autograd later."""
    shapes = [(3, 2, 5), (3, 2, 3)]
    weights = [torch.randn(*s, requires_grad=True) for s in shapes]
    x, probs = torch.randn(2, 2, 37), torch.tensor([0.3, 0.7])
    with torch.inference_mode():
        mixed_conv(x, weights, [5, 9], probs, path="fft")
    mixed_conv(x, weights, [5, 9], probs, path="fft").sum().backward()
    assert all(w.grad is not None for w in weights)


def test_kernel_spectrum_rejects_taps_that_share_a_bin_position():
    with pytest.raises(ValueError, match="distinct residues mod N"):
        kernel_spectrum_planes(torch.ones(1, 2), [[-2, 2]], (4,))
    with pytest.raises(ValueError, match="distinct residues mod N"):
        kernel_spectrum_planes(torch.ones(1, 2), [[0, 5]], (5,))


def test_mixed_conv_rejects_unknown_and_2d_causal_padding():
    w = [torch.randn(2, 2, 3, 3)]
    with pytest.raises(ValueError, match="padding='valid'"):
        mixed_conv(torch.randn(1, 2, 6, 6), w, [1], torch.ones(1), padding="valid")
    with pytest.raises(ValueError, match="padding='causal' for a 2-D input"):
        mixed_conv(torch.randn(1, 2, 6, 6), w, [1], torch.ones(1), padding="causal", path="fft")


@pytest.mark.parametrize("offsets,match", [
    ([[0, 0, 1]], "strictly increasing"),
    ([[1, 0, 2]], "strictly increasing"),
    ([[0, 1]], "expected 3"),
    ([[0, 1, 2], [0, 1, 2]], "one sequence per spatial axis"),
])
def test_spectral_conv_bad_offsets(offsets, match):
    with pytest.raises(ValueError, match=match):
        spectral_conv(torch.randn(1, 2, 8), torch.randn(2, 2, 3), offsets)


@pytest.mark.parametrize("ndim,align,max_half", [(1, "center", None), (1, "center", 4), (2, "center", 8),
                                               (2, "center", 3), (1, "right", None), (1, "right", 3)])
def test_aggregate_on_grid_is_the_dense_aggregate_without_empty_rows(ndim, align, max_half):
    torch.manual_seed(4)
    pairs = [(k, d) for k in (3, 5, 7) for d in (1, 2, 4)]
    weights = [torch.randn(5, 3, *([k] * ndim)) for k, _ in pairs]
    dils = [d for _, d in pairs]
    probs = torch.softmax(torch.randn(len(pairs)), 0)
    dense = aggregate_kernels(weights, dils, probs, align=align, max_half=max_half)
    grid, offsets = aggregate_on_grid(weights, dils, probs, align=align, max_half=max_half)
    size = dense.shape[-1]
    centre = (size - 1) // 2 if align == "center" else size - 1
    pos = torch.tensor(offsets) + centre
    torch.testing.assert_close(dense[(Ellipsis, *torch.meshgrid(*[pos] * ndim, indexing="ij"))], grid)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[pos] = True
    for axis in range(ndim):  # rows/columns off the grid hold no tap
        assert not dense.index_select(2 + axis, torch.nonzero(~mask).flatten()).any()
    assert sorted(offsets) == list(offsets) and len(offsets) < size or size <= 9


@pytest.mark.parametrize("ndim,n,padding", [(1, 40, "same"), (1, 6, "causal"), (2, 10, "same"), (2, 5, "same")])
def test_mixed_conv_paths_equal_the_sum_of_separate_convs(ndim, n, padding):
    torch.manual_seed(5)
    pairs = [(k, d) for k in (3, 5, 9) for d in (1, 3, 7)]
    weights = [torch.randn(4, 6, *([k] * ndim), dtype=torch.float64, requires_grad=True) for k, _ in pairs]
    dils = [d for _, d in pairs]
    probs = torch.softmax(torch.randn(len(pairs), dtype=torch.float64), 0)
    x = torch.randn(2, 6, *([n] * ndim), dtype=torch.float64)
    ref = sum(p * direct_conv(x, w, dilation=d, padding=padding) for p, w, d in zip(probs, weights, dils))
    dy = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, weights, dy)
    for path in ("fft", "direct", "auto"):
        y = mixed_conv(x, weights, dils, probs, padding=padding, path=path)
        torch.testing.assert_close(y, ref, rtol=1e-9, atol=1e-9)
        for g, r in zip(torch.autograd.grad(y, weights, dy), ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)
