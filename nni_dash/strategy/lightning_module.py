"""``DashLightningModule``: the search loop of the :class:`~nni_dash.strategy.DASH` strategy.

Built on NNI's :class:`~nni.nas.oneshot.pytorch.differentiable.DartsLightningModule` (manual
optimisation; the evaluator's module supplies the loss and the weight optimiser). Per step:

* ``mode="bilevel"`` (default, first-order DARTS): alpha step on a held-out batch
  (``batch["val"]``), then a weight step on a training batch (``batch["train"]``);
* ``mode="joint"`` (the DASH reference): one forward/backward on the training batch, then both the
  weight and the alpha optimisers step.

Before each alpha step the alpha gradients are transformed as in DASH (:meth:`transform_arch_grads`):
per label, ``g <- g / (grad_scale * (||g|| + 1e-8)) + rf_penalty * r``, where ``r[k, d] = d*(k-1)+1``
is each candidate's receptive field. A step LR schedule (``gamma`` after each milestone epoch) is
applied to both optimisers at epoch start; ``batch_fraction`` ends each epoch after
``int(fraction * num_batches) + 1`` steps. A NaN/inf loss or alpha stops the run with
:class:`~nni_dash.errors.NumericalError` (``nan_policy="stop"``) or skips the batch (``"skip"``).
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.supermodule.differentiable import GumbelSoftmax

from nni_dash.errors import NumericalError

_logger = logging.getLogger(__name__)

__all__ = ["DashLightningModule"]


class DashLightningModule(DartsLightningModule):
    """See the module docstring; arguments are documented on :class:`~nni_dash.strategy.DASH`."""

    def __init__(self, training_module: pl.LightningModule, *, mode: str, arc_learning_rate: float,
                 arc_momentum: float, arc_weight_decay: float, arc_optimizer: str, grad_scale: float,
                 rf_penalty: float, receptive_fields: dict[str, torch.Tensor], gradient_clip_val: float | None,
                 temperature: tuple[float, float], lr_milestones: Sequence[int], lr_gamma: float,
                 batch_fraction: float | None, log_prob_every_n_step: int, warmup_epochs: int, nan_policy: str,
                 seed: int = 0) -> None:
        super().__init__(training_module, arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_prob_every_n_step, warmup_epochs=warmup_epochs)
        self.mode = mode
        self.arc_momentum, self.arc_weight_decay, self.arc_optimizer = arc_momentum, arc_weight_decay, arc_optimizer
        self.grad_scale, self.rf_penalty = grad_scale, rf_penalty
        self.receptive_fields = receptive_fields
        self.temperature = temperature
        self.lr_milestones, self.lr_gamma = tuple(lr_milestones), lr_gamma
        self.batch_fraction = batch_fraction
        self.nan_policy = nan_policy
        if hasattr(training_module, "nan_policy"):
            training_module.nan_policy = None  # this loop checks (and names) non-finite losses itself
        self.seed = seed
        self._base_lrs: list[list[float]] | None = None
        self.skipped_batches = 0

    # ---- optimisers ----------------------------------------------------------------------------
    def configure_architecture_optimizers(self) -> torch.optim.Optimizer:
        params = self.arch_parameters()
        if not params:
            raise ValueError("DASH found no architecture parameters: the model space has no DashConv layer")
        from nni_dash.evaluator import make_optimizer
        return make_optimizer("adam" if self.arc_optimizer == "adam" else "sgd", params, lr=self.arc_learning_rate,
                              momentum=self.arc_momentum, weight_decay=self.arc_weight_decay, betas=(0.5, 0.999))

    def named_arch_parameters(self) -> dict[str, torch.nn.Parameter]:
        """One alpha per label (shared by the layers with that label)."""
        out: dict[str, torch.nn.Parameter] = {}
        for module in self.supernet_modules():
            for label, alpha in getattr(module, "_arch_alpha", {}).items():
                out.setdefault(label, alpha)
        return out

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """Alphas in a stable order (NNI's DARTS returns ``list(set(...))``, whose order changes between
        runs, so optimiser state restored from a checkpoint would land on the wrong alphas)."""
        named = self.named_arch_parameters()
        seen = {id(p) for p in named.values()}
        others = [p for p in super().arch_parameters() if id(p) not in seen]  # e.g. LayerChoice alphas
        return [named[label] for label in sorted(named)] + sorted(others, key=lambda p: p.numel())

    def transform_arch_grads(self) -> None:
        """DASH's alpha-gradient normalisation plus receptive-field penalty (see module docstring)."""
        for label, alpha in self.named_arch_parameters().items():
            if alpha.grad is None or label not in self.receptive_fields:
                continue
            g = alpha.grad
            g.div_(self.grad_scale * (g.norm() + 1e-8))
            g.add_(self.rf_penalty * self.receptive_fields[label].to(g))

    # ---- schedule ------------------------------------------------------------------------------
    def _all_optimizers(self) -> list[Any]:
        opts = self.optimizers()
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    def on_train_epoch_start(self) -> None:
        epoch = self.trainer.current_epoch
        start, end = self.temperature
        total = max(1, (self.trainer.max_epochs or 1) - 1)
        tau = start + (end - start) * min(1.0, epoch / total)
        for module in self.modules():
            if isinstance(module, GumbelSoftmax):
                module.tau = tau
        optimizers = self._all_optimizers()
        if self._base_lrs is None:
            self._base_lrs = [[group["lr"] for group in opt.param_groups] for opt in optimizers]
        factor = self.lr_gamma ** sum(epoch >= m for m in self.lr_milestones)
        if self.lr_milestones:  # else leave the learning rates to the evaluator's (per-step) schedule
            for opt, base in zip(optimizers, self._base_lrs):
                for group, lr in zip(opt.param_groups, base):
                    group["lr"] = lr * factor
        self.log_dict({"temperature": tau, "lr_factor": factor})
        super().on_train_epoch_start()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        self._reseed(self.trainer.current_epoch, batch_idx)
        if self.batch_fraction is not None:
            total = self.trainer.num_training_batches
            if math.isfinite(total) and batch_idx >= int(self.batch_fraction * total) + 1:
                return -1  # Lightning: skip the rest of this epoch
        return None

    # ---- steps ---------------------------------------------------------------------------------
    def _loss(self, batch: Any, batch_idx: int) -> tuple[torch.Tensor, Any]:
        out = self.training_module.training_step(batch, batch_idx)
        return (out["loss"] if isinstance(out, dict) else out), out

    def _finite_or_handle(self, loss: torch.Tensor, what: str, batch_idx: int) -> bool:
        if torch.isfinite(loss).all():
            return True
        if self.nan_policy == "skip":
            self.skipped_batches += 1
            self.log("skipped_batches", float(self.skipped_batches))
            return False
        raise NumericalError(f"non-finite {what} loss ({loss.item()}) at epoch {self.trainer.current_epoch}, "
                             f"step {self.global_step}, batch {batch_idx}; lower the learning rates or set "
                             "nan_policy='skip' to skip such batches")

    def _check_alphas(self, batch_idx: int) -> None:
        for label, alpha in self.named_arch_parameters().items():
            if not torch.isfinite(alpha).all():
                raise NumericalError(f"architecture parameter of layer {label!r} became non-finite at epoch "
                                     f"{self.trainer.current_epoch}, step {self.global_step}, batch {batch_idx}; "
                                     "lower arc_learning_rate")

    def _arch_step_enabled(self) -> bool:
        return self.warmup_epochs == 0 or self.trainer.current_epoch >= self.warmup_epochs

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        arc_optim = self.architecture_optimizers()
        if self.mode == "joint":
            return self._joint_step(batch["train"] if isinstance(batch, dict) else batch, batch_idx, arc_optim)
        if self._arch_step_enabled():
            self.resample()
            arc_optim.zero_grad()
            loss, _ = self._loss(batch["val"], 2 * batch_idx)
            if self._finite_or_handle(loss, "architecture", batch_idx):
                self.manual_backward(loss)
                self.transform_arch_grads()
                arc_optim.step()
                self._check_alphas(batch_idx)
            arc_optim.zero_grad()
        self.resample()
        loss, out = self._loss(batch["train"], 2 * batch_idx + 1)
        if self._finite_or_handle(loss, "training", batch_idx):
            self.advance_optimization(loss, batch_idx, self.gradient_clip_val)
        self.advance_lr_schedulers(batch_idx)
        self._maybe_log_probs(batch_idx)
        return out

    def _joint_step(self, batch: Any, batch_idx: int, arc_optim: Any) -> Any:
        self.resample()
        loss, out = self._loss(batch, batch_idx)
        if self._finite_or_handle(loss, "training", batch_idx):
            weight_optim = [o for o in self._all_optimizers() if not getattr(o, "is_arch_optimizer", False)][0]
            weight_optim.zero_grad()
            arc_optim.zero_grad()
            self.manual_backward(loss)
            if self._arch_step_enabled():
                self.transform_arch_grads()
            if self.gradient_clip_val:
                params = [p for group in weight_optim.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params + self.arch_parameters(), self.gradient_clip_val)
            weight_optim.step()
            if self._arch_step_enabled():
                arc_optim.step()
                self._check_alphas(batch_idx)
            arc_optim.zero_grad()
        self.advance_lr_schedulers(batch_idx)
        self._maybe_log_probs(batch_idx)
        return out

    def _maybe_log_probs(self, batch_idx: int) -> None:
        if self.global_step % self.log_prob_every_n_step == 0:
            self.log_probs(self.export_probs())

    def log_probs(self, probs: dict[str, dict[str, float]]) -> None:
        """Write ``prob/<label>/<candidate>`` straight to the loggers (rank 0).

        NNI's version goes through ``self.log``, whose result collection Lightning then copies and
        reduces at every later step: with one entry per candidate and layer that cost more than the
        supernet's FFT convolutions.
        """
        if not self.trainer.is_global_zero or not self.trainer.loggers:
            return
        flat = {f"prob/{label}/{value}": float(p) for label, dist in probs.items() for value, p in dist.items()}
        for logger in self.trainer.loggers:
            logger.log_metrics(flat, step=self.global_step)

    def on_train_end(self) -> None:
        """Under DDP, measure whether every rank ends with the same α (``rank_agreement``).

        DDP averages the weight gradients; α's gradients are averaged by the same all-reduce, so the
        ranks should stay identical. ``rank_agreement = {"world_size", "max_abs_diff"}`` records the
        largest difference of any α entry from rank 0's; a non-zero value is a warning, not an error.
        """
        super().on_train_end()
        world = self.trainer.world_size
        if world <= 1:
            self.rank_agreement = None
            return
        flat = torch.cat([p.detach().reshape(-1) for p in self.arch_parameters()]).float()
        gathered = self.trainer.strategy.all_gather(flat)  # (world, n)
        diff = float((gathered - gathered[0]).abs().max())
        self.rank_agreement = {"world_size": int(world), "max_abs_diff": diff}
        if diff > 0 and self.trainer.is_global_zero:
            _logger.warning("DDP ranks ended with different architecture parameters (max |Δα| = %.3g)", diff)

    # ---- exact resume ----------------------------------------------------------------------------
    def _reseed(self, epoch: int, batch_idx: int) -> None:
        """All randomness of a step (Gumbel noise, dropout) derives from ``(seed, epoch, batch)``.

        Lightning and the dataloaders draw random numbers at varying points around a restart, so
        saving the generator state cannot make a resumed run exact; re-seeding every step does (the
        batch order comes from :class:`~nni_dash.evaluator.EpochShuffleSampler`).
        """
        seed = (self.seed * 1_000_003 + epoch * 100_003 + batch_idx) % (2 ** 31)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nni_dash"] = {"base_lrs": self._base_lrs}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._base_lrs = checkpoint.get("nni_dash", {}).get("base_lrs")
