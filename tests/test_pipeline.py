"""Pipeline stages on real built-in tasks: a tiny search + retrain beats a trivial baseline per kind."""
import pytest
import torch

from nni_dash.backbones import create_backbone, default_sample, list_backbones, rebuild
from nni_dash.errors import ConfigError
from nni_dash.pipeline import make_strategy, retrain, search, tune
from nni_dash.pipeline.search import head_for
from nni_dash.tasks import create_task
from nni_dash.tasks.metrics import higher_is_better, trivial_baseline_score

# (task, options, backbone, backbone args, search epochs, retrain epochs, lr)
CASES = {
    "2d-label": ("digits", {}, "wrn", dict(depth=10, kernel_sizes=(3, 5), dilations=(1, 2)), 1, 4, 0.05),
    "1d-label": ("mnist1d", dict(n_train=1200, n_val=200, n_test=400), "resnet1d",
                 dict(base_channels=16, kernel_sizes=(3, 5, 7), dilations=(1, 2)), 1, 6, 0.05),
    "2d-dense": ("darcy", dict(resolution=16, n_train=200, n_val=40, n_test=40), "wrn",
                 dict(depth=10, kernel_sizes=(3, 5), dilations=(1, 2)), 1, 8, 0.02),
    "1d-dense": ("burgers", dict(n_train=200, n_val=40, n_test=40, resolution=64), "tcn",
                 dict(channels=16, levels=2, causal=False, kernel_sizes=(3, 5), dilations=(1, 2)), 1, 8, 0.02),
}


def beats(score, baseline, metric, margin):
    return score > baseline + margin if higher_is_better(metric) else score < baseline - margin


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_tiny_search_and_retrain_beat_trivial_baseline(case):
    task, options, backbone, args, search_epochs, epochs, lr = CASES[case]
    data = create_task(task, **options)
    found = search(data, backbone=backbone, backbone_args=args, strategy="DASH", epochs=search_epochs,
                   batch_size=32, optimizer="sgd", learning_rate=lr, weight_decay=5e-4,
                   strategy_args=dict(batch_fraction=0.5))
    assert set(found.sample) == set(create_backbone(backbone, in_channels=data.in_channels,
                                                    num_outputs=data.num_outputs, head=head_for(data.kind),
                                                    **args).simplify())
    result = retrain(data, found.sample, backbone=backbone, backbone_args=args, epochs=epochs, batch_size=32,
                     optimizer="sgd", schedule="constant", learning_rate=lr, weight_decay=5e-4)
    baseline = trivial_baseline_score(data)
    margin = 0.2 if data.kind == "classification" else 0.05 * abs(baseline)
    assert beats(result.test_score, baseline, data.metric, margin), (result.test_score, baseline)


def test_none_strategy_is_the_hand_designed_backbone():
    data = create_task("digits")
    args = dict(depth=10, kernel_sizes=(3, 5), dilations=(1, 2))
    found = search(data, backbone="wrn", backbone_args=args, strategy="none")
    assert found.seconds == 0 and set(found.sample.values()) == {"k3d1"}
    assert found.sample == default_sample("wrn", in_channels=1, num_outputs=10, **args)


def test_tune_picks_the_best_trial_and_respects_the_budget():
    data = create_task("digits")
    args = dict(depth=10, kernel_sizes=(3,), dilations=(1,))
    sample = default_sample("wrn", in_channels=1, num_outputs=10, **args)
    space = {"learning_rate": {"_type": "choice", "_value": [0.05, 1e-5]}}
    result = tune(data, sample, backbone="wrn", backbone_args=args, search_space=space, trial_epochs=1,
                  trial_batch_fraction=0.5)
    assert len(result.trials) == 2
    assert result.best["learning_rate"] == 0.05  # a 1e-5 learning rate cannot learn in one epoch
    assert result.best_score == max(t["score"] for t in result.trials)
    with pytest.raises(ConfigError, match="unknown key.*tunable"):
        tune(data, sample, backbone="wrn", backbone_args=args, search_space={"batch": {"_type": "choice",
                                                                                       "_value": [1]}})
    with pytest.raises(ConfigError, match="unknown tuner 'Bayes'.*GridSearch"):
        tune(data, sample, backbone="wrn", backbone_args=args, tuner="Bayes")


def test_rebuild_at_another_width_keeps_the_architecture():
    args = dict(depth=10, kernel_sizes=(3, 5), dilations=(1, 3))
    space = create_backbone("wrn", in_channels=3, num_outputs=4, width=1, **args)
    sample = {label: m.values[-1] for label, m in space.simplify().items()}  # all k5d3
    narrow = rebuild("wrn", sample, in_channels=3, num_outputs=4, width=1, **args)
    wide = rebuild("wrn", sample, in_channels=3, num_outputs=4, width=4, **args)
    convs = [m for m in wide.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(convs) == len(sample) and all(c.kernel_size == (5, 5) and c.dilation == (3, 3) for c in convs)
    n_narrow, n_wide = (sum(p.numel() for p in m.parameters()) for m in (narrow, wide))
    assert n_wide > 8 * n_narrow
    assert wide(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ConfigError, match="no choice for layer"):
        rebuild("wrn", {"stem": "k3d1"}, in_channels=3, num_outputs=4, **args)
    with pytest.raises(ConfigError, match="not a candidate"):
        rebuild("wrn", {**sample, "stem": "k9d9"}, in_channels=3, num_outputs=4, **args)


@pytest.mark.parametrize("name", ["wrn", "resnet1d", "tcn"])
def test_backbone_labels_do_not_depend_on_width_and_heads_fit(name):
    ndim = 2 if name == "wrn" else 1
    narrow = create_backbone(name, in_channels=2, num_outputs=3)
    wide = create_backbone(name, in_channels=2, num_outputs=3, width=2)
    assert list(narrow.simplify()) == list(wide.simplify())
    assert set(narrow.default_sample()) == set(narrow.simplify())
    dense = create_backbone(name, in_channels=2, num_outputs=3, head="dense")
    assert dense(torch.randn(2, 2, *([16] * ndim))).shape == (2, 3, *([16] * ndim))
    assert name in list_backbones()


@pytest.mark.parametrize("name,match", [("SNAS", "unknown strategy 'SNAS'.*DASH, DARTS"),
                                        ("DASH", "mode='x'")])
def test_strategy_lookup_errors(name, match):
    with pytest.raises(ConfigError, match=match):
        make_strategy(name, mode="x") if name == "DASH" else make_strategy(name)
