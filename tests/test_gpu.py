"""On a CUDA device: the FFT ops and the mixed-kernel supernet equal their CPU results; a run trains there.

Skipped where there is no CUDA device (CI has none). Where there is one: ``python -m pytest -m gpu``.
Exactness is checked in float64, so cuDNN's TF32 and cuFFT's float32 rounding do not blur a wrong
index or a missing term.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.oneshot.pytorch.supermodule.differentiable import MixedOpDifferentiablePolicy

from nni_dash.backbones import rebuild
from nni_dash.cli import main
from nni_dash.config import ExperimentConfig
from nni_dash.nn import DashConv1d, DashConv2d
from nni_dash.oneshot import MixedDashConv
from nni_dash.ops import fft_conv

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
CONV = {1: F.conv1d, 2: F.conv2d}


@pytest.mark.parametrize("ndim,n,k,d,stride,groups", [(1, 301, 7, 3, 1, 1), (1, 64, 5, 15, 2, 4),
                                                      (2, 28, 5, 2, 1, 1), (2, 17, 7, 3, 2, 8)])
def test_fft_conv_on_cuda_equals_torch_conv_on_cpu_with_gradients(ndim, n, k, d, stride, groups):
    torch.manual_seed(0)
    x = torch.randn(3, 8, *([n] * ndim), dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, 8 // groups, *([k] * ndim), dtype=torch.float64, requires_grad=True)
    b = torch.randn(16, dtype=torch.float64, requires_grad=True)
    ref = CONV[ndim](x, w, b, stride=stride, padding=d * (k - 1) // 2, dilation=d, groups=groups)
    dy = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dy)
    xc, wc, bc = (t.detach().to(CUDA).requires_grad_() for t in (x, w, b))
    out = fft_conv(xc, wc, bc, stride=stride, dilation=d, groups=groups)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-9)
    for got, want in zip(torch.autograd.grad(out, (xc, wc, bc), dy.to(CUDA)), ref_grads):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)


class _Space(ModelSpace):
    def __init__(self, ndim: int):
        super().__init__()
        conv = DashConv1d if ndim == 1 else DashConv2d
        self.a = conv(3, 8, kernel_sizes=(3, 5, 7), dilations=(1, 2, 4), label="a")
        self.b = conv(8, 8, kernel_sizes=(3, 5, 7), dilations=(1, 2, 4), stride=2, groups=8, label="b")

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _supernet(ndim: int, path: str) -> nn.Module:
    space, memo = _Space(ndim), {}
    for label, mutable in space.simplify().items():
        memo[label] = nn.Parameter(torch.randn(len(mutable.values)))
    kwargs = {"mixed_op_sampling": MixedOpDifferentiablePolicy, "softmax": nn.Softmax(-1), "dash_conv_path": path}
    for name in ("a", "b"):
        setattr(space, name, MixedDashConv.mutate(getattr(space, name), name, memo, kwargs))
    return space.double()


@pytest.mark.parametrize("ndim,shape", [(1, (4, 3, 200)), (2, (4, 3, 24, 20))])
@pytest.mark.parametrize("path", ["fft", "direct", "auto"])
def test_mixed_dash_conv_on_cuda_equals_cpu_forward_and_every_gradient(ndim, shape, path):
    torch.manual_seed(1)
    cpu = _supernet(ndim, path)
    gpu = copy.deepcopy(cpu).to(CUDA)  # the deep copy carries its own alpha parameters
    x = torch.randn(*shape, dtype=torch.float64)
    out = cpu(x)
    out_gpu = gpu(x.to(CUDA))
    torch.testing.assert_close(out_gpu.cpu(), out, rtol=1e-9, atol=1e-9)
    dy = torch.randn_like(out)
    out.backward(dy)
    out_gpu.backward(dy.to(CUDA))
    named_gpu = dict(gpu.named_parameters())
    assert {n for n, _ in cpu.named_parameters()} == set(named_gpu)
    for name, param in cpu.named_parameters():
        assert param.grad is not None and named_gpu[name].grad is not None, name
        torch.testing.assert_close(named_gpu[name].grad.cpu(), param.grad, rtol=1e-8, atol=1e-10, msg=name)
    alphas = {n: p for n, p in named_gpu.items() if "_arch_alpha" in n}
    assert alphas and all(p.grad.abs().sum() > 0 for p in alphas.values())  # alpha learns on the GPU too


def _write_npz(folder, ndim: int):
    rng = np.random.default_rng(0)
    n = 90
    y = np.arange(n) % 3
    if ndim == 1:
        t = np.arange(48)
        x = np.sin(2 * np.pi * (2 + 3 * y[:, None]) * t / 48) + 0.3 * rng.standard_normal((n, 48))
        x = np.stack([x, 1000 + 50 * rng.standard_normal((n, 48))], axis=1)
    else:
        x = rng.standard_normal((n, 12, 12))
        for c in range(3):
            x[y == c, 4 * c:4 * c + 4] += 2.0
        x = 10 * x + 5
    x = x.astype(np.float32)
    path = folder / f"data{ndim}d.npz"
    np.savez(path, x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    cfg = folder / f"data{ndim}d.yml"
    cfg.write_text(f"task: {{name: npz, options: {{path: {path}, kind: classification}}}}\n")
    return cfg, x[60:]


@pytest.mark.slow
@pytest.mark.parametrize("ndim", [1, 2])
def test_data_only_run_trains_on_the_gpu_and_its_model_takes_raw_data_there(ndim, tmp_path):
    cfg, x_test = _write_npz(tmp_path, ndim)
    out = tmp_path / "run"
    code = main(["run", str(cfg), "--out", str(out), "--budget", "0.5m", "--set", "trainer.accelerator=gpu",
                 "--set", "trainer.progress_bar=false"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_score"] <= 1.0 and metrics["stages"]["search"]["steps"] > 0
    state = torch.load(out / "retrain" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert {t.device.type for t in state.values()} == {"cuda"}  # the retrain's weights lived on the GPU
    resolved = ExperimentConfig.from_yaml(out / "config.yml")
    net = rebuild(resolved.backbone.name, json.loads((out / "architecture.json").read_text()),
                  in_channels=2 if ndim == 1 else 1, num_outputs=3, **resolved.backbone.args)
    net.load_state_dict({k.removeprefix("_model."): v for k, v in state.items() if k.startswith("_model.")})
    net.eval()
    raw = torch.from_numpy(x_test if ndim == 1 else x_test[:, None])
    with torch.no_grad():
        on_gpu = net.to(CUDA)(raw.to(CUDA)).cpu()
        on_cpu = net.cpu()(raw)
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)  # TF32 convs on the GPU
