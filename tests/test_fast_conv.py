"""Plain CNNs trained through the FFT path: same numbers as nn.Conv1d/2d, same state dicts, plain export."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nni_dash.nn import CausalConv1d, FFTConv1d, FFTConv2d, use_fft_convs, use_plain_convs
from nni_dash.nn.fast_conv import conv_padding_mode


def _pair(conv: nn.Module, x: torch.Tensor, path: str):
    """Outputs and gradients of ``conv`` as is and switched to the FFT class forced onto ``path``."""
    import copy
    fast = copy.deepcopy(conv)
    assert use_fft_convs(fast, ndims=(1, 2)) == 1
    fast._fft_paths = {tuple(x.shape): path}
    outs = []
    for module in (conv, fast):
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        outs.append((y.detach(), xi.grad, module.weight.grad, module.bias.grad))
    return outs


CASES = [
    ("1d same", lambda: nn.Conv1d(3, 5, 9, padding=4 * 7, dilation=7), (2, 3, 120)),
    ("1d strided", lambda: nn.Conv1d(3, 4, 5, padding=2 * 3, dilation=3, stride=2), (2, 3, 61)),
    ("1d grouped", lambda: nn.Conv1d(4, 6, 7, padding=3, groups=2), (2, 4, 50)),
    ("1d causal", lambda: CausalConv1d(3, 4, 5, dilation=4), (2, 3, 70)),
    ("2d same", lambda: nn.Conv2d(2, 3, 5, padding=2 * 3, dilation=3), (2, 2, 24, 20)),
    ("2d padding='same'", lambda: nn.Conv2d(2, 3, 3, padding="same", dilation=2), (1, 2, 16, 16)),
]


@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_fft_path_equals_the_plain_conv_in_float64(name, make, shape):
    torch.manual_seed(0)
    conv = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    (y0, gx0, gw0, gb0), (y1, gx1, gw1, gb1) = _pair(conv, x, "fft")
    for a, b in ((y0, y1), (gx0, gx1), (gw0, gw1), (gb0, gb1)):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-10, rtol=1e-9)


def test_ineligible_convs_are_left_alone():
    model = nn.Sequential(nn.Conv1d(2, 2, 3, padding=0), nn.Conv1d(2, 2, 4, padding=2),
                          nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular"), nn.Conv1d(2, 2, 3, padding=1))
    assert [conv_padding_mode(m) for m in model] == [None, None, None, "same"]
    assert use_fft_convs(model) == 1 and [type(m) for m in model][-1] is FFTConv1d
    assert [type(m) for m in model][:3] == [nn.Conv1d] * 3


def test_a_checkpoint_trained_on_the_fft_path_loads_into_the_plain_network(tmp_path):
    torch.manual_seed(0)

    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 7, padding=3 * 5, dilation=5), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = net()
    assert use_fft_convs(model) == 0  # 2-D is opt-in (DEFAULT_NDIMS)
    assert use_fft_convs(model, ndims=(1, 2)) == 2
    for conv in (model[0], model[2]):
        conv._fft_paths = {}  # decided per shape below: force FFT for the first conv
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 2, (8,))
    model[0]._fft_paths[tuple(x.shape)] = "fft"
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    expected = model(x).detach()
    plain = net()
    plain.load_state_dict(torch.load(tmp_path / "ckpt.pt"))
    assert all(type(m) in (nn.Conv2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten) for m in plain)
    assert torch.allclose(plain(x), expected, atol=1e-5)
    assert use_plain_convs(model) == 2 and type(model[0]) is nn.Conv2d and type(model[2]) is nn.Conv2d
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_the_cost_model_picks_fft_for_long_dilated_kernels_and_direct_for_3x3():
    big = nn.Conv1d(32, 32, 19, padding=9 * 15, dilation=15)
    small = nn.Conv2d(16, 16, 3, padding=1)
    use_fft_convs(big), use_fft_convs(small, ndims=(2,))
    assert big._pick(torch.empty(32, 32, 2000)) == "fft"
    assert small._pick(torch.empty(16, 16, 32, 32)) == "direct"
    assert isinstance(big, FFTConv1d) and isinstance(small, FFTConv2d)
