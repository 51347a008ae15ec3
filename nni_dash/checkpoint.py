"""Crash-safe checkpoints and exact mid-epoch resume.

* :class:`AtomicCheckpointIO` - every checkpoint Lightning writes (ours and ``ModelCheckpoint``'s)
  goes to ``<name>.tmp-<pid>`` in the same folder, is flushed to disk and then ``os.replace``-d over
  the target: a kill at any moment leaves either the old or the new file, never a torn one.
* :class:`ResumeCheckpoint` - writes ``<dirpath>/last.ckpt`` at the end of every epoch and every
  ``every_n_steps`` training batches inside an epoch. Mid-epoch saves also record how many batches
  each training dataloader (:class:`~nni_dash.evaluator.ResumableDataLoader`) had delivered, and a
  resumed fit skips exactly those batches of the (deterministic) epoch order, so the data - and, with
  DASH's per-batch reseeding, the Gumbel noise and dropout - continue where the killed run stopped.
  It also turns the first Ctrl-C into a clean stop at the next batch boundary (see
  :func:`install_sigint_handler`): a checkpoint is written and :class:`Interrupted` is raised.

Lightning 2.6 restores ``batch_progress`` from a mid-epoch checkpoint but restarts non-stateful
loaders at the start of the epoch; its own stateful-loader hook (``state_dict`` on the loader,
saved by ``FitLoop``) cannot tell a mid-epoch save from an end-of-epoch one, so the loader states
travel in this callback's state instead and are applied in ``on_train_start``, before the first
batch is drawn (loaders are iterated lazily; with sized loaders Lightning does not prefetch).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint

from nni_dash.errors import DashError

__all__ = ["AtomicCheckpointIO", "ResumeCheckpoint", "Interrupted", "install_sigint_handler", "atomic_write_bytes",
           "LAST"]

LAST = "last.ckpt"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose writes are atomic (temporary file + ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        import io
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


class Interrupted(DashError):
    """Ctrl-C during training: a resumable checkpoint was written (exit code 130)."""

    exit_code = 130


_SIGINT = {"armed": False, "requested": False}


def install_sigint_handler() -> Any:
    """First Ctrl-C: stop at the next batch boundary of a training run with :class:`ResumeCheckpoint`
    (elsewhere: an immediate ``KeyboardInterrupt``); a second Ctrl-C aborts at once. Returns the old handler."""
    _SIGINT["requested"] = False

    def handler(signum: int, frame: Any) -> None:
        if _SIGINT["armed"] and not _SIGINT["requested"]:
            _SIGINT["requested"] = True
            print("\ninterrupt: stopping after the current batch and saving a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)
            return
        _SIGINT["requested"] = True
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, handler)


def interrupt_requested() -> bool:
    return _SIGINT["requested"]


class ResumeCheckpoint(Checkpoint):
    """``last.ckpt`` at each epoch end and every ``every_n_steps`` batches (0: epoch ends only); see module doc."""

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0) -> None:
        self.dirpath, self.every_n_steps = Path(dirpath), int(every_n_steps)
        self._loader_states: list[dict[str, Any]] | None = None  # what the next save records
        self._pending: list[dict[str, Any]] | None = None        # restored, applied in on_train_start
        self.saved_steps: list[tuple[int, int]] = []             # (epoch, batches done) of every save

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    def _save(self, trainer: pl.Trainer, loader_states: list[dict[str, Any]] | None) -> None:
        self._loader_states = loader_states
        try:
            trainer.save_checkpoint(str(self.path))
        finally:
            self._loader_states = None

    @staticmethod
    def _loaders(trainer: pl.Trainer) -> list[Any]:
        combined = getattr(trainer.fit_loop, "_combined_loader", None)
        return list(combined.flattened) if combined is not None else []

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"loaders": self._loader_states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("loaders")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _SIGINT["armed"] = True
        if self._pending:
            loaders = self._loaders(trainer)
            if len(loaders) == len(self._pending):
                for loader, state in zip(loaders, self._pending):
                    if hasattr(loader, "resume_from") and state is not None:
                        loader.resume_from(state)
        self._pending = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _SIGINT["armed"] = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        _SIGINT["armed"] = False

    # ---- saving --------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = batch_idx + 1
        stop = _SIGINT["armed"] and _SIGINT["requested"]
        if done >= trainer.num_training_batches:  # the epoch-end save (and stop) follows
            return
        if not stop and (self.every_n_steps < 1 or done % self.every_n_steps):
            return
        states = [loader.position() if hasattr(loader, "position") else None for loader in self._loaders(trainer)]
        self._save(trainer, states)
        self.saved_steps.append((trainer.current_epoch, done))
        if stop:
            raise Interrupted(f"interrupted at epoch {trainer.current_epoch}, batch {batch_idx}; checkpoint saved "
                              f"to {self.path}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._save(trainer, None)
        self.saved_steps.append((trainer.current_epoch, -1))
        if _SIGINT["armed"] and _SIGINT["requested"]:
            raise Interrupted(f"interrupted at the end of epoch {trainer.current_epoch}; checkpoint saved to "
                              f"{self.path}")
