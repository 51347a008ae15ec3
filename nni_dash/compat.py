"""Fixes for NNI 3.0 on today's stack (torch 2.x, Lightning 2.x, setuptools >= 81), in one place.

NNI's last release (3.0, August 2023) is unmaintained; each fix below is small, idempotent, and
applied by :func:`apply` when :mod:`nni_dash` is imported.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import types
from typing import Any, Iterator

__all__ = ["apply", "TaggedLoader", "fresh_trainer", "install_pkg_resources_shim"]

_logger = logging.getLogger(__name__)
_applied = False


class TaggedLoader:
    """Wraps a dataloader so each batch comes as ``(batch, tag)``.

    Fix 1 - ENAS on Lightning >= 2.1: Lightning hands ``training_step`` the bare batch, without
    ``(batch_idx, dataloader_idx)``, so ``EnasLightningModule.training_step`` falls into its legacy
    branch ``batch, mode = batch_packed`` and unpacks the data instead (``too many values to unpack``
    or silently wrong). Tagging every batch with ``"train"``/``"val"`` makes that branch correct.
    """

    def __init__(self, loader: Any, tag: str) -> None:
        self.loader, self.tag = loader, tag

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        for batch in self.loader:
            yield batch, self.tag

    def __len__(self) -> int:
        return len(self.loader)


def _enas_train_dataloader(self: Any, train_dataloader_fn: Any, val_dataloader_fn: Any) -> Any:
    from nni.nas.oneshot.pytorch._dataloader import ConcatLoader
    return ConcatLoader({"train": TaggedLoader(train_dataloader_fn(), "train"),
                         "val": TaggedLoader(val_dataloader_fn(), "val")})


def fresh_trainer(evaluator: Any) -> Any:
    """Fix 2 - multi-trial strategies on the sequential engine reuse one Lightning ``Trainer``
    (``MutableEvaluator.freeze`` returns the evaluator itself), so the second model's ``fit`` stops at
    once ("max_epochs reached"). Give each model a fresh trainer from the traced arguments."""
    trainer = getattr(evaluator, "trainer", None)
    if trainer is not None and hasattr(trainer, "trace_copy"):
        evaluator.trainer = trainer.trace_copy().get()
    return evaluator


def install_pkg_resources_shim() -> None:
    """Fix 3 - ``nnictl`` and NNI's trial tool import ``pkg_resources``, removed in setuptools 81.

    NNI uses only ``get_distribution(name).version`` and ``ResolutionError``; this provides both
    over :mod:`importlib.metadata` when the real module is missing. (The console script of
    ``nnictl`` does not import nni_dash, so set-up scripts also pin ``setuptools<81``.)
    """
    import importlib.metadata as md
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is not None:
        return

    shim = types.ModuleType("pkg_resources")

    class ResolutionError(Exception):
        pass

    class DistributionNotFound(ResolutionError):
        pass

    def get_distribution(name: str) -> Any:
        try:
            return types.SimpleNamespace(version=md.version(name), project_name=name)
        except md.PackageNotFoundError:
            raise DistributionNotFound(name) from None

    shim.ResolutionError, shim.DistributionNotFound, shim.get_distribution = (
        ResolutionError, DistributionNotFound, get_distribution)
    sys.modules["pkg_resources"] = shim


def _patch_sequential_engine() -> None:
    """Apply :func:`fresh_trainer` before every model the sequential engine trains."""
    from nni.nas.execution import sequential

    engine_cls = sequential.SequentialExecutionEngine
    if getattr(engine_cls, "_nni_dash_patched", False):
        return
    original = engine_cls._run_single_model

    def _run_single_model(self: Any, model: Any) -> Any:
        evaluator = getattr(model, "evaluator", None)
        # One-shot strategies submit one model whose trainer must stay (it holds the checkpoint callback).
        if evaluator is not None and not _is_oneshot_module(getattr(evaluator, "module", None)):
            fresh_trainer(evaluator)
        return original(self, model)

    engine_cls._run_single_model = _run_single_model
    engine_cls._nni_dash_patched = True


def _is_oneshot_module(module: Any) -> bool:
    from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
    return isinstance(module, BaseOneShotLightningModule)


def apply() -> None:
    """Apply every fix once."""
    global _applied
    if _applied:
        return
    install_pkg_resources_shim()
    # gym (pulled in by NNI's ENAS through tianshou) prints a deprecation banner on import.
    with contextlib.redirect_stderr(io.StringIO()):
        # Import through the public package: importing nni.nas.oneshot.pytorch.strategy first leaves
        # nni.nas.strategy with placeholder classes (a circular import inside NNI).
        from nni.nas.strategy import ENAS
    ENAS.train_dataloader = _enas_train_dataloader
    _patch_sequential_engine()
    _applied = True
