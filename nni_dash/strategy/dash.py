"""The ``DASH`` one-shot strategy (Shen, Khodak, Talwalkar, NeurIPS 2022, arXiv 2204.07554).

Used exactly like NNI's own one-shot strategies::

    exp = NasExperiment(model_space, evaluator, DASH())
    exp.run()
    exp.export_top_models(formatter="dict")   # [{"layer1": "k7d3", ...}]

It is NNI's :class:`~nni.nas.strategy.DARTS` with DASH's choices: a Gumbel-softmax mixture
(temperature 1 by default), SGD-Nesterov on alpha with DASH's gradient normalisation and
receptive-field penalty, gradient clipping, a shared step LR schedule, optional partial epochs and
the optional depthwise proxy. The evaluator's module defines the loss and the weight optimiser
(reference: SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1 for classification).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from nni.nas.oneshot.pytorch.strategy import DARTS
from nni.nas.oneshot.pytorch.supermodule.differentiable import GumbelSoftmax

from nni_dash.errors import ConfigError
from nni_dash.nn.dash_conv import parse_candidate
from nni_dash.oneshot.mixed_dash_conv import CONV_PATH_KWARG, DEPTHWISE_PROXY_KWARG, MixedDashConv
from nni_dash.ops import receptive_span
from nni_dash.strategy.lightning_module import DashLightningModule

__all__ = ["DASH", "MODES"]

MODES = ("bilevel", "joint")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        raise ConfigError(f"{name}={value!r}: must be a {'non-negative' if allow_zero else 'positive'} number")
    return float(value)


class DASH(DARTS):
    """DASH search over kernel size x dilation of every ``DashConv1d/2d`` of a model space.

    Parameters
    ----------
    mode
        ``"bilevel"`` (alpha on held-out batches, weights on training batches, first-order) or
        ``"joint"`` (both on the same training batch, as the reference code).
    arc_learning_rate
        Learning rate of the alpha optimiser: 0.01 with Adam (default); the reference uses 0.05 with SGD
        (5e-3 on dense tasks).
    arc_optimizer
        ``"adam"`` (default; NNI DARTS' betas (0.5, 0.999)) or ``"sgd"`` (Nesterov, the reference). The
        reference's normalised SGD step moves alpha by about ``arc_learning_rate / grad_scale`` per step,
        which leaves alpha near uniform after the few thousand steps a CPU budget allows; Adam's
        per-coordinate step makes the same searches decisive (``benchmarks/results/search_decisiveness.md``).
        :meth:`reference` gives the reference's settings.
    arc_momentum, arc_weight_decay
        Alpha optimiser momentum (0.9) and weight decay (5e-4, as the reference).
    grad_scale
        Alpha gradients are normalised per layer to norm ``1/grad_scale`` (reference default 100).
    rf_penalty
        Coefficient of the constant penalty ``rf_penalty * (d*(k-1)+1)`` added to the (normalised) alpha
        gradient, favouring small receptive fields: 1e-5, as the reference. With Adam on alpha a candidate
        whose penalty exceeds its share of the data gradient (about ``1 / (grad_scale * sqrt(#candidates))``
        per coordinate, 2.2e-3 at the defaults over 20 candidates) loses probability steadily whatever the
        data says, so the penalty caps the reachable field at about 2.2e-3 / rf_penalty: ~220 taps at
        1e-5, ~22 at 1e-4. At 1e-4 the Burgers PDE search (64 points) kept only fields <= 15 and
        retrained to relative L2 0.229, where 1e-5 found fields up to 99 and reached 0.064 (no penalty
        0.064, the backbone 0.300; ``benchmarks/results/suite_defaults.md``). On small classification
        sets where big fields overfit, tuning keeps the backbone's kernels unless the searched ones win
        by more than one standard error (``tune.prefer_backbone``).
    gradient_clip_val
        Gradient-norm clipping of the weights (and alpha in joint mode); ``None`` disables (reference 1.0).
    temperature
        Gumbel-softmax temperature: a float (constant; reference 1.0), a pair ``(start, end)`` annealed
        linearly over the epochs, or ``None`` for a plain softmax (no Gumbel noise, as DARTS).
    lr_milestones, lr_gamma
        Both optimisers' learning rates are multiplied by ``lr_gamma`` at each milestone epoch
        (reference: 0.2 at 30, 60, 90, 120, 160 for 1-D and 60, 120, 160 for 2-D tasks).
    batch_fraction
        Use only ``int(fraction * num_batches) + 1`` batches per epoch (reference 0.2); ``None`` = all.
    depthwise_proxy
        Search layers with equal in/out channels as depthwise convs (reference default); the exported
        network uses full convs with fresh weights for them.
    conv_path
        ``"auto"`` (cost model), ``"fft"`` or ``"direct"`` for the mixed-kernel convolution.
    nan_policy
        ``"stop"``: a non-finite loss or alpha raises :class:`~nni_dash.errors.NumericalError`;
        ``"skip"``: skip that batch.
    log_prob_every_n_step, warmup_epochs
        As NNI's DARTS.
    seed
        Every epoch re-seeds torch/numpy/random from ``(seed, epoch)``, so the Gumbel noise and dropout
        of an epoch do not depend on what ran before it: a search resumed from a checkpoint ends
        exactly where an uninterrupted one does.
    **kwargs
        Passed to :class:`~nni.nas.strategy.DARTS` (e.g. ``mutation_hooks``).
    """

    def __init__(self, *, mode: str = "bilevel", arc_learning_rate: float = 0.01, arc_optimizer: str = "adam",
                 arc_momentum: float = 0.9, arc_weight_decay: float = 5e-4, grad_scale: float = 100.0,
                 rf_penalty: float = 1e-5, gradient_clip_val: float | None = 1.0,
                 temperature: float | tuple[float, float] | None = 1.0, lr_milestones: Sequence[int] = (),
                 lr_gamma: float = 0.2, batch_fraction: float | None = None, depthwise_proxy: bool = False,
                 conv_path: str = "auto", nan_policy: str = "stop", log_prob_every_n_step: int = 10,
                 warmup_epochs: int = 0, seed: int = 0, **kwargs: Any) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r}: allowed values are {', '.join(MODES)}")
        if arc_optimizer not in ("sgd", "adam"):
            raise ConfigError(f"arc_optimizer={arc_optimizer!r}: allowed values are sgd, adam")
        if conv_path not in ("auto", "fft", "direct"):
            raise ConfigError(f"conv_path={conv_path!r}: allowed values are auto, fft, direct")
        if nan_policy not in ("stop", "skip"):
            raise ConfigError(f"nan_policy={nan_policy!r}: allowed values are stop, skip")
        _positive("arc_learning_rate", arc_learning_rate)
        _positive("arc_momentum", arc_momentum, allow_zero=True)
        _positive("arc_weight_decay", arc_weight_decay, allow_zero=True)
        _positive("grad_scale", grad_scale)
        _positive("rf_penalty", rf_penalty, allow_zero=True)
        _positive("lr_gamma", lr_gamma)
        if gradient_clip_val is not None:
            _positive("gradient_clip_val", gradient_clip_val)
        if batch_fraction is not None and not 0 < batch_fraction <= 1:
            raise ConfigError(f"batch_fraction={batch_fraction!r}: must be in (0, 1] or None")
        if temperature is None:
            self._temperature = None
        else:
            pair = (temperature, temperature) if isinstance(temperature, (int, float)) else tuple(temperature)
            if len(pair) != 2 or any(not isinstance(t, (int, float)) or t <= 0 for t in pair):
                raise ConfigError(f"temperature={temperature!r}: a positive number, a pair (start, end) or None")
            self._temperature = (float(pair[0]), float(pair[1]))
        super().__init__(arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_prob_every_n_step, warmup_epochs=warmup_epochs, **kwargs)
        self.mode, self.arc_optimizer = mode, arc_optimizer
        self.arc_momentum, self.arc_weight_decay = arc_momentum, arc_weight_decay
        self.grad_scale, self.rf_penalty = grad_scale, rf_penalty
        self.lr_milestones, self.lr_gamma = tuple(int(m) for m in lr_milestones), lr_gamma
        self.batch_fraction, self.depthwise_proxy = batch_fraction, depthwise_proxy
        self.conv_path, self.nan_policy, self.seed = conv_path, nan_policy, int(seed)

    @classmethod
    def reference(cls, *, two_d: bool = False, **overrides: Any) -> "DASH":
        """DASH with the reference code's search settings (``dash-method.md`` section 4): joint mode,
        SGD-Nesterov on alpha at lr 0.05, grad_scale 100, Gumbel temperature 1, 20 % of the batches per
        epoch and the step LR milestones (1-D: 30, 60, 90; 2-D: 60). Keyword arguments override."""
        settings: dict[str, Any] = dict(mode="joint", arc_optimizer="sgd", arc_learning_rate=0.05, grad_scale=100.0,
                                        rf_penalty=1e-5, temperature=1.0, batch_fraction=0.2,
                                        lr_milestones=(60,) if two_d else (30, 60, 90))
        return cls(**{**settings, **overrides})

    # ---- supernet construction -------------------------------------------------------------------
    def default_mutation_hooks(self) -> list:
        return [MixedDashConv.mutate] + super().default_mutation_hooks()

    def configure_softmax(self) -> nn.Module:
        return nn.Softmax(dim=-1) if self._temperature is None else GumbelSoftmax()

    def run_hook(self, hook: Any, name: str, module: nn.Module, memo: dict[str, Any]) -> Any:
        if not memo.get("_validated"):
            memo.update(self._arch_parameters)
            memo["_validated"] = True
        from nni.nas.oneshot.pytorch.supermodule.differentiable import MixedOpDifferentiablePolicy
        kwargs = {"mixed_op_sampling": MixedOpDifferentiablePolicy, "softmax": self.configure_softmax(),
                  DEPTHWISE_PROXY_KWARG: self.depthwise_proxy, CONV_PATH_KWARG: self.conv_path}
        return hook(module, name, memo, kwargs)

    def _receptive_fields(self) -> dict[str, torch.Tensor]:
        fields = {}
        for label, alpha in self._arch_parameters.items():
            try:
                pairs = [parse_candidate(v) for v in self._values[label]]
            except ValueError:
                continue  # not a DASH choice (e.g. a LayerChoice in the same space)
            fields[label] = torch.tensor([float(receptive_span(k, d)) for k, d in pairs])
        return fields

    def mutate_model(self, model: Any) -> Any:
        self._values = {label: list(m.values) for label, m in model.simplify().items()}
        return super().mutate_model(model)

    def configure_oneshot_module(self, training_module: Any) -> DashLightningModule:
        return DashLightningModule(
            training_module, mode=self.mode, arc_learning_rate=self.arc_learning_rate,
            arc_momentum=self.arc_momentum, arc_weight_decay=self.arc_weight_decay, arc_optimizer=self.arc_optimizer,
            grad_scale=self.grad_scale, rf_penalty=self.rf_penalty, receptive_fields=self._receptive_fields(),
            gradient_clip_val=self.gradient_clip_val, temperature=self._temperature or (1.0, 1.0),
            lr_milestones=self.lr_milestones, lr_gamma=self.lr_gamma, batch_fraction=self.batch_fraction,
            log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs,
            nan_policy=self.nan_policy, seed=self.seed)

    def train_dataloader(self, train_dataloader_fn: Any, val_dataloader_fn: Any) -> Any:
        if self.mode == "joint":  # the reference's single-level search: no held-out batches needed
            return {"train": train_dataloader_fn()}
        return super().train_dataloader(train_dataloader_fn, val_dataloader_fn)

    # ---- results ---------------------------------------------------------------------------------
    def probabilities(self) -> dict[str, dict[str, float]]:
        """softmax(alpha) per label: ``{label: {"k3d1": p, ...}}`` (after :meth:`run`)."""
        return self.oneshot_module.export_probs()

    def export(self) -> dict[str, str]:
        """The argmax candidate per label."""
        return self.oneshot_module.export()
