"""DashConv mutables and the MixedDashConv supernet op."""
import pytest
import torch
import torch.nn as nn
from nni.mutable import Categorical
from nni.nas.nn.pytorch import ModelSpace, model_context
from nni.nas.oneshot.pytorch.supermodule.differentiable import MixedOpDifferentiablePolicy
from nni.nas.oneshot.pytorch.supermodule.sampling import MixedOpPathSamplingPolicy

import nni_dash  # noqa: F401  (registers the op)
from nni_dash.nn import CausalConv1d, DashConv1d, DashConv2d, parse_candidate
from nni_dash.ops import direct_conv
from nni_dash.oneshot import MixedDashConv


class Space1d(ModelSpace):
    def __init__(self, padding="same"):
        super().__init__()
        self.a = DashConv1d(3, 6, kernel_sizes=(3, 5), dilations=(1, 2, 4), padding=padding, label="a")
        self.b = DashConv1d(6, 6, kernel_sizes=(3, 5), dilations=(1, 2, 4), stride=2, padding=padding, label="b")
        self.tied = DashConv1d(6, 6, kernel_sizes=(3, 5), dilations=(1, 2, 4), padding=padding, label="b")

    def forward(self, x):
        return self.tied(self.b(self.a(x)))


class Space2d(ModelSpace):
    def __init__(self):
        super().__init__()
        self.a = DashConv2d(2, 4, kernel_sizes=(3, 5, 7), dilations=(1, 3), label="a")
        self.dw = DashConv2d(4, 4, kernel_sizes=(3, 5, 7), dilations=(1, 3), groups=4, bias=False, label="dw")

    def forward(self, x):
        return self.dw(self.a(x))


def differentiable_supernet(space, memo=None, softmax=None, **extra):
    memo = memo if memo is not None else {}
    for label, mutable in space.simplify().items():
        memo.setdefault(label, nn.Parameter(torch.randn(len(mutable.values)) * 1e-3))
    kwargs = {"mixed_op_sampling": MixedOpDifferentiablePolicy, "softmax": softmax or nn.Softmax(-1), **extra}
    for name, module in list(space.named_modules()):
        if isinstance(module, (DashConv1d, DashConv2d)):
            parent = space.get_submodule(name.rsplit(".", 1)[0]) if "." in name else space
            setattr(parent, name.rsplit(".", 1)[-1], MixedDashConv.mutate(module, name, memo, kwargs))
    return space, memo


def test_layer_declares_one_categorical_with_string_values():
    space = Space1d()
    spec = space.simplify()
    assert set(spec) == {"a", "b"}  # the tied layer shares "b"
    assert isinstance(spec["a"], Categorical)
    assert list(spec["a"].values) == ["k3d1", "k3d2", "k3d4", "k5d1", "k5d2", "k5d4"]
    assert parse_candidate("k11d7") == (11, 7)


def test_default_forward_is_the_default_candidate_conv():
    space = Space1d()
    assert isinstance(space.a.conv, nn.Conv1d) and space.a.conv.kernel_size == (3,) and space.a.conv.dilation == (1,)
    x = torch.randn(2, 3, 17)
    torch.testing.assert_close(space.a(x), space.a.conv(x))
    assert space(x).shape == (2, 6, 9)


@pytest.mark.parametrize("padding", ["same", "causal"])
def test_freeze_and_model_context_give_plain_convs(padding):
    space = Space1d(padding=padding)
    sample = {"a": "k5d4", "b": "k3d2"}
    frozen = space.freeze(sample)
    for name, (k, d, stride) in {"a": (5, 4, 1), "b": (3, 2, 2), "tied": (3, 2, 1)}.items():
        conv = getattr(frozen, name)
        assert type(conv) in (nn.Conv1d, CausalConv1d) and isinstance(conv, nn.Conv1d)
        assert conv.kernel_size == (k,) and conv.dilation == (d,) and conv.stride == (stride,)
        x = torch.randn(2, conv.in_channels, 20)
        ref = direct_conv(x, conv.weight, conv.bias, stride=stride, dilation=d, padding=padding)
        torch.testing.assert_close(conv(x), ref)
    with model_context(sample):
        fixed = Space1d(padding=padding)
    assert isinstance(fixed.a, nn.Conv1d) and fixed.a.kernel_size == (5,) and fixed.a.dilation == (4,)


def test_freeze_2d_padding_and_groups():
    frozen = Space2d().freeze({"a": "k7d3", "dw": "k3d3"})
    assert type(frozen.a) is nn.Conv2d and frozen.a.kernel_size == (7, 7) and frozen.a.padding == (9, 9)
    assert frozen.dw.groups == 4 and frozen.dw.bias is None and frozen.dw.padding == (3, 3)
    assert frozen(torch.randn(1, 2, 11, 13)).shape == (1, 4, 11, 13)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_sizes=(3, 4)), r"kernel_sizes=\[3, 4\]: kernel size 4 is even; allowed: odd positive integers"),
    (dict(kernel_sizes=(0, 3)), r"kernel_sizes=\[0, 3\]: 0 is not allowed; allowed: odd positive integers"),
    (dict(dilations=(1, -2)), r"dilations=\[1, -2\]: -2 is not allowed; allowed: positive integers"),
    (dict(kernel_sizes=()), r"kernel_sizes=\[\]: empty candidate list"),
    (dict(dilations=(1, 1)), r"dilations=\[1, 1\]: duplicate values"),
    (dict(groups=4), "divisible by groups"),
    (dict(padding="valid"), "padding='valid'"),
    (dict(stride=0), "stride=0"),
])
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DashConv1d(6, 6, label="x", **kwargs)


def test_causal_padding_is_1d_only_and_input_rank_is_checked():
    with pytest.raises(ValueError, match="1-D"):
        DashConv2d(2, 2, padding="causal", label="c")
    with pytest.raises(ValueError, match="expected input"):
        DashConv1d(2, 2, label="c")(torch.randn(1, 2, 5, 5))


@pytest.mark.parametrize("space_fn,shape", [(Space1d, (2, 3, 23)), (lambda: Space1d("causal"), (2, 3, 6)),
                                            (Space2d, (2, 2, 9, 10))])
def test_one_hot_probs_equal_frozen_conv(space_fn, shape):
    torch.manual_seed(0)
    space, memo = differentiable_supernet(space_fn())
    x = torch.randn(*shape)
    for label, alpha in memo.items():
        if label.startswith("_"):
            continue
        with torch.no_grad():
            alpha.fill_(-1e4)
            alpha[len(alpha) - 1 - hash(label) % 3] = 1e4  # one-hot after softmax
    sample = {label: space.simplify()[label].values[int(alpha.argmax())] for label, alpha in memo.items()}
    frozen = space.freeze(sample)
    torch.testing.assert_close(space(x), frozen(x), rtol=1e-5, atol=1e-5)
    for module in frozen.modules():
        assert not isinstance(module, (MixedDashConv, DashConv1d, DashConv2d))


@pytest.mark.parametrize("path", ["auto", "fft", "direct"])
def test_random_probs_equal_sum_of_separate_convs(path):
    torch.manual_seed(1)
    space, memo = differentiable_supernet(Space2d(), dash_conv_path=path)
    op = space.a
    with torch.no_grad():
        memo["a"].copy_(torch.randn(6))
    x = torch.randn(2, 2, 12, 12)
    probs = torch.softmax(memo["a"], -1)
    ref = sum(p * direct_conv(x, w, op.bias, dilation=d) for p, w, (_, d) in zip(probs, op.kernels, op.pairs))
    torch.testing.assert_close(op(x), ref, rtol=1e-5, atol=1e-5)


def test_every_parameter_gets_a_gradient():
    space, memo = differentiable_supernet(Space1d())
    space(torch.randn(2, 3, 16)).square().sum().backward()
    for name, param in space.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert memo["b"].grad is not None and memo["b"].grad.abs().sum() > 0


def test_freeze_preserves_trained_weights_and_shares_alpha():
    space, memo = differentiable_supernet(Space1d())
    assert space.b._arch_alpha["b"] is space.tied._arch_alpha["b"]  # one alpha per label
    with torch.no_grad():
        space.a.kernels[4].normal_()
    frozen = space.freeze({"a": "k5d2", "b": "k3d1"})
    torch.testing.assert_close(frozen.a.weight, space.a.kernels[4])
    torch.testing.assert_close(frozen.a.bias, space.a.bias)
    assert space.a.export({}) == {"a": space.a.values[int(memo["a"].argmax())]}
    probs = space.a.export_probs({})["a"]
    assert abs(sum(probs.values()) - 1) < 1e-6 and list(probs) == space.a.values


def test_depthwise_proxy_searches_depthwise_and_freezes_full():
    space, _ = differentiable_supernet(Space1d(), dash_depthwise_proxy=True)
    assert space.a.search_groups == 1 and space.b.search_groups == 6  # 3->6 stays full, 6->6 depthwise
    assert space.b.kernels[0].shape == (6, 1, 3)
    assert space(torch.randn(2, 3, 16)).shape == (2, 6, 8)
    frozen = space.freeze({"a": "k3d1", "b": "k5d4"})
    assert frozen.b.groups == 1 and frozen.b.weight.shape == (6, 6, 5)


def test_path_sampling_branch_runs_the_sampled_candidate():
    space = Space1d()
    memo = {}
    kwargs = {"mixed_op_sampling": MixedOpPathSamplingPolicy}
    op = MixedDashConv.mutate(space.a, "a", memo, kwargs)
    op.resample({"a": "k5d2"})
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(op(x), direct_conv(x, op.kernels[4], op.bias, dilation=2))
    assert MixedDashConv.mutate(nn.Conv1d(2, 2, 3), "c", {}, kwargs) is None  # other modules are left alone


def test_dashified_default_candidate_keeps_existing_kernel():
    layer = DashConv1d(3, 4, kernel_sizes=(3, 5), dilations=(1, 2), label="z")
    memo = {"z": nn.Parameter(torch.zeros(4))}
    op = MixedDashConv.mutate(layer, "z", memo, {"mixed_op_sampling": MixedOpDifferentiablePolicy})
    torch.testing.assert_close(op.kernels[0], layer.conv.weight)
    torch.testing.assert_close(op.bias, layer.conv.bias)
