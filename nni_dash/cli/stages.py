"""The pipeline behind ``nni-dash`` and the NNI trial: config -> stage functions -> artefacts.

:class:`Run` holds what every stage needs (config, task data, the folder being written, TensorBoard
root, metric sinks) and runs ``search``, ``tune`` and ``retrain`` of :mod:`nni_dash.pipeline` with
the config's values, writing the artefacts listed in :mod:`nni_dash.report`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from nni_dash.config import ExperimentConfig
from nni_dash.errors import ConfigError
from nni_dash.cli.plan import later_needs, retrain_shape, tune_shape, tune_trials
from nni_dash.monitor import EpochRecorder, tensorboard_logger
from nni_dash.progress import format_seconds
from nni_dash.report import MetricsLog, format_summary, plot_architecture, read_architecture, write_json

__all__ = ["STAGES", "COMMANDS", "Run", "active_stages", "check_inputs", "load_architecture_source"]

STAGES = ("search", "tune", "retrain")
COMMANDS = {"search": ("search",), "tune": ("tune",), "retrain": ("retrain",), "run": STAGES}


def check_inputs(cfg: ExperimentConfig, data: Any, sample: dict[str, str] | None = None) -> None:
    """Fail early (before any output exists) on the trainer keys, backbone/strategy arguments and a foreign
    architecture."""
    from nni_dash.cli.validation import check_trainer
    check_trainer(cfg)
    from nni_dash.backbones import create_backbone, resolve_backbone
    from nni_dash.pipeline import head_for, make_strategy
    from nni_dash.pipeline.search import searchable

    from nni_dash.pipeline.prepare import resolve_backbone_config
    cfg = resolve_backbone_config(cfg, data.ndim)
    name = cfg.backbone.name
    common = dict(in_channels=data.in_channels, num_outputs=data.num_outputs, head=head_for(data.kind))
    space = create_backbone(name, **common, **cfg.backbone.args)
    create_backbone(name, **common, **{**cfg.backbone.args, **cfg.backbone.retrain_args})
    if cfg.search.strategy != "none":
        make_strategy(cfg.search.strategy, **cfg.search.strategy_args)
        if not searchable(space):
            raise ConfigError(f"backbone.args: the model space of backbone {cfg.backbone.name!r} has no searchable "
                              f"layer (no DashConv1d/2d with two or more candidates); allowed: a space with at "
                              f"least one, or search.strategy=none")
    if sample is not None:
        choices = {label: list(m.values) for label, m in space.simplify().items()}
        if set(sample) != set(choices):
            raise ConfigError(f"--arch: layer labels {sorted(sample)} do not match backbone {cfg.backbone.name!r} "
                              f"labels {sorted(choices)}")
        for label, value in sample.items():
            if value not in choices[label]:
                raise ConfigError(f"--arch: {label}={value!r} is not a candidate; allowed: "
                                  f"{', '.join(choices[label])}")


def load_architecture_source(path: str | Path) -> tuple[dict[str, str], dict[str, Any] | None, Path | None]:
    """``(sample, tuned hparams or None, run folder or None)`` from ``--arch`` (a JSON file or a run folder)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "architecture.json").is_file():
            raise ConfigError(f"--arch: {str(path)!r} has no architecture.json (run `nni-dash search` first)")
        best = path / "tune" / "best.json"
        tuned = json.loads(best.read_text()) if best.is_file() else None
        return read_architecture(path / "architecture.json"), tuned, path
    if not path.is_file():
        raise ConfigError(f"--arch: no such file or run folder {str(path)!r}")
    return read_architecture(path), None, None


@dataclasses.dataclass
class Run:
    """One pipeline run writing into ``folder`` (see :mod:`nni_dash.report` for the layout)."""

    cfg: ExperimentConfig
    data: Any
    folder: Path
    tb_root: Path
    sinks: list[Callable[[str, int, dict[str, float]], None]] = dataclasses.field(default_factory=list)
    main: bool = True                # False on DDP ranks > 0: they compute but write nothing
    echo: Callable[[str], None] = print
    sample: dict[str, str] | None = None
    probs: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    tuned: dict[str, Any] | None = None
    resume: bool = False             # continue an interrupted run: keep finished stages, resume from last.ckpt
    started: float | None = None     # time.monotonic() when the run began (the budget counts from it)
    step_times: dict[Any, float] = dataclasses.field(default_factory=dict)  # plan: measured step seconds

    def __post_init__(self) -> None:
        from nni_dash.budget import Budget
        from nni_dash.pipeline.prepare import resolve_backbone_config
        self.cfg = resolve_backbone_config(self.cfg, self.data.ndim)  # (the CLI has done it in prepare)
        self.budget = Budget(self.cfg.budget.mode, self.cfg.budget.minutes, started=self.started)
        self._todo: list[str] = []
        self.log = MetricsLog.load(self.folder)
        self.log.data.update(task=self.data.name, metric=self.data.metric, backbone=self.cfg.backbone.name)
        if self.sample is None and (self.folder / "architecture.json").is_file():
            self.sample = read_architecture(self.folder / "architecture.json")
        if (self.folder / "search" / "probs.json").is_file():
            self.probs = json.loads((self.folder / "search" / "probs.json").read_text()).get("probs", {})
        if self.tuned is None and (self.folder / "tune" / "best.json").is_file():
            self.tuned = json.loads((self.folder / "tune" / "best.json").read_text())

    # ---- common -----------------------------------------------------------------------------------
    @property
    def retrain_args(self) -> dict[str, Any]:
        return {**self.cfg.backbone.args, **self.cfg.backbone.retrain_args}

    def _common(self) -> dict[str, Any]:
        return dict(backbone=self.cfg.backbone.name, seed=self.cfg.seed, trainer_kwargs=self.cfg.trainer.trainer_kwargs())

    def _recorder(self, stage: str, score_supernet: bool = False) -> EpochRecorder:
        def supernet_score(module: Any) -> dict[str, float]:
            from nni_dash.pipeline import evaluate
            return {f"val_{self.data.metric}": evaluate(module, self.data, split="val")}
        return EpochRecorder(stage, [self.log.sink, self._persist, *self.sinks],
                             evaluate=supernet_score if score_supernet else None)

    def _persist(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        """Sink: save metrics.csv/json after every epoch, so a resumed run keeps the epochs before a kill."""
        if self.main:
            self.log.save(self.folder)

    def _checkpoint(self, stage: str) -> Any:
        from nni_dash.checkpoint import ResumeCheckpoint
        return ResumeCheckpoint(self.folder / stage / "checkpoints", every_n_steps=self.cfg.trainer.checkpoint_every_n_steps)

    def _resume_path(self, stage: str) -> str | None:
        from nni_dash.checkpoint import LAST
        path = self.folder / stage / "checkpoints" / LAST
        if self.resume and path.is_file():
            self.echo(f"{stage}: resuming from {path}")
            return str(path)
        return None

    def _clear(self, stages: tuple[str, ...]) -> None:
        """Remove earlier results of ``stages`` (a re-run replaces them)."""
        self.log.drop_stages(list(stages))
        if self.main:
            for stage in stages:
                for folder in (self.folder / stage, self.tb_root / stage):
                    shutil.rmtree(folder, ignore_errors=True)

    def run(self, stages: tuple[str, ...]) -> dict[str, Any]:
        if not self.resume:
            self._clear(stages)
        if self.main:
            self.cfg.to_yaml(self.folder / "config.yml")
            from nni_dash.pipeline.prepare import standardization_record
            write_json(self.folder / "preprocess.json", standardization_record(self.data))
        self._todo = active_stages(self.cfg, stages)
        self.echo(self.budget.describe())
        for stage in stages:
            if self.resume and stage in self.log.data["stages"]:
                self.echo(f"{stage}: finished before the interruption; kept")
                continue
            if stage == "tune" and not self.cfg.tune.enabled:
                self.echo("tune: disabled (tune.enabled=false); retrain uses the retrain.* values")
                continue
            if stage != "search" and self.sample is None:
                raise ConfigError(f"{stage}: needs an architecture; pass --arch ARCH.json or a search output folder")
            getattr(self, f"_{stage}")()
            if stage in self._todo:
                self._todo.remove(stage)
            self.save()
        return self.log.data

    def _left(self, stage: str) -> list[str]:
        return [stage] + [s for s in self._todo if s != stage]

    def _steps(self, stage: str, n: int, batch_size: int, rule: str | None = None) -> Any:
        """The stage's StepBudget (None in epochs mode)."""
        if not self.budget.steps_based:
            return None
        return self.budget.stage(stage, n=n, batch_size=batch_size, remaining_stages=self._left(stage), rule=rule,
                                 needs=later_needs(self, stage))

    def _space(self, args: dict[str, Any]) -> Any:
        from nni_dash.backbones import create_backbone
        from nni_dash.pipeline import head_for
        return create_backbone(self.cfg.backbone.name, in_channels=self.data.in_channels,
                               num_outputs=self.data.num_outputs, head=head_for(self.data.kind), **args)

    def searched(self) -> bool:
        """Whether the architecture came from a search (not the backbone's own kernels)."""
        strategy = self.log.data.get("stages", {}).get("search", {}).get("strategy")
        return self.sample is not None and strategy not in (None, "none")

    def retrain_sample(self) -> dict[str, str]:
        """The architecture the retrain trains: the search's, or the backbone's when tuning kept it."""
        if (self.tuned or {}).get("architecture") == "backbone":
            return self._space(self.retrain_args).default_sample()
        return dict(self.sample or {})

    def _recipe(self) -> dict[str, Any]:
        """The retrain recipe every trial and the final retrain share (tuned values replace some)."""
        r = self.cfg.retrain
        return dict(optimizer=r.optimizer, learning_rate=r.learning_rate, momentum=r.momentum,
                    weight_decay=r.weight_decay, dropout=r.dropout, label_smoothing=r.label_smoothing,
                    schedule=r.schedule, warmup_fraction=r.warmup_fraction, lr_milestones=r.lr_milestones,
                    lr_gamma=r.lr_gamma)

    def save(self) -> None:
        if self.main:
            self.log.save(self.folder)
            (self.folder / "summary.txt").write_text(self.summary() + "\n")

    def summary(self) -> str:
        return format_summary(self.log.data, self.sample)

    # ---- stages -----------------------------------------------------------------------------------
    def _search(self) -> None:
        from nni_dash.budget import auto_batch_size
        from nni_dash.pipeline import search

        s, r = self.cfg.search, self.cfg.retrain
        n = len(self.data.x_train)
        batch_size = s.batch_size or auto_batch_size(n)
        steps = self._steps("search", n, batch_size) if s.strategy != "none" else None
        length = f"{s.epochs} epoch(s)" if steps is None else f"{steps.wanted} steps" + (
            f" (or until {steps.deadline - self.budget.started:.0f} s)" if steps.deadline else "")
        self.echo(f"search: {s.strategy} on {self.data.name}, {length}, batch {batch_size}")
        callbacks = [self._recorder("search", score_supernet=True), self._checkpoint("search")]

        def on_trial(index: int, sample: dict[str, str], score: float) -> None:  # multi-trial strategies
            self.echo(f"  trial {index}: {' '.join(f'{k}={v}' for k, v in sample.items())} -> val "
                      f"{self.data.metric} {score:.4f}")
            for sink in [self.log.sink, *self.sinks]:
                sink("search", index, {f"val_{self.data.metric}": float(score)})

        result = search(self.data, on_trial=on_trial, backbone_args=self.cfg.backbone.args, strategy=s.strategy,
                        ckpt_path=self._resume_path("search"), nan_policy=self.cfg.trainer.nan_policy,
                        strategy_args=s.strategy_args, epochs=s.epochs, steps=steps, batch_size=batch_size,
                        optimizer=s.optimizer, learning_rate=s.learning_rate, momentum=s.momentum,
                        weight_decay=s.weight_decay, label_smoothing=r.label_smoothing,
                        schedule="cosine" if (steps is not None and r.schedule == "cosine") else "constant",
                        warmup_fraction=r.warmup_fraction,
                        callbacks=callbacks, logger=tensorboard_logger(self.tb_root, "search"),
                        enable_progress_bar=self.cfg.trainer.progress_bar, **self._common())
        from nni_dash.strategy.decision import MIN_LIFT, decisions, settle, undecided
        argmax, self.probs, self.tuned = dict(result.sample), result.probs, None
        noisy = undecided(self.probs)
        self.sample = settle(argmax, self.probs, self._space(self.retrain_args).default_sample(),
                             undecided_as=s.undecided) if noisy else argmax
        if noisy:
            fate = ("they keep the backbone's kernels (search.undecided=argmax exports the argmax)"
                    if s.undecided == "backbone" else "their argmax is exported (search.undecided=argmax)")
            self.echo(f"warning: search: the choice of {len(noisy)}/{len(self.probs)} layer(s) is within noise "
                      f"({', '.join(noisy)}: top probability under {MIN_LIFT:g}x uniform or within 10% of the "
                      f"runner-up); {fate}; a longer search (--budget) would decide them")
        record = {"strategy": result.strategy, "epochs": result.epochs, "steps": result.steps,
                  "decision": decisions(self.probs), "batch_size": batch_size, "budget": result.budget,
                  "seconds": result.seconds, "architecture": self.sample, "argmax": argmax,
                  "undecided": s.undecided}
        if result.ddp is not None:
            record["ddp"] = result.ddp
            self.echo(f"search: DDP over {result.ddp['world_size']} processes; max |Δα| between ranks "
                      f"{result.ddp['max_abs_diff']:.3g}")
        self.log.stage("search", record)
        if not self.main:
            return
        write_json(self.folder / "architecture.json", self.sample)
        write_json(self.folder / "search" / "probs.json", {"probs": self.probs, "decision": decisions(self.probs)})
        candidates = {label: list(m.values) for label, m in self._space(self.cfg.backbone.args).simplify().items()}
        plot_architecture(self.folder / "architecture.png", self.sample, self.probs, candidates,
                          title=f"{self.cfg.backbone.name} on {self.data.name}: {result.strategy}")

    def _tune(self) -> None:
        from nni_dash.pipeline import tune

        from nni_dash.budget import auto_steps
        t = self.cfg.tune
        folds, n, batch_size = tune_shape(self)
        trial_steps = auto_steps("trial", n, batch_size) if self.budget.steps_based else None
        deadline = self.budget.deadline("tune", self._left("tune"), needs=later_needs(self, "tune"))
        length = f"{t.trial_epochs} epoch(s)" if trial_steps is None else f"{trial_steps} steps"
        where = "the val split" if folds == 1 else f"{folds}-fold cross-validation over train+val"
        self.echo(f"tune: {t.tuner}, up to {t.max_trials} trial(s) of {length} each, scored on {where}"
                  + (f", until {deadline - self.budget.started:.0f} s" if deadline else ""))
        tb = tensorboard_logger(self.tb_root, "tune") if self.main else None
        candidates: Any = self.sample
        if t.compare_backbone and self.searched():
            backbone_sample = self._space(self.retrain_args).default_sample()
            if backbone_sample != self.sample:
                candidates = {"searched": self.sample, "backbone": backbone_sample}
        planned, started = tune_trials(self, compared=isinstance(candidates, dict)), time.monotonic()

        def on_trial(index: int, params: dict[str, Any], score: float) -> None:
            now = time.monotonic()
            eta = (now - started) / (index + 1) * max(0, planned - index - 1)
            if deadline is not None:
                eta = min(eta, max(0.0, deadline - now))
            self.echo(f"  trial {index + 1}/{planned}: {params} -> val {self.data.metric} {score:.4f}  "
                      f"({format_seconds(now - started)} elapsed, ETA {format_seconds(eta)})")
            numeric = {k: float(v) for k, v in params.items() if isinstance(v, (int, float))}
            if "architecture" in params:  # searched (0) or backbone (1) kernels
                numeric["backbone_kernels"] = float(params["architecture"] == "backbone")
            if tb is not None:
                tb.log_metrics({"tune/score": float(score), **{f"tune/{k}": v for k, v in numeric.items()}}, step=index)
            for sink in [self.log.sink, *self.sinks]:
                sink("tune", index, {f"val_{self.data.metric}": float(score), **numeric})

        result = tune(self.data, candidates, backbone_args=self.retrain_args, search_space=t.search_space,
                      tuner=t.tuner, max_trials=t.max_trials, trial_epochs=t.trial_epochs, trial_steps=trial_steps,
                      deadline=deadline, folds=folds, trial_batch_fraction=t.trial_batch_fraction,
                      batch_size=batch_size, early_stop=t.early_stop, recipe=self._recipe(), on_trial=on_trial,
                      prefer="backbone" if isinstance(candidates, dict) and t.prefer_backbone else None,
                      fallback="searched",
                      **self._common())
        if tb is not None:
            tb.finalize("success")
        self.tuned = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in result.best.items()}
        if isinstance(candidates, dict) and "searched" in candidates:
            pref = result.preference or {}
            margin = (f"; searched - backbone = {pref['difference']:+.4f} ± {pref['standard_error']:.4f} (1 corrected SE) over "
                      f"the folds" if pref.get("difference") is not None else "")
            self.echo(f"tune: kept the {self.tuned.get('architecture')} architecture ({result.selected_on}{margin})")
        floor = result.floor
        if floor is not None and not floor["learned"]:
            picked = ", ".join(f"{k}={v}" for k, v in self.tuned.items())
            loss = floor.get("loss") or {}
            kept = (f"ranked them by val loss instead (the lowest is {loss['margin']:.3f} ± {loss['standard_error']:.3f} "
                    f"nats below the constant prediction's)" if loss.get("learned") else
                    "kept the defaults" if floor.get("fallback") else "the pick is noise")
            self.echo(f"warning: tune: the trials' accuracy did not beat the best constant prediction (mean margin "
                      f"{floor['margin']:+.4f} ± {floor['standard_error']:.4f} over {result.folds} fold(s), the best "
                      f"trial's {floor['best_margin']:+.4f}): trials of "
                      f"{length} are too short for accuracy to rank them; {kept} ({picked})")
        self.log.stage("tune", {"tuner": t.tuner, "best": self.tuned, "best_score": result.best_score,
                                "selected_on": result.selected_on, "folds": result.folds,
                                "preference": result.preference, "floor": floor,
                                "trial_steps": trial_steps, "batch_size": batch_size,
                                "trials": result.trials, "seconds": result.seconds})
        if self.main:
            write_json(self.folder / "tune" / "best.json", self.tuned)
            write_json(self.folder / "tune" / "architecture.json", self.retrain_sample())
            with open(self.folder / "tune" / "trials.csv", "w", newline="") as f:
                keys = sorted({k for trial in result.trials for k in trial["params"]})
                writer = csv.writer(f)
                writer.writerow(["trial", *keys, "score", "loss"])
                for i, trial in enumerate(result.trials):
                    writer.writerow([i, *[trial["params"].get(k, "") for k in keys], trial["score"], trial.get("loss")])

    def _retrain(self) -> None:
        from nni_dash.pipeline import retrain

        r = self.cfg.retrain
        recipe = self._recipe()
        source = "tuned" if self.tuned else "config"
        recipe.update({k: float(v) for k, v in (self.tuned or {}).items() if k in recipe})
        if (self.tuned or {}).get("architecture") == "backbone":
            source += ", the backbone's kernels (the searched ones did not beat them in tuning; tune: selected_on)"
        data, batch_size = retrain_shape(self)
        n = len(data.x_train)
        steps = self._steps("retrain", n, batch_size)
        length = f"{r.epochs} epoch(s)" if steps is None else f"{steps.wanted} steps"
        on = "train+val" if r.refit else "train"
        hp = {k: recipe[k] for k in ("learning_rate", "momentum", "weight_decay", "dropout")}
        self.echo(f"retrain: {length} from scratch on {on} ({n} samples, batch {batch_size}), {source} hparams {hp}")
        sample = self.retrain_sample()
        result = retrain(data, sample, backbone_args=self.retrain_args, epochs=r.epochs, steps=steps,
                         batch_size=batch_size, select_best=r.select_best and not r.refit, validate=not r.refit,
                         ckpt_dir=str(self.folder / "retrain" / "checkpoints"), ckpt_path=self._resume_path("retrain"),
                         checkpoint_every_n_steps=self.cfg.trainer.checkpoint_every_n_steps,
                         nan_policy=self.cfg.trainer.nan_policy,
                         callbacks=[self._recorder("retrain")], logger=tensorboard_logger(self.tb_root, "retrain"),
                         enable_progress_bar=self.cfg.trainer.progress_bar, **recipe, **self._common())
        tested = ("the last step (trained on train+val)" if r.refit else
                  "the best-validation epoch" if r.select_best else "the last step")
        self.log.stage("retrain", {"hparams": result.hparams, "hparams_source": source, "epochs": result.epochs,
                                   "architecture": sample,
                                   "steps": result.steps, "batch_size": batch_size, "trained_on": on,
                                   "budget": result.budget, "tested": tested,
                                   "num_parameters": result.num_parameters, "test_score": result.test_score,
                                   "val_score": result.val_score, "seconds": result.seconds})
        self.log.data.update(test_score=result.test_score, val_score=result.val_score)
        self.log.final(f"test_{result.metric}", result.test_score)
        if result.val_score is not None:
            self.log.final(f"val_{result.metric}", result.val_score)


def active_stages(cfg: ExperimentConfig, stages: tuple[str, ...]) -> list[str]:
    """The stages of ``stages`` that will train (a disabled tune and a ``none`` search do not)."""
    skip = {"tune"} if not cfg.tune.enabled else set()
    if cfg.search.strategy == "none":
        skip.add("search")
    return [s for s in stages if s not in skip]
