"""The DASH strategy through NasExperiment: modes, known-answer searches, dashify, resume, bad input."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.strategy import DARTS
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from nni_dash.backbones import create_backbone, list_backbones
from nni_dash.errors import ConfigError
from nni_dash.evaluator import task_evaluator
from nni_dash.nn import DashConv1d, dashify, parse_candidate
from nni_dash.strategy import DASH
from nni_dash.tasks.base import TaskData


def random_task(ndim, *, kind="classification", n=48, size=12, channels=2, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((m, channels, *([size] * ndim))).astype(np.float32) for m in (n, n // 2, n // 2)]
    if kind == "classification":
        ys = [(x.reshape(len(x), -1)[:, 0] > 0).astype(np.int64) % outputs for x in xs]
        metric = "accuracy"
    else:
        ys = [x[:, :1] * 2 for x in xs]
        outputs, metric = 1, "rel_l2"
    return TaskData("random", kind, metric, outputs, xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])


def run_search(space, data, strategy, *, epochs=1, batch_size=16, callbacks=None, ckpt_path=None, seed=0):
    """``space`` may be a model space or a factory (called after seeding, for reproducible weights)."""
    pl.seed_everything(seed, verbose=False)
    space = space() if callable(space) and not isinstance(space, nn.Module) else space
    evaluator = task_evaluator(data, batch_size=batch_size, max_epochs=epochs, learning_rate=0.05,
                               callbacks=callbacks)
    if ckpt_path:
        evaluator.fit_kwargs["ckpt_path"] = ckpt_path
    exp = NasExperiment(space, evaluator, strategy)
    exp.run()
    return exp


BACKBONE_CASES = {
    "wrn": (2, dict(depth=10, kernel_sizes=(3, 5), dilations=(1, 2))),
    "resnet1d": (1, dict(base_channels=4, kernel_sizes=(3, 5), dilations=(1, 2), causal=True)),
    "tcn": (1, dict(channels=8, levels=2, kernel_sizes=(3, 5), dilations=(1, 2))),
}


def test_every_registered_backbone_has_a_case():
    assert set(list_backbones()) == set(BACKBONE_CASES)


@pytest.mark.parametrize("mode", ["bilevel", "joint"])
@pytest.mark.parametrize("name", sorted(BACKBONE_CASES))
def test_search_each_backbone_both_modes(name, mode):
    ndim, kwargs = BACKBONE_CASES[name]
    data = random_task(ndim, outputs=3)
    space = create_backbone(name, in_channels=2, num_outputs=3, **kwargs)
    strategy = DASH(mode=mode, depthwise_proxy=(mode == "joint"), batch_fraction=0.5)
    exp = run_search(space, data, strategy)
    sample = exp.export_top_models(formatter="dict")[0]
    assert set(sample) == set(space.simplify())
    probs = strategy.probabilities()
    assert set(probs) == set(sample)
    for label, dist in probs.items():
        assert abs(sum(dist.values()) - 1) < 1e-5 and max(dist, key=dist.get) == sample[label]
    net = exp.export_top_models(formatter="instance")[0]
    assert not any(isinstance(m, DashConv1d) for m in net.modules())
    out = net(torch.from_numpy(data.x_test[:4]))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_dense_head_search_keeps_resolution():
    data = random_task(2, kind="dense_regression", size=10)
    space = create_backbone("wrn", in_channels=2, num_outputs=1, depth=10, head="dense", kernel_sizes=(3, 5),
                            dilations=(1, 3))
    exp = run_search(space, data, DASH(arc_learning_rate=5e-3))
    net = exp.export_top_models(formatter="instance")[0]
    assert net(torch.from_numpy(data.x_test[:2])).shape == (2, 1, 10, 10)


# ---- known-answer searches -----------------------------------------------------------------------
def lag_task(lag, *, seed, length=48):
    """Two +-1 spikes ``lag`` apart at a random place; the label says whether their signs agree."""
    from nni_dash.tasks.synthetic import lag_task as build
    return build(lag=lag, seed=seed, length=length)


class LagNet(ModelSpace):
    def __init__(self):
        super().__init__()
        dash = dict(kernel_sizes=(3, 5), dilations=(1, 7))
        self.c1 = DashConv1d(1, 16, label="c1", **dash)
        self.c2 = DashConv1d(16, 16, label="c2", **dash)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).amax(-1))


def _span(value):
    k, d = parse_candidate(value)
    return d * (k - 1) + 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_lag_task_selects_a_span_covering_the_lag(seed):
    strategy = DASH(arc_learning_rate=0.1, grad_scale=20, warmup_epochs=2)
    run_search(LagNet(), lag_task(14, seed=seed), strategy, epochs=8, batch_size=32, seed=seed)
    sample, probs = strategy.export(), strategy.probabilities()
    receptive_field = _span(sample["c1"]) + _span(sample["c2"]) - 1
    assert receptive_field >= 15, sample  # k<=5, d=1 everywhere would give at most 9
    wide = [label for label, value in sample.items() if parse_candidate(value)[1] == 7]
    assert any(probs[label][sample[label]] > 0.4 for label in wide), probs  # clear margin over uniform 0.25


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_task_does_not_need_a_large_span(seed):
    strategy = DASH(arc_learning_rate=0.1, grad_scale=20, warmup_epochs=2)
    run_search(LagNet(), lag_task(1, seed=seed), strategy, epochs=8, batch_size=32, seed=seed)
    sample = strategy.export()
    assert all(parse_candidate(v)[1] == 1 for v in sample.values()), sample


# ---- dashify ---------------------------------------------------------------------------------------
class HandCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 5, padding=2, stride=2), nn.ReLU())
        self.proj = nn.Conv2d(8, 8, 1)                  # 1x1: never searched
        self.valid = nn.Conv2d(8, 8, 3)                 # no padding: changes the size, never searched
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.valid(self.proj(self.features(x))).mean((-1, -2)))


def test_dashify_replaces_the_right_layers_and_exports_plain_convs():
    model = HandCNN()
    space = dashify(model, kernel_sizes=(3, 5), dilations=(1, 2))
    assert set(space.simplify()) == {"features_0", "features_2"}
    assert isinstance(model.features[0], nn.Conv2d)  # the original is untouched
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(space(x), model(x))  # default candidates carry the original kernels
    only_first = dashify(model, (3, 5), (1, 2), include=lambda name, conv: conv.stride == (1, 1))
    assert set(only_first.simplify()) == {"features_0"}
    data = TaskData("img", "classification", "accuracy", 3, *(np.random.default_rng(0).standard_normal(
        (32, 1, 12, 12)).astype(np.float32), np.arange(32) % 3) * 3)
    exp = run_search(space, data, DASH())
    net = exp.export_top_models(formatter="instance")[0]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(type(c) is nn.Conv2d for c in convs)
    assert net(x).shape == (2, 3)


def test_dashify_without_searchable_conv_is_an_error():
    with pytest.raises(ConfigError, match="no nn.Conv1d/nn.Conv2d"):
        dashify(nn.Sequential(nn.Linear(3, 3), nn.Conv2d(3, 3, 1)))


# ---- DASH and NNI's DARTS on one model space -----------------------------------------------------
def test_dash_and_darts_on_the_same_space_both_export():
    data = random_task(1, outputs=2)
    kwargs = dict(in_channels=2, num_outputs=2, channels=4, levels=1, kernel_sizes=(3, 5), dilations=(1, 2))
    for strategy in (DASH(), DARTS()):
        exp = run_search(create_backbone("tcn", **kwargs), data, strategy)
        sample = exp.export_top_models(formatter="dict")[0]
        assert set(sample) == {"l1c1", "l1c2"} and all(parse_candidate(v) for v in sample.values())


# ---- checkpoint and resume -------------------------------------------------------------------------
class StopAfterEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def _alphas(strategy):
    return {label: torch.tensor(list(dist.values())) for label, dist in strategy.probabilities().items()}


@pytest.mark.parametrize("mode", ["bilevel", "joint"])
def test_interrupted_and_resumed_search_matches_uninterrupted(tmp_path, mode):
    data = random_task(1, outputs=2, n=64)
    kwargs = dict(in_channels=2, num_outputs=2, channels=4, levels=2, kernel_sizes=(3, 5), dilations=(1, 2))

    def space():
        return create_backbone("tcn", **kwargs)

    full = DASH(mode=mode)
    run_search(space, data, full, epochs=3)

    first = DASH(mode=mode)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    run_search(space, data, first, epochs=3, callbacks=[ckpt, StopAfterEpoch(0)])
    assert (tmp_path / "last.ckpt").exists()
    resumed = DASH(mode=mode)
    run_search(space, data, resumed, epochs=3, ckpt_path=str(tmp_path / "last.ckpt"),
               seed=123)  # a different seed: everything that matters must come from the checkpoint
    a, b, stopped = _alphas(full), _alphas(resumed), _alphas(first)
    for label in a:
        torch.testing.assert_close(a[label], b[label], rtol=1e-5, atol=1e-6)
    assert full.export() == resumed.export()
    assert any(not torch.allclose(a[label], stopped[label]) for label in a)  # the stop really was early


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="trilevel"), "mode='trilevel'.*bilevel, joint"),
    (dict(arc_learning_rate=-0.1), "arc_learning_rate=-0.1"),
    (dict(grad_scale=0), "grad_scale=0"),
    (dict(batch_fraction=1.5), "batch_fraction=1.5"),
    (dict(temperature=(1.0, -1.0)), "temperature"),
    (dict(conv_path="gpu"), "conv_path='gpu'"),
    (dict(nan_policy="ignore"), "nan_policy='ignore'"),
])
def test_bad_strategy_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DASH(**kwargs)


def test_unknown_backbone_lists_registered_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg'.*resnet1d, tcn, wrn"):
        create_backbone("vgg", in_channels=1, num_outputs=2)


def test_model_space_without_dash_layer_is_rejected():
    class NoSearch(ModelSpace):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x.mean(-1))

    with pytest.raises(ValueError, match="no architecture parameters|Nothing to search|no DashConv"):
        run_search(NoSearch(), random_task(1, outputs=2), DASH())
