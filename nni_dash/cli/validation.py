"""Checks run after the task is loaded and before anything is written.

:func:`check_trainer` - the ``trainer`` keys as Lightning resolves them on this machine.

:func:`crop_search_space` - dilated spans larger than any input can use. A candidate ``(k, d)``
has the span ``d*(k-1)+1``; a ``same``-padded convolution on an input of length ``n`` (for 2-D
inputs ``n = min(H, W)``) can only ever overlap the input with ``2n-1`` of those taps, so a span
beyond ``2n-1`` sees only padding at its outer taps. The candidate grid is the product
``kernel_sizes x dilations``, so cropping works on the two lists, deterministically:

* a dilation ``d`` is dropped when even the smallest kernel size has too large a span at ``d``
  (``d*(min(k)-1)+1 > 2n-1``);
* a kernel size ``k`` is dropped when even the smallest dilation has too large a span
  (``min(d)*(k-1)+1 > 2n-1``).

Pairs of a kept kernel size with a kept dilation whose span still exceeds ``2n-1`` stay (the grid is a
product). One warning names the dropped values and the limit; if nothing is left, a one-line
:class:`~nni_dash.errors.ConfigError`. The limit uses the *input* size: deeper layers of a
downsampling backbone see smaller maps, which this check does not model.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from nni_dash.errors import ConfigError

__all__ = ["check_trainer", "crop_search_space", "span_limit"]


def span_limit(data: Any) -> int:
    """``2n-1`` for the smallest spatial size ``n`` of the task's inputs."""
    return 2 * min(data.x_train.shape[2:]) - 1


def _default(backbone: str, name: str) -> Any:
    from nni_dash.backbones._registry import backbone_class
    param = inspect.signature(backbone_class(backbone).__init__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def crop_search_space(cfg: Any, data: Any, warn: Callable[[str], None]) -> Any:
    """``cfg`` with ``backbone.args``/``retrain_args`` kernel sizes and dilations cropped to the input (see module doc)."""
    limit = span_limit(data)
    backbone = cfg.backbone
    args = dict(backbone.args)
    ks, ds = args.get("kernel_sizes", _default(backbone.name, "kernel_sizes")), \
        args.get("dilations", _default(backbone.name, "dilations"))
    if ks is None or ds is None:
        return cfg
    ks = [ks] if isinstance(ks, int) else list(ks)
    ds = [ds] if isinstance(ds, int) else list(ds)
    keep_d = [d for d in ds if d * (min(ks) - 1) + 1 <= limit]
    keep_k = [k for k in ks if min(ds) * (k - 1) + 1 <= limit]
    if keep_d == ds and keep_k == ks:
        return cfg
    if not keep_d or not keep_k:
        raise ConfigError(f"backbone.args: every candidate of kernel_sizes={ks} x dilations={ds} has a span "
                          f"d*(k-1)+1 > {limit} (2n-1 for input size n={(limit + 1) // 2}); allowed: spans <= {limit}")
    dropped = [f"dilation {d}" for d in ds if d not in keep_d] + [f"kernel size {k}" for k in ks if k not in keep_k]
    warn(f"warning: backbone.args: dropped {', '.join(dropped)} from the search space: their smallest span "
         f"d*(k-1)+1 exceeds {limit} (2n-1 for input size n={(limit + 1) // 2}), so they would see only padding; "
         f"searching kernel_sizes={keep_k} x dilations={keep_d}")
    args.update(kernel_sizes=keep_k, dilations=keep_d)
    retrain_args = dict(backbone.retrain_args or {})
    for key, kept in (("kernel_sizes", keep_k), ("dilations", keep_d)):
        if key in retrain_args:
            values = [retrain_args[key]] if isinstance(retrain_args[key], int) else list(retrain_args[key])
            retrain_args[key] = [v for v in values if v in kept] or kept
    new_backbone = dataclasses.replace(backbone, args=args, retrain_args=retrain_args)
    return dataclasses.replace(cfg, backbone=new_backbone)


def check_trainer(cfg: Any) -> None:
    """The ``trainer`` keys as Lightning resolves them on this machine: an accelerator it lacks (``gpu``
    without CUDA), more devices than it has, an unknown strategy, precision or ``extra`` key. Lightning's
    own ``Trainer`` does the resolving; building one trains nothing."""
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import MisconfigurationException
    try:
        pl.Trainer(**cfg.trainer.trainer_kwargs(), logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"trainer (accelerator={cfg.trainer.accelerator!r}, devices={cfg.trainer.devices!r}, "
                          f"strategy={cfg.trainer.strategy!r}, precision={cfg.trainer.precision!r}): Lightning "
                          f"refuses it on this machine: {reason}; fix the trainer keys (trainer.accelerator=auto uses "
                          f"what the machine has)") from None
