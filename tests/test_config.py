"""ExperimentConfig: YAML round trip, typed dotted overrides, one-line errors, and every file in experiment_configs/."""
from __future__ import annotations

import re
import shlex
import types
from pathlib import Path

import pytest
import yaml

from nni_dash.config import ExperimentConfig, parse_override, yaml_load
from nni_dash.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiment_configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yml")) + sorted(CONFIG_DIR.glob("*.yaml"))
NNICTL = [p for p in CONFIGS if "trialCommand" in yaml.safe_load(p.read_text())]
PIPELINES = [p for p in CONFIGS if p not in NNICTL]
def fake_task(cfg: ExperimentConfig) -> types.SimpleNamespace:
    """What check_inputs reads of a task, with the dimensionality of the config's backbone (2-D for auto)."""
    from nni_dash.backbones import backbone_class
    ndim = 2 if cfg.backbone.name == "auto" else backbone_class(cfg.backbone.name).ndim
    return types.SimpleNamespace(in_channels=1, num_outputs=10, kind="classification", ndim=ndim)


def test_defaults_round_trip_through_yaml(tmp_path):
    cfg = ExperimentConfig().apply_overrides(["search.strategy_args={mode: joint, temperature: [2.0, 0.5]}"])
    cfg.to_yaml(tmp_path / "c.yml")
    assert ExperimentConfig.from_yaml(tmp_path / "c.yml") == cfg
    assert cfg.tune.search_space["learning_rate"]["_value"] == [3e-3, 1e-3, 3e-4]  # the default grid (tune.py)


def test_overrides_are_parsed_as_yaml_and_type_checked():
    cfg = ExperimentConfig().apply_overrides([
        "search.epochs=3", "search.learning_rate=1e-3", "retrain.lr_milestones=[2, 4]", "trainer.devices=2",
        "search.strategy_args.arc_learning_rate=5e-3", "tune.search_space.learning_rate._value=[0.5]",
        "task.options.seed=3", "trainer.extra={num_nodes: 2}"])
    assert cfg.search.epochs == 3 and cfg.search.learning_rate == pytest.approx(1e-3)
    assert cfg.retrain.lr_milestones == [2, 4] and cfg.trainer.devices == 2
    assert cfg.search.strategy_args == {"arc_learning_rate": 5e-3}
    assert cfg.tune.search_space["learning_rate"] == {"_type": "choice", "_value": [0.5]}
    assert cfg.trainer.trainer_kwargs()["num_nodes"] == 2
    assert ExperimentConfig().apply_overrides({"retrain.epochs": 7}).retrain.epochs == 7
    assert isinstance(ExperimentConfig().apply_overrides(["search.learning_rate=1"]).search.learning_rate, float)


@pytest.mark.parametrize("override, pattern", [
    ("search.epochz=3", r"^search\.epochz: unknown key; allowed keys in search: strategy, .*epochs"),
    ("serch.epochs=3", r"^serch: unknown key; allowed keys: task, budget, backbone"),
    ("search.epochs=ten", r"^search\.epochs: expected int, got str 'ten'"),
    ("search.epochs=true", r"^search\.epochs: expected int, got bool"),
    ("retrain.lr_milestones=[1, x]", r"^retrain\.lr_milestones\[1\]: expected int"),
    ("search.epochs.sub=1", r"^search\.epochs: is a value"),
    ("search.strategy=NOPE", r"^search\.strategy: unknown value 'NOPE'; allowed: DASH, DARTS, GumbelDARTS, "
                             r"RandomOneShot, ENAS, .*none"),
    ("task.name=nope", r"^task\.name: unknown value 'nope'; allowed: .*digits"),
    ("backbone.name=vgg", r"^backbone\.name: unknown value 'vgg'; allowed: .*wrn"),
    ("tune.tuner=SMAC9", r"^tune\.tuner: unknown value 'SMAC9'; allowed: GridSearch"),
    ("search.undecided=random", r"^search\.undecided: unknown value 'random'; allowed: backbone, argmax"),
    ("search.epochs=0", r"^search\.epochs=0: must be >= 1"),
    ("retrain.dropout=1.0", r"^retrain\.dropout=1\.0: must be >= 0 and < 1"),
    ("tune.search_space.width={_type: choice, _value: [1]}", r"^tune\.search_space: unknown key 'width'; allowed"),
    ("trainer.extra={max_epochs: 3}", r"^trainer\.extra\.max_epochs: set by the pipeline itself"),
    ("novalue", r"expected key\.sub=value"),
])
def test_bad_values_raise_one_line_config_errors(override, pattern):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig().apply_overrides([override]).validate()
    message = str(info.value)
    assert "\n" not in message and re.search(pattern, message), message


def test_unknown_key_in_yaml_names_its_path(tmp_path):
    (tmp_path / "c.yml").write_text("search:\n  strategy: DASH\n  arc_lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"^search\.arc_lr: unknown key; allowed keys in search"):
        ExperimentConfig.from_yaml(tmp_path / "c.yml")
    (tmp_path / "d.yml").write_text("search: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"^search: expected a mapping"):
        ExperimentConfig.from_yaml(tmp_path / "d.yml")


def test_scientific_floats_and_parse_override():
    assert yaml_load("a: 1e-3\nb: 5E2\nc: '1e-3'") == {"a": 1e-3, "b": 500.0, "c": "1e-3"}
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=null") == ("a.b", None)


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_configs_validate(path):
    from nni_dash.cli.stages import check_inputs
    cfg = ExperimentConfig.from_yaml(path).validate()
    check_inputs(cfg, fake_task(cfg))  # backbone and strategy arguments are accepted


def _samples(spec: dict) -> list:
    if spec["_type"] == "choice":
        return list(spec["_value"])
    return [spec["_value"][0], spec["_value"][1]]  # bounds of uniform/loguniform/quniform ranges


@pytest.mark.parametrize("path", NNICTL, ids=lambda p: p.name)
def test_nnictl_configs_are_valid_and_their_trials_resolve(path):
    from nni.experiment.config import ExperimentConfig as NniExperimentConfig

    from nni_dash.cli.stages import check_inputs
    nni_cfg = NniExperimentConfig.load(str(path)).canonical_copy()  # NNI's validation; paths resolved
    assert Path(nni_cfg.trial_code_directory) == path.parent  # "." is the YAML's own folder
    assert nni_cfg.trial_concurrency == 1
    argv = shlex.split(nni_cfg.trial_command)
    assert argv[1:3] == ["-m", "nni_dash.nni_trial"]
    pipeline = Path(nni_cfg.trial_code_directory) / argv[argv.index("--config") + 1]
    fixed = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    base = ExperimentConfig.from_yaml(pipeline).apply_overrides(fixed)
    for key, spec in nni_cfg.search_space.items():
        for value in _samples(spec):
            cfg = base.apply_overrides({key: value}).validate()
            check_inputs(cfg, fake_task(cfg))


def test_compare_strategies_covers_every_strategy():
    space = yaml.safe_load((CONFIG_DIR / "compare_strategies.yml").read_text())["searchSpace"]
    assert set(space["search.strategy"]["_value"]) >= {"DASH", "DARTS", "GumbelDARTS", "RandomOneShot", "ENAS", "none"}


@pytest.mark.parametrize("data, fragment", [
    ({"\n": 1}, "'\\n': unknown key"),                       # found by the config-file fuzz test
    ({"search": {"x y": 1}}, "search.'x y': unknown key"),
])
def test_unusual_yaml_keys_give_one_line_errors(data, fragment):
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(data).validate()
    assert "\n" not in str(info.value) and fragment in str(info.value)
