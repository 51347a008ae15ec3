"""NNI's multi-trial strategies on the DashConv space: pipeline, Python API, CLI, bad input."""
from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn as nn
from nni.nas.experiment import NasExperiment, NasExperimentConfig
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.strategy import RegularizedEvolution

from nni_dash.backbones import create_backbone, rebuild
from nni_dash.budget import StepBudget
from nni_dash.cli import main
from nni_dash.errors import ConfigError
from nni_dash.evaluator import task_evaluator
from nni_dash.nn import parse_candidate
from nni_dash.pipeline import STRATEGIES, make_strategy, search
from nni_dash.pipeline.multitrial import MULTI_TRIAL, TrialBudget, TrialScore
from nni_dash.tasks import create_task

ARGS = {"base_channels": 4, "kernel_sizes": [3, 5], "dilations": [1, 7]}


@pytest.fixture(scope="module")
def lag():
    return create_task("lag", lag=14, n_train=96, n_val=64, n_test=64)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", MULTI_TRIAL)
def test_each_multi_trial_strategy_samples_trains_and_exports(strategy, lag):
    trials = []
    start = time.monotonic()
    result = search(lag, backbone="resnet1d", backbone_args=ARGS, strategy=strategy, batch_size=32,
                    steps=StepBudget(1, deadline=start + 8), on_trial=lambda *t: trials.append(t))
    assert time.monotonic() - start < 8 + 15  # the last trial may run past the deadline by one trial
    space = create_backbone("resnet1d", in_channels=1, num_outputs=2, **ARGS).simplify()
    assert set(result.sample) == set(space) and all(v in space[k].values for k, v in result.sample.items())
    assert trials and result.budget["trials"] == len(trials)
    assert all(sample and 0.0 <= score <= 1.0 for _, sample, score in trials)
    best = max(score for *_, score in trials)
    assert result.budget["best_val_score"] == best
    assert result.sample in [s for _, s, score in trials if score == best]  # the export is the best trial
    net = rebuild("resnet1d", result.sample, in_channels=1, num_outputs=2, **ARGS)  # a plain CNN
    k, d = parse_candidate(result.sample["b1c1"])
    conv = net.blocks[0].body[0]
    assert type(conv) is nn.Conv1d and conv.kernel_size == (k,) and conv.dilation == (d,)


class Tiny(ModelSpace):
    def __init__(self):
        super().__init__()
        from nni_dash.nn import DashConv1d
        self.c1 = DashConv1d(1, 4, kernel_sizes=(3, 5), dilations=(1, 7), label="c1")
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.c1(x)).amax(-1))


def test_regularized_evolution_from_python_with_nnis_own_api(lag):
    budget = TrialBudget(30, None)
    evaluator = task_evaluator(lag, batch_size=32, max_epochs=20, callbacks=[budget, TrialScore(lag, budget=budget)],
                               trainer_kwargs={"limit_val_batches": 0})
    config = NasExperimentConfig("sequential", "raw")
    config.execution_engine.max_model_count = 4
    exp = NasExperiment(Tiny(), evaluator, RegularizedEvolution(population_size=3, sample_size=2, seed=0),
                        config=config)
    exp.run()
    [sample] = exp.export_top_models(formatter="dict")
    assert set(sample) == {"c1"} and sample["c1"] in {"k3d1", "k3d7", "k5d1", "k5d7"}
    [net] = exp.export_top_models(formatter="instance")
    assert type(net.c1) is nn.Conv1d and net(torch.randn(2, 1, 48)).shape == (2, 2)


def test_unknown_strategy_lists_every_name_including_multi_trial():
    with pytest.raises(ConfigError) as err:
        make_strategy("Evolution")
    assert all(name in str(err.value) for name in STRATEGIES) and "RegularizedEvolution" in str(err.value)


def test_bad_multi_trial_arguments_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"search.strategy_args \(RegularizedEvolution\)"):
        make_strategy("RegularizedEvolution", population_size=2, sample_size=5)


def test_multi_trial_on_a_space_without_searchable_layers_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.yml"
    cfg.write_text("task: {name: lag, options: {n_train: 64, n_val: 32, n_test: 32}}\n"
                   "backbone: {name: resnet1d, args: {kernel_sizes: [3], dilations: [1]}}\n")
    out = tmp_path / "out"
    code = main(["search", str(cfg), "--out", str(out), "--set", "search.strategy=RegularizedEvolution"])
    err = capsys.readouterr().err.strip().splitlines()
    # one candidate per layer: NNI simplifies the space to nothing to search
    assert code == 2 and len(err) == 1 and "no searchable layer" in err[0], err
    assert not out.exists() and not (tmp_path / "out.incomplete").exists()


@pytest.mark.slow
def test_cli_search_with_regularized_evolution_writes_the_usual_artefacts(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("task: {name: lag, options: {n_train: 96, n_val: 64, n_test: 64}}\n"
                   f"backbone: {{name: resnet1d, args: {json.dumps(ARGS)}}}\n")
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--out", str(out), "--budget", "0.75m", "--set", "search.strategy=RegularizedEvolution",
                 "--set", "trainer.progress_bar=false"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"]["search"]["strategy"] == "RegularizedEvolution"
    assert metrics["stages"]["search"]["budget"]["trials"] >= 1
    arch = json.loads((out / "architecture.json").read_text())
    assert set(arch) == {f"b{b}c{c}" for b in (1, 2, 3) for c in (1, 2, 3)}
