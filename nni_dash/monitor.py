"""Monitoring: per-epoch metric records, TensorBoard loggers, and reports to an outer NNI trial.

* :class:`EpochRecorder` - a Lightning callback that, at the end of every training epoch (after
  validation), collects the trainer's scalar metrics plus the per-layer alpha probabilities
  ``prob/<label>/<candidate>`` of a one-shot module, writes the probabilities to every logger (so
  TensorBoard has them whatever the step alignment of ``log_probs``), and hands the record to sinks
  (the CSV/JSON history, the NNI reporter).
* :class:`OuterTrialReporter` - sends ``PERIODICAL``/``FINAL`` metrics to the NNI manager on the
  trial command channel captured at construction. Create it **before** ``NasExperiment.run()``:
  NNI's sequential engine swaps the default channel (and ``nni.trial._params``) while a one-shot
  search runs, so plain ``nni.report_*`` calls would go to the inner engine.
  NNI's web UI titles a table column with the text between the first and second ``/`` of a key, so
  every key sent to NNI has ``/`` replaced by ``_`` (:func:`nni_key`: ``prob/stem/k3d1`` ->
  ``prob_stem_k3d1``), and intermediate records carry their stage in the key (``search_val_accuracy``,
  ``retrain_val_accuracy``) and in ``stage_index`` (:data:`STAGE_INDEX`).
* :func:`nni_tensorboard_dir` - where NNI 3.0's web UI TensorBoard looks (bug microsoft/nni#5609).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

__all__ = ["EpochRecorder", "OuterTrialReporter", "nni_tensorboard_dir", "tensorboard_logger", "scalar_metrics",
           "module_probs", "nni_key", "STAGE_INDEX"]

#: numeric stage tag of an intermediate NNI record (the web UI plots numbers only)
STAGE_INDEX = {"search": 0, "tune": 1, "retrain": 2}


def nni_key(key: str) -> str:
    """A metric key NNI's web UI titles in full: no ``/`` (``arch/stem`` -> ``arch_stem``)."""
    return key.replace("/", "_")

Sink = Callable[[str, int, dict[str, float]], None]


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Finite scalar entries of a Lightning metrics dict as floats."""
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def module_probs(pl_module: Any) -> dict[str, float]:
    """``{"prob/<label>/<candidate>": p}`` of a one-shot module with probabilities (else empty)."""
    export_probs = getattr(pl_module, "export_probs", None)
    if export_probs is None:
        return {}
    try:
        probs = export_probs()
    except Exception:  # sampling strategies (RandomOneShot, ENAS) have no probabilities
        return {}
    return {f"prob/{label}/{value}": float(p) for label, dist in probs.items() for value, p in dist.items()}


class EpochRecorder(pl.Callback):
    """Record the metrics of every training epoch of ``stage`` and pass them to ``sinks``.

    ``evaluate(pl_module) -> {name: value}`` adds metrics computed at each epoch end (and logged).
    """

    def __init__(self, stage: str, sinks: list[Sink] | None = None,
                 evaluate: Callable[[Any], dict[str, float]] | None = None) -> None:
        self.stage, self.sinks, self.evaluate = stage, list(sinks or []), evaluate
        self.records: list[tuple[int, dict[str, float]]] = []

    @staticmethod
    def is_record_epoch(trainer: pl.Trainer) -> bool:
        """Record every ``check_val_every_n_epoch``-th epoch (a step budget sets it) and the last one."""
        epoch, every = trainer.current_epoch + 1, max(1, int(trainer.check_val_every_n_epoch or 1))
        return epoch % every == 0 or trainer.should_stop or epoch >= (trainer.max_epochs or 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.is_record_epoch(trainer):
            return
        metrics = scalar_metrics(trainer.callback_metrics)
        extra = module_probs(pl_module)
        if self.evaluate is not None:
            # one-shot searches have no validation loop: score the supernet so that every stage
            # reports the same "default" metric (what NNI's tuners and assessors compare)
            extra.update({k: v for k, v in self.evaluate(pl_module).items() if k not in metrics})
        if extra and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(extra, step=trainer.global_step)
        metrics.update(extra)
        epoch = trainer.current_epoch
        self.records.append((epoch, metrics))
        if trainer.is_global_zero:
            for sink in self.sinks:
                sink(self.stage, epoch, metrics)


def tensorboard_logger(root: str | Path, stage: str) -> TensorBoardLogger:
    """A TensorBoard logger writing event files to ``root/stage`` (no hparams placeholder metric)."""
    return TensorBoardLogger(save_dir=str(root), name="", version=stage, default_hp_metric=False)


def nni_tensorboard_dir() -> Path | None:
    """The folder NNI's web UI TensorBoard reads for this trial, or None outside an NNI trial.

    NNI 3.0's local service sets ``NNI_OUTPUT_DIR=<exp>/environments/local-env/trials/<id>`` but
    its TensorBoard manager reads ``<exp>/trials/<id>/output/tensorboard`` (microsoft/nni#5609), so
    write there when the layout matches; otherwise ``$NNI_OUTPUT_DIR/tensorboard`` (the documented place).
    """
    output = os.environ.get("NNI_OUTPUT_DIR")
    if not output:
        return None
    out = Path(output)
    trial_id = os.environ.get("NNI_TRIAL_JOB_ID") or out.name
    parts = out.parts
    if len(parts) >= 4 and parts[-2] == "trials" and parts[-4] == "environments" and parts[-1] == trial_id:
        return Path(*parts[:-4]) / "trials" / trial_id / "output" / "tensorboard"
    return out / "tensorboard"


class OuterTrialReporter:
    """Report to the NNI trial that runs this process, on the channel captured at construction."""

    def __init__(self, parameter_id: Any = None) -> None:
        import nni
        from nni.runtime.env_vars import trial_env_vars
        from nni.runtime.trial_command_channel import get_default_trial_command_channel

        self.channel = get_default_trial_command_channel()
        params = getattr(nni.trial, "_params", None) or {}
        self.parameter_id = parameter_id if parameter_id is not None else params.get("parameter_id")
        self.trial_job_id = trial_env_vars.NNI_TRIAL_JOB_ID
        self.sequence = 0
        self.default_key: str | None = None  # metric used as "default" (e.g. val_accuracy)

    def intermediate(self, metrics: dict[str, float]) -> None:
        """Send one ``PERIODICAL`` record; ``default`` is ``default_key``'s value (else the first metric)."""
        if not metrics:
            return
        value = dict(metrics) if "default" in metrics else {"default": self._default(metrics), **metrics}
        self.channel.send_metric(type="PERIODICAL", parameter_id=self.parameter_id, trial_job_id=self.trial_job_id,
                                 sequence=self.sequence, value=value)
        self.sequence += 1

    def _default(self, metrics: dict[str, float]) -> float:
        """``default_key``'s value, else the first metric's."""
        return metrics[self.default_key if self.default_key in metrics else next(iter(metrics))]

    def final(self, metrics: dict[str, Any]) -> None:
        """Send the ``FINAL`` record (``metrics["default"]`` must be a float); keys pass through :func:`nni_key`."""
        self.channel.send_metric(type="FINAL", parameter_id=self.parameter_id, trial_job_id=self.trial_job_id,
                                 sequence=0, value={nni_key(k): v for k, v in metrics.items()})

    def sink(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """An :class:`EpochRecorder` sink: one ``PERIODICAL`` record per epoch, keys prefixed with the stage.

        ``default`` stays the unprefixed ``default_key`` (the validation metric of whichever stage),
        so NNI's default curve is continuous; ``<stage>_<key>`` and ``stage_index`` tell them apart.
        """
        if not metrics:
            return
        value = {"default": self._default(metrics), **{nni_key(f"{stage}_{k}"): v for k, v in metrics.items()}}
        value.update({"stage_index": float(STAGE_INDEX.get(stage, -1)), "stage_epoch": float(epoch)})
        self.intermediate(value)
