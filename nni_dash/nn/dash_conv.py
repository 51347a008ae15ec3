"""``DashConv1d`` / ``DashConv2d``: NNI mutable convolutions over (kernel size, dilation) pairs.

One layer declares **one** NNI categorical choice over the pairs ``K x D``, with string values
``"k{k}d{d}"`` (flattened k outer, d inner, as in DASH), so one architecture vector alpha spans the
joint grid. Layers that share a ``label`` share the decision (and, under one-shot strategies, alpha).

* Outside a search the layer is an ordinary convolution with the *default* candidate (``default``,
  or else the first pair, i.e. the smallest k and d) and "same" or causal padding.
* ``freeze(sample)`` and NNI's ``model_context(sample)`` give a plain ``nn.Conv1d``/``nn.Conv2d``
  with the chosen k, d and padding (``CausalConv1d``, an ``nn.Conv1d`` subclass, for causal).
* Under a one-shot strategy the layer is replaced by
  :class:`nni_dash.oneshot.MixedDashConv` (one weight per pair, FFT mixed-kernel convolution).

Padding: ``"same"`` pads ``d*(k-1)//2`` on both sides (k odd), so the output has ``ceil(n/stride)``
positions; ``"causal"`` (1-D) pads ``d*(k-1)`` on the left only.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Sequence

import nni
import torch.nn as nn
import torch.nn.functional as F
from nni.mutable import Categorical, ensure_frozen, frozen_context
from nni.nas.space import current_model
from nni.nas.nn.pytorch import MutableModule
from torch import Tensor

from nni_dash.config._checks import check_candidate_list

__all__ = [
    "DashConv1d", "DashConv2d", "CausalConv1d", "format_candidate", "parse_candidate", "candidate_grid",
    "make_conv",
]

_CANDIDATE = re.compile(r"^k(\d+)d(\d+)$")


def format_candidate(kernel_size: int, dilation: int) -> str:
    """``(7, 3) -> "k7d3"`` (the choice value NNI stores; strings survive JSON)."""
    return f"k{kernel_size}d{dilation}"


def parse_candidate(value: str) -> tuple[int, int]:
    """``"k7d3" -> (7, 3)``; ``ValueError`` for anything else."""
    match = _CANDIDATE.match(str(value))
    if not match:
        raise ValueError(f"candidate {value!r}: expected a string like 'k7d3' (kernel size 7, dilation 3)")
    return int(match.group(1)), int(match.group(2))


def candidate_grid(kernel_sizes: Sequence[int], dilations: Sequence[int]) -> list[str]:
    """All pairs as choice values, k outer and d inner (index = i_k*|D| + i_d)."""
    ks = check_candidate_list("kernel_sizes", kernel_sizes, odd=True)  # ConfigError is a ValueError
    ds = check_candidate_list("dilations", dilations, odd=False)
    return [format_candidate(k, d) for k in ks for d in ds]


def _make_choice(label: str | None, candidates: list[str], default: str | None) -> Categorical:
    if default is None:
        return Categorical(candidates, label=label)
    return Categorical(candidates, default=default, label=label)


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose zero padding is ``dilation*(kernel_size-1)`` on the left only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.dilation[0] * (self.kernel_size[0] - 1), 0)))


def make_conv(ndim: int, in_channels: int, out_channels: int, *, kernel_size: int, dilation: int, stride: int = 1,
              groups: int = 1, bias: bool = True, padding: str = "same") -> nn.Module:
    """The plain convolution a DASH layer freezes to (``nn.Conv1d``/``nn.Conv2d``/``CausalConv1d``)."""
    if padding == "causal":
        if ndim != 1:
            raise ValueError("padding='causal' is only defined for 1-D convolutions (DashConv1d)")
        return CausalConv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                            groups=groups, bias=bias)
    conv_cls = nn.Conv1d if ndim == 1 else nn.Conv2d
    return conv_cls(in_channels, out_channels, kernel_size, stride=stride, padding=dilation * (kernel_size - 1) // 2,
                    dilation=dilation, groups=groups, bias=bias)


class _DashConvNd(MutableModule):
    """Shared implementation of :class:`DashConv1d` and :class:`DashConv2d`."""

    ndim: int = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 dilations: Sequence[int] = (1, 3, 7, 15), stride: int = 1, groups: int = 1, bias: bool = True,
                 padding: str = "same", label: str | None = None, default: str | None = None) -> None:
        super().__init__()
        options = self._validate(in_channels, out_channels, kernel_sizes, dilations, stride, groups, padding, self.ndim,
                                 default)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_sizes, self.dilations = options["kernel_sizes"], options["dilations"]
        self.stride, self.groups, self.bias, self.padding = stride, groups, bias, padding
        # A layer built outside a ModelSpace gets its own dry-run context (as ModelSpace.__init__ provides).
        context = frozen_context() if frozen_context.current() is None and current_model() is None \
            else contextlib.nullcontext()
        with context:
            self.choice: Categorical = self.add_mutable(_make_choice(label, options["candidates"], default))
            k, d = parse_candidate(ensure_frozen(self.choice))
        self.conv = make_conv(self.ndim, in_channels, out_channels, kernel_size=k, dilation=d, stride=stride,
                              groups=groups, bias=bias, padding=padding)

    @staticmethod
    def _validate(in_channels: int, out_channels: int, kernel_sizes: Sequence[int], dilations: Sequence[int],
                  stride: int, groups: int, padding: str, ndim: int, default: str | None = None) -> dict[str, Any]:
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("stride", stride),
                            ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a positive int")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups}: in_channels={in_channels} and out_channels={out_channels} "
                             "must both be divisible by groups")
        if padding not in ("same", "causal"):
            raise ValueError(f"padding={padding!r}: allowed values are 'same', 'causal'")
        if padding == "causal" and ndim != 1:
            raise ValueError("padding='causal' is only defined for 1-D convolutions (DashConv1d)")
        candidates = candidate_grid(kernel_sizes, dilations)
        if default is not None and default not in candidates:
            raise ValueError(f"default={default!r}: not a candidate; allowed: {', '.join(candidates)}")
        return {"kernel_sizes": tuple(kernel_sizes) if not isinstance(kernel_sizes, int) else (kernel_sizes,),
                "dilations": tuple(dilations) if not isinstance(dilations, int) else (dilations,),
                "candidates": candidates}

    @property
    def label(self) -> str:
        return self.choice.label

    def candidates(self) -> list[tuple[int, int]]:
        """The (k, d) pairs in choice order."""
        return [parse_candidate(v) for v in self.choice.values]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.ndim + 2:
            raise ValueError(f"{type(self).__name__}: expected input (B, C, {'L' if self.ndim == 1 else 'H, W'}), "
                             f"got shape {tuple(x.shape)}")
        return self.conv(x)

    def _frozen_kwargs(self, sample: dict[str, Any]) -> dict[str, Any]:
        k, d = parse_candidate(self.choice.freeze(sample))
        return dict(kernel_size=k, dilation=d, stride=self.stride, groups=self.groups, bias=self.bias,
                    padding=self.padding)

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        """A new plain convolution with the sampled (k, d) and fresh weights."""
        return make_conv(self.ndim, self.in_channels, self.out_channels, **self._frozen_kwargs(sample))

    @classmethod
    def create_fixed_module(cls, sample: dict[str, Any], in_channels: int, out_channels: int,
                            kernel_sizes: Sequence[int] = (3, 5, 7, 9), dilations: Sequence[int] = (1, 3, 7, 15),
                            stride: int = 1, groups: int = 1, bias: bool = True, padding: str = "same",
                            label: str | None = None, default: str | None = None) -> nn.Module:
        """Under ``model_context(sample)``, constructing the layer yields the frozen plain conv."""
        options = cls._validate(in_channels, out_channels, kernel_sizes, dilations, stride, groups, padding, cls.ndim,
                                default)
        choice = _make_choice(label, options["candidates"], default)  # same label bookkeeping as __init__
        k, d = parse_candidate(choice.freeze(sample))
        return make_conv(cls.ndim, in_channels, out_channels, kernel_size=k, dilation=d, stride=stride, groups=groups,
                         bias=bias, padding=padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, dilations={self.dilations}, "
                f"stride={self.stride}, groups={self.groups}, padding={self.padding!r}, label={self.label!r}")


class DashConv1d(_DashConvNd):
    """1-D DASH convolution; see the module docstring. Input ``(B, C_in, L)``."""

    ndim = 1


class DashConv2d(_DashConvNd):
    """2-D DASH convolution (square k x k kernels, same dilation on both axes). Input ``(B, C_in, H, W)``."""

    ndim = 2
