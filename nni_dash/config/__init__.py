"""Typed experiment configuration: YAML -> dataclasses -> pipeline arguments, and back.

One :class:`ExperimentConfig` describes a whole pipeline run (search -> tune -> retrain -> test)::

    cfg = ExperimentConfig.from_yaml("experiment_configs/digits_quick.yml")
    cfg = cfg.apply_overrides(["search.epochs=2", "search.strategy_args.arc_learning_rate=1e-2"])
    cfg.validate()                     # names, ranges, allowed values (no data loaded)
    cfg.to_yaml("out/config.yml")      # the resolved config; from_yaml(...) of it == cfg

Unknown keys and wrong types raise :class:`~nni_dash.errors.ConfigError` with the dotted key path
and the allowed keys/values. ``--set`` values are parsed as YAML (``3``, ``0.1``, ``1e-3``,
``[60, 120]``, ``{mode: joint}``, ``null``). Free-form sections (``task.options``,
``backbone.args``, ``search.strategy_args``, ``tune.search_space``, ``trainer.extra``) are dicts
passed on as keyword arguments; their keys are checked by the object they configure.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from nni_dash.config._typed import (
    build, check_range, one_of, parse_override, set_path, yaml_load,
)
from nni_dash.errors import ConfigError

__all__ = ["TaskConfig", "BudgetConfig", "BackboneConfig", "SearchConfig", "TuneConfig", "RetrainConfig", "TrainerConfig",
           "ExperimentConfig", "parse_override", "yaml_load", "RESERVED_TRAINER_KEYS"]

# Trainer arguments the pipeline sets itself (trainer.extra may not override them).
RESERVED_TRAINER_KEYS = ("max_epochs", "logger", "enable_progress_bar", "enable_model_summary", "callbacks",
                         "num_sanity_val_steps", "limit_train_batches", "enable_checkpointing", "plugins")


@dataclasses.dataclass
class TaskConfig:
    name: str = "digits"                                             # nni_dash.tasks.list_tasks()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # builder options (seed, path, ...)
    standardize: bool = True                                         # per-channel, fitted on the train split


@dataclasses.dataclass
class BudgetConfig:
    mode: str = "auto"                                               # auto | time | epochs (nni_dash.budget)
    minutes: Optional[float] = None                                  # time: limit of the whole run


@dataclasses.dataclass
class BackboneConfig:
    name: str = "auto"                                               # auto (1-D: resnet1d, 2-D: wrn) or a backbone
    args: dict[str, Any] = dataclasses.field(default_factory=dict)   # search space (depth, width, kernel_sizes, ...)
    retrain_args: Optional[dict[str, Any]] = None                   # overrides for tune/retrain (width: 4);
    #                                                                  None: the backbone's retrain_defaults


@dataclasses.dataclass
class SearchConfig:
    strategy: str = "DASH"                                           # nni_dash.pipeline.STRATEGIES
    strategy_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # strategy constructor kwargs
    epochs: int = 10                                                 # budget.mode epochs only
    batch_size: Optional[int] = None                                 # None: nni_dash.budget.auto_batch_size
    optimizer: str = "adamw"                                         # weights: adamw | adam | sgd (Nesterov)
    learning_rate: float = 1e-3
    momentum: float = 0.9                                            # sgd only
    weight_decay: float = 1e-2
    undecided: str = "backbone"                                      # layers within noise: backbone | argmax (reference)


def _default_grid() -> dict[str, Any]:
    from nni_dash.pipeline.tune import DEFAULT_GRID
    return copy.deepcopy(DEFAULT_GRID)


@dataclasses.dataclass
class TuneConfig:
    enabled: bool = True
    tuner: str = "GridSearch"                                        # nni_dash.pipeline.TUNERS
    search_space: dict[str, Any] = dataclasses.field(default_factory=_default_grid)  # NNI HPO format
    max_trials: int = 24
    folds: Optional[int] = None                                      # None: cross-validate small sets (tune.py)
    trial_epochs: int = 3                                            # budget.mode epochs only
    trial_batch_fraction: float = 1.0
    early_stop: bool = True                                          # GridSearch: skip smaller lrs (reference)
    compare_backbone: bool = True                                    # also score the backbone's own kernels
    prefer_backbone: bool = True                                     # ...and keep them unless beaten by > 1 SE (CV, corrected)


@dataclasses.dataclass
class RetrainConfig:
    epochs: int = 20                                                 # budget.mode epochs only
    batch_size: Optional[int] = None                                 # None: nni_dash.budget.auto_batch_size
    learning_rate: float = 1e-3                                      # tuned values replace these four
    momentum: float = 0.9
    weight_decay: float = 1e-2
    dropout: float = 0.0
    optimizer: str = "adamw"                                         # adamw | adam | sgd (Nesterov)
    label_smoothing: float = 0.1                                     # classification (search too)
    schedule: str = "cosine"                                         # cosine | constant | step (lr_milestones)
    warmup_fraction: float = 0.05                                    # cosine: linear warm-up share of the steps
    lr_milestones: list[int] = dataclasses.field(default_factory=list)
    lr_gamma: float = 0.2
    refit: bool = True                                               # train on train+val, test the last step
    select_best: bool = False                                        # refit false: test the best-val epoch


@dataclasses.dataclass
class TrainerConfig:
    accelerator: str = "auto"                                        # cpu | gpu | auto | ...
    devices: Union[int, str, list[int]] = 1
    strategy: str = "auto"                                           # auto | ddp | ddp_find_unused_parameters_true
    precision: Union[int, str] = "32-true"                           # 32-true | 16-mixed | bf16-mixed | ...
    progress_bar: bool = True
    log_every_n_steps: int = 5
    threads: Optional[int] = None                                    # torch CPU threads (None: torch default)
    nan_policy: str = "stop"                                         # stop (exit 3) | skip the bad batch
    checkpoint_every_n_steps: int = 20                               # mid-epoch last.ckpt for --resume (0: off)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # any other Trainer kwargs (num_nodes, ...)

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Lightning's ``Trainer`` (what the stage functions take as ``trainer_kwargs``)."""
        return dict(accelerator=self.accelerator, devices=self.devices, strategy=self.strategy,
                    precision=self.precision, log_every_n_steps=self.log_every_n_steps, **self.extra)


@dataclasses.dataclass
class ExperimentConfig:
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    budget: BudgetConfig = dataclasses.field(default_factory=BudgetConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    seed: int = 0

    # ---- YAML in/out ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> "ExperimentConfig":
        return build(cls, {} if data is None else data, path)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ExperimentConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config: no such file {str(path)!r}")
        try:
            data = yaml_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config: {path} is not valid YAML: {' '.join(str(err).split())}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---- overrides --------------------------------------------------------------------------------
    def apply_overrides(self, overrides: list[str] | dict[str, Any]) -> "ExperimentConfig":
        """A copy with ``key.sub=value`` strings (or a ``{dotted key: value}`` dict) applied and type-checked."""
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        data = self.to_dict()
        for key, value in items:
            set_path(data, key, value, type(self))
        return type(self).from_dict(data)

    # ---- value checks -----------------------------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Check names against the registries and numbers against their ranges (no data is loaded)."""
        from nni_dash.backbones import list_backbones
        from nni_dash.evaluator import OPTIMIZERS
        from nni_dash.strategy.decision import UNDECIDED
        from nni_dash.pipeline import STRATEGIES, TUNERS
        from nni_dash.tasks import list_tasks

        from nni_dash.budget import MODES, Budget
        from nni_dash.evaluator import SCHEDULES
        one_of("task.name", self.task.name, list_tasks())
        one_of("backbone.name", self.backbone.name, ["auto", *list_backbones()])
        one_of("budget.mode", self.budget.mode, MODES)
        if self.budget.minutes is not None:
            check_range("budget.minutes", self.budget.minutes, low=0, strict=True)
            if self.budget.mode != "time":
                raise ConfigError(f"budget.minutes={self.budget.minutes!r}: only used with budget.mode=time; "
                                  f"set budget.mode: time (or --budget {self.budget.minutes:g}m)")
        Budget(self.budget.mode, self.budget.minutes)  # mode time without minutes
        one_of("search.optimizer", self.search.optimizer, OPTIMIZERS)
        one_of("search.undecided", self.search.undecided, UNDECIDED)
        one_of("retrain.schedule", self.retrain.schedule, SCHEDULES)
        one_of("search.strategy", self.search.strategy, STRATEGIES)
        one_of("tune.tuner", self.tune.tuner, TUNERS)
        one_of("retrain.optimizer", self.retrain.optimizer, OPTIMIZERS)
        for key in ("search.epochs", "tune.max_trials", "tune.trial_epochs", "retrain.epochs",
                    "trainer.log_every_n_steps"):
            check_range(key, self._get(key), low=1)
        for key in ("search.batch_size", "retrain.batch_size", "tune.folds"):
            if self._get(key) is not None:
                check_range(key, self._get(key), low=1)
        check_range("retrain.label_smoothing", self.retrain.label_smoothing, low=0, high=1, strict_high=True)
        check_range("retrain.warmup_fraction", self.retrain.warmup_fraction, low=0, high=1, strict_high=True)
        check_range("trainer.checkpoint_every_n_steps", self.trainer.checkpoint_every_n_steps, low=0)
        for key in ("search.learning_rate", "retrain.learning_rate", "retrain.lr_gamma"):
            check_range(key, self._get(key), low=0, strict=True)
        for key in ("search.momentum", "search.weight_decay", "retrain.momentum", "retrain.weight_decay"):
            check_range(key, self._get(key), low=0)
        if self.trainer.threads is not None:
            check_range("trainer.threads", self.trainer.threads, low=1)
        check_range("retrain.dropout", self.retrain.dropout, low=0, high=1, strict_high=True)
        check_range("tune.trial_batch_fraction", self.tune.trial_batch_fraction, low=0, high=1, strict=True)
        from nni_dash.pipeline.tune import TUNED_KEYS
        for key, spec in self.tune.search_space.items():
            one_of("tune.search_space", key, TUNED_KEYS, what="key")
            if not isinstance(spec, dict) or "_type" not in spec or "_value" not in spec:
                raise ConfigError(f"tune.search_space.{key}: expected {{_type: ..., _value: [...]}} (NNI search "
                                  f"space format), got {spec!r}")
        from nni_dash.config._checks import check_experiment
        check_experiment(self)
        bad = sorted(set(self.trainer.extra) & set(RESERVED_TRAINER_KEYS))
        if bad:
            raise ConfigError(f"trainer.extra.{bad[0]}: set by the pipeline itself; reserved: "
                              f"{', '.join(RESERVED_TRAINER_KEYS)}")
        return self

    def _get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj
