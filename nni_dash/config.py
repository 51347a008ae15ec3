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
import re
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from nni_dash.errors import ConfigError

__all__ = ["TaskConfig", "BackboneConfig", "SearchConfig", "TuneConfig", "RetrainConfig", "TrainerConfig",
           "ExperimentConfig", "parse_override", "yaml_load", "RESERVED_TRAINER_KEYS"]

# Trainer arguments the pipeline sets itself (trainer.extra may not override them).
RESERVED_TRAINER_KEYS = ("max_epochs", "logger", "enable_progress_bar", "enable_model_summary", "callbacks",
                         "num_sanity_val_steps", "limit_train_batches", "enable_checkpointing")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; accept it (and ``1E5``, ``.5``) as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with scientific-notation floats."""
    return yaml.load(text, Loader=_Loader)


@dataclasses.dataclass
class TaskConfig:
    name: str = "digits"                                             # nni_dash.tasks.list_tasks()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # builder options (seed, path, ...)


@dataclasses.dataclass
class BackboneConfig:
    name: str = "wrn"                                                # nni_dash.backbones.list_backbones()
    args: dict[str, Any] = dataclasses.field(default_factory=dict)   # search space (depth, width, kernel_sizes, ...)
    retrain_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides for tune/retrain (width: 4)


@dataclasses.dataclass
class SearchConfig:
    strategy: str = "DASH"                                           # nni_dash.pipeline.STRATEGIES
    strategy_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # strategy constructor kwargs
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1                                       # weights: SGD-Nesterov
    momentum: float = 0.9
    weight_decay: float = 5e-4


def _reference_grid() -> dict[str, Any]:
    from nni_dash.pipeline.tune import REFERENCE_GRID
    return copy.deepcopy(REFERENCE_GRID)


@dataclasses.dataclass
class TuneConfig:
    enabled: bool = True
    tuner: str = "GridSearch"                                        # nni_dash.pipeline.TUNERS
    search_space: dict[str, Any] = dataclasses.field(default_factory=_reference_grid)  # NNI HPO format
    max_trials: int = 24
    trial_epochs: int = 3
    trial_batch_fraction: float = 1.0
    early_stop: bool = True                                          # GridSearch: skip smaller lrs (reference)


@dataclasses.dataclass
class RetrainConfig:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.1                                       # tuned values replace these four
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.0
    optimizer: str = "sgd"                                           # sgd | adam
    lr_milestones: list[int] = dataclasses.field(default_factory=list)
    lr_gamma: float = 0.2
    select_best: bool = False                                        # test the best-validation epoch


@dataclasses.dataclass
class TrainerConfig:
    accelerator: str = "auto"                                        # cpu | gpu | auto | ...
    devices: Union[int, str, list[int]] = 1
    strategy: str = "auto"                                           # auto | ddp | ddp_find_unused_parameters_true
    precision: Union[int, str] = "32-true"                           # 32-true | 16-mixed | bf16-mixed | ...
    progress_bar: bool = True
    log_every_n_steps: int = 5
    threads: Optional[int] = None                                    # torch CPU threads (None: torch default)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # any other Trainer kwargs (num_nodes, ...)

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Lightning's ``Trainer`` (what the stage functions take as ``trainer_kwargs``)."""
        return dict(accelerator=self.accelerator, devices=self.devices, strategy=self.strategy,
                    precision=self.precision, log_every_n_steps=self.log_every_n_steps, **self.extra)


@dataclasses.dataclass
class ExperimentConfig:
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)
    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)
    retrain: RetrainConfig = dataclasses.field(default_factory=RetrainConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    seed: int = 0

    # ---- YAML in/out ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> "ExperimentConfig":
        return _build(cls, {} if data is None else data, path)

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
            _set_path(data, key, value, type(self))
        return type(self).from_dict(data)

    # ---- value checks -----------------------------------------------------------------------------
    def validate(self) -> "ExperimentConfig":
        """Check names against the registries and numbers against their ranges (no data is loaded)."""
        from nni_dash.backbones import list_backbones
        from nni_dash.evaluator import OPTIMIZERS
        from nni_dash.pipeline import STRATEGIES, TUNERS
        from nni_dash.tasks import list_tasks

        _one_of("task.name", self.task.name, list_tasks())
        _one_of("backbone.name", self.backbone.name, list_backbones())
        _one_of("search.strategy", self.search.strategy, STRATEGIES)
        _one_of("tune.tuner", self.tune.tuner, TUNERS)
        _one_of("retrain.optimizer", self.retrain.optimizer, OPTIMIZERS)
        for key in ("search.epochs", "search.batch_size", "tune.max_trials", "tune.trial_epochs",
                    "retrain.epochs", "retrain.batch_size", "trainer.log_every_n_steps"):
            _check_range(key, self._get(key), low=1)
        for key in ("search.learning_rate", "retrain.learning_rate", "retrain.lr_gamma"):
            _check_range(key, self._get(key), low=0, strict=True)
        for key in ("search.momentum", "search.weight_decay", "retrain.momentum", "retrain.weight_decay"):
            _check_range(key, self._get(key), low=0)
        if self.trainer.threads is not None:
            _check_range("trainer.threads", self.trainer.threads, low=1)
        _check_range("retrain.dropout", self.retrain.dropout, low=0, high=1, strict_high=True)
        _check_range("tune.trial_batch_fraction", self.tune.trial_batch_fraction, low=0, high=1, strict=True)
        from nni_dash.pipeline.tune import TUNED_KEYS
        for key, spec in self.tune.search_space.items():
            _one_of("tune.search_space", key, TUNED_KEYS, what="key")
            if not isinstance(spec, dict) or "_type" not in spec or "_value" not in spec:
                raise ConfigError(f"tune.search_space.{key}: expected {{_type: ..., _value: [...]}} (NNI search "
                                  f"space format), got {spec!r}")
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


# ---- helpers --------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """``"search.epochs=3"`` -> ``("search.epochs", 3)`` (the value is parsed as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key.sub=value (e.g. search.epochs=3)")
    try:
        return key, yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return key, raw


def _set_path(data: dict[str, Any], dotted: str, value: Any, cls: type) -> None:
    parts = dotted.split(".")
    node, node_cls = data, cls  # node_cls: the dataclass describing `node`, None inside free-form dicts
    for i, part in enumerate(parts):
        here = ".".join(parts[:i + 1])
        if node_cls is not None:
            fields = {f.name: f for f in dataclasses.fields(node_cls)}
            if part not in fields:
                raise ConfigError(_unknown_key(here, node_cls))
            hint = typing.get_type_hints(node_cls)[part]
            next_cls = hint if dataclasses.is_dataclass(hint) else None
        else:
            next_cls = None
        if i == len(parts) - 1:
            node[part] = value
            return
        if not isinstance(node.get(part), dict):
            if node_cls is not None and next_cls is None and typing.get_origin(hint) is not dict:
                raise ConfigError(f"{here}: is a value, not a section; cannot set {dotted!r}")
            node[part] = {}
        node, node_cls = node[part], next_cls


def _unknown_key(path: str, cls: type) -> str:
    parent = path.rpartition(".")[0]
    allowed = ", ".join(f.name for f in dataclasses.fields(cls))
    return f"{path}: unknown key; allowed keys{' in ' + parent if parent else ''}: {allowed}"


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(_unknown_key(here, cls))
        kwargs[key] = _coerce(value, hints[key], here)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted as floats)."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                continue
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {k: _coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
        if value is None:
            return {}
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _one_of(key: str, value: Any, allowed: Any, what: str = "value") -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


def _check_range(key: str, value: float, *, low: float, high: float | None = None, strict: bool = False,
                 strict_high: bool = False) -> None:
    bad_low = value <= low if strict else value < low
    bad_high = high is not None and (value >= high if strict_high else value > high)
    if bad_low or bad_high:
        lo = f"> {low}" if strict else f">= {low}"
        hi = "" if high is None else (f" and < {high}" if strict_high else f" and <= {high}")
        raise ConfigError(f"{key}={value!r}: must be {lo}{hi}")
