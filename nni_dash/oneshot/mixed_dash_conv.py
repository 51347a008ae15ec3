"""``MixedDashConv``: the supernet op that one-shot strategies put in place of a ``DashConv1d/2d``.

It holds **one kernel per (k, d) candidate** (shape ``(C_out, C_in/g, k[, k])``, all stored in one
tensor ``weight``, a :class:`~nni_dash.ops.KernelBank`; ``kernels[i]`` are views) and one shared bias,
and serves every NNI one-shot policy through :class:`~nni.nas.oneshot.pytorch.supermodule.operation.MixedOperation`:

* **differentiable** (``DASH``, ``DARTS``, ``GumbelDARTS``): the policy hands ``{"k7d3": p, ...}``;
  the op builds the aggregated kernel ``sum_i p_i * place(dilate(W_i))`` (cropped to what the input
  can see) and applies it once, by FFT (the kernel kept on its tap grid) or by direct convolution,
  whichever :mod:`nni_dash.ops.dispatch` predicts cheaper (:func:`nni_dash.ops.mixed_conv`);
* **path sampling** (``RandomOneShot``, ``ENAS``): the policy hands one value ``"k7d3"``; the op runs
  a direct convolution with that candidate's kernel.

``freeze(sample)`` returns the plain ``nn.Conv1d``/``nn.Conv2d`` of the chosen candidate carrying its
trained kernel and the bias. With the optional depthwise proxy (equal-channel layers searched with
``groups=C``, as in the DASH reference), the frozen conv is a full conv with fresh weights.

Importing this module registers the op in NNI's ``NATIVE_MIXED_OPERATIONS``, the list NNI's
DARTS/GumbelDARTS/RandomOneShot/ENAS read each time they build a supernet, so stock strategies
handle ``DashConv*`` with no hooks passed.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from nni.nas.oneshot.pytorch.supermodule import operation as _nni_operation
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from nni.nas.oneshot.pytorch.supermodule.operation import MixedOperation
from torch import Tensor

from nni_dash.nn.dash_conv import _DashConvNd, make_conv, parse_candidate
from nni_dash.ops import KernelBank, aggregate_kernels, direct_conv, mixed_conv, receptive_span

__all__ = ["MixedDashConv", "DEPTHWISE_PROXY_KWARG", "register_native_mixed_operation"]

#: ``mutate_kwargs`` key a strategy sets to search equal-channel layers depthwise.
DEPTHWISE_PROXY_KWARG = "dash_depthwise_proxy"
#: ``mutate_kwargs`` key forcing the conv path of the differentiable branch ("auto", "fft", "direct").
CONV_PATH_KWARG = "dash_conv_path"


class MixedDashConv(MixedOperation):
    """Supernet op for :class:`~nni_dash.nn.DashConv1d` / :class:`~nni_dash.nn.DashConv2d` (see module docstring)."""

    bound_type = _DashConvNd
    argument_list = ["kd"]

    def __init__(self, module: _DashConvNd, *, depthwise_proxy: bool = False, conv_path: str = "auto") -> None:
        # MixedOperation.__init__ rebuilds a ParametrizedModule from its trace_kwargs; a DashConv is a
        # MutableModule with one dangling choice, so the bookkeeping is set up here directly.
        BaseSuperNetModule.__init__(self)
        self.mutable_arguments = {"kd": module.choice}
        self.init_arguments: dict[str, Any] = {}
        self.add_mutable(module.choice)
        self.ndim = module.ndim
        self.in_channels, self.out_channels = module.in_channels, module.out_channels
        self.stride, self.padding, self.groups = module.stride, module.padding, module.groups
        self.values: list[str] = list(module.choice.values)
        self.pairs = [parse_candidate(v) for v in self.values]
        equal = module.in_channels == module.out_channels and module.groups == 1
        self.search_groups = module.in_channels if (depthwise_proxy and equal) else module.groups
        self.conv_path = conv_path

        base: nn.Module = module.conv
        c_per_group = self.in_channels // self.search_groups
        kernels = []
        for k, d in self.pairs:
            w = torch.empty(self.out_channels, c_per_group, *([k] * self.ndim))
            if self.search_groups == module.groups and base.kernel_size == (k,) * self.ndim \
                    and base.dilation == (d,) * self.ndim:
                w.copy_(base.weight.detach())  # keep the layer's existing kernel (e.g. a dashified pretrained conv)
            else:
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.ConvNd's default init, per candidate
            kernels.append(w)
        # one tensor for all candidates (a KernelBank): aggregation and the optimiser touch it once per step
        self.weight = nn.Parameter(KernelBank.stack(kernels).flat)
        self.bias = nn.Parameter(base.bias.detach().clone()) if base.bias is not None else None
        self.register_buffer("spans", torch.tensor([receptive_span(k, d) for k, d in self.pairs], dtype=torch.float32),
                             persistent=False)

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]):
        """NNI mutation hook: claim ``DashConv*`` modules, leave everything else to other hooks."""
        if not isinstance(module, _DashConvNd):
            return None
        if "mixed_op_sampling" not in mutate_kwargs:
            raise ValueError("MixedDashConv needs a sampling policy ('mixed_op_sampling' in mutate_kwargs); "
                             "use it through an NNI one-shot strategy")
        mixed = cls(module, depthwise_proxy=bool(mutate_kwargs.get(DEPTHWISE_PROXY_KWARG, False)),
                    conv_path=str(mutate_kwargs.get(CONV_PATH_KWARG, "auto")))
        mixed.sampling_policy = mutate_kwargs["mixed_op_sampling"](mixed, memo, mutate_kwargs)
        return mixed

    # ---- forward -------------------------------------------------------------------------------
    def forward_argument(self, name: str) -> Any:
        return self.sampling_policy.forward_argument(self, name)

    @property
    def bank(self) -> KernelBank:
        """The candidates' kernels as a :class:`~nni_dash.ops.KernelBank` over :attr:`weight`."""
        return KernelBank(self.weight, [k for k, _ in self.pairs], self.ndim)

    @property
    def kernels(self) -> list[Tensor]:
        """Candidate ``i``'s kernel ``(C_out, C_in/g, *[k_i]*N)``: a view of :attr:`weight`."""
        return self.bank.kernels()

    def aggregated_kernel(self, probs: Tensor, spatial: tuple[int, ...] | None = None) -> Tensor:
        """Mixed kernel ``sum_i probs[i] * place(dilate(W_i))``; cropped to an input of size ``spatial``."""
        max_half = max(spatial) - 1 if spatial is not None else None
        return aggregate_kernels(self.bank, [d for _, d in self.pairs], probs,
                                 align="right" if self.padding == "causal" else "center", max_half=max_half)

    def probs_vector(self, kd: dict[str, Any]) -> Tensor:
        """Order a ``{value: prob}`` dict from the policy as a vector over ``self.values``."""
        ref = self.weight
        return torch.stack([torch.as_tensor(kd.get(v, 0.0), dtype=ref.dtype, device=ref.device) for v in self.values])

    def forward_with_args(self, kd: Any, x: Tensor) -> Tensor:
        if x.dim() != self.ndim + 2:
            raise ValueError(f"MixedDashConv{self.ndim}d: expected a {self.ndim + 2}-D input, got shape {tuple(x.shape)}")
        if isinstance(kd, dict):  # differentiable policy: a distribution over candidates
            return mixed_conv(x, self.bank, [d for _, d in self.pairs], self.probs_vector(kd), self.bias,
                              stride=self.stride, groups=self.search_groups, padding=self.padding, path=self.conv_path)
        index = self.values.index(kd)  # path sampling: one candidate
        return direct_conv(x, self.bank.kernel(index), self.bias, stride=self.stride, dilation=self.pairs[index][1],
                           groups=self.search_groups, padding=self.padding)

    # ---- export ------------------------------------------------------------------------------
    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        """softmax(alpha) per label for differentiable policies (noise-free even under Gumbel-softmax)."""
        alphas = getattr(self, "_arch_alpha", None)
        if alphas is None:
            return self.sampling_policy.export_probs(self, memo)
        label = self.mutable_arguments["kd"].label
        if label in memo:
            return {}
        probs = torch.softmax(alphas[label].detach(), -1).cpu().tolist()
        return {label: dict(zip(self.values, probs))}

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        """Plain conv of the sampled candidate, carrying its trained kernel and the bias."""
        value = self.mutable_arguments["kd"].freeze(sample)
        index = self.values.index(value)
        k, d = self.pairs[index]
        frozen = make_conv(self.ndim, self.in_channels, self.out_channels, kernel_size=k, dilation=d, stride=self.stride,
                           groups=self.groups, bias=self.bias is not None, padding=self.padding)
        with torch.no_grad():
            if self.search_groups == self.groups:
                frozen.weight.copy_(self.bank.kernel(index))
            if self.bias is not None:
                frozen.bias.copy_(self.bias)
        return frozen.to(self.weight.device)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, candidates={self.values}, stride={self.stride}, "
                f"groups={self.search_groups}, padding={self.padding!r}")


def register_native_mixed_operation() -> None:
    """Add :class:`MixedDashConv` to NNI's ``NATIVE_MIXED_OPERATIONS`` (idempotent)."""
    if MixedDashConv not in _nni_operation.NATIVE_MIXED_OPERATIONS:
        _nni_operation.NATIVE_MIXED_OPERATIONS.append(MixedDashConv)
