"""A model space with DashConv layers runs under NNI's own one-shot strategies with no hooks passed."""
import pytest
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.strategy import DARTS, ENAS, GumbelDARTS, RandomOneShot

from nni_dash.strategy import DASH
from torch.utils.data import TensorDataset

import nni_dash  # noqa: F401
from nni_dash.nn import DashConv1d, DashConv2d


class Tiny1d(ModelSpace):
    def __init__(self):
        super().__init__()
        self.c1 = DashConv1d(1, 8, kernel_sizes=(3, 5), dilations=(1, 3), label="c1")
        self.c2 = DashConv1d(8, 8, kernel_sizes=(3, 5), dilations=(1, 3), padding="causal", label="c2")
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean(-1))


class Tiny2d(ModelSpace):
    def __init__(self):
        super().__init__()
        self.c1 = DashConv2d(1, 4, kernel_sizes=(3, 5), dilations=(1, 2), stride=2, label="c1")
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.c1(x)).mean((-1, -2)))


def _evaluator(ndim):
    torch.manual_seed(0)
    x = torch.randn(48, 1, *([12] * ndim))
    y = (x.flatten(1)[:, 3] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    return Classification(train_dataloaders=loader, val_dataloaders=loader, max_epochs=1, num_classes=2,
                          enable_progress_bar=False, enable_model_summary=False, logger=False,
                          enable_checkpointing=False)


STRATEGIES = {
    "DARTS": lambda: DARTS(),
    "GumbelDARTS": lambda: GumbelDARTS(),
    "RandomOneShot": lambda: RandomOneShot(),
    "ENAS": lambda: ENAS(reward_metric_name="val_acc"),
    "DASH-bilevel": lambda: DASH(),
    "DASH-joint": lambda: DASH(mode="joint", depthwise_proxy=True, temperature=(1.0, 0.5), lr_milestones=(1,)),
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("space_cls,ndim", [(Tiny1d, 1), (Tiny2d, 2)])
def test_stock_strategy_runs_and_exports(strategy, space_cls, ndim):
    space = space_cls()
    exp = NasExperiment(space, _evaluator(ndim), STRATEGIES[strategy]())
    exp.run()
    # one-shot path-sampling exports are random per call: take the model once and check dict and instance agree
    model = exp.export_top_models(formatter=None)[0]
    sample = model.sample
    assert set(sample) == set(space.simplify())
    for label, value in sample.items():
        assert value in space.simplify()[label].values
    net = model.executable_model()
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert len(convs) == (2 if ndim == 1 else 1)
    k, d = (int(s) for s in sample["c1"][1:].split("d"))
    assert net.c1.kernel_size == (k,) * ndim and net.c1.dilation == (d,) * ndim
    out = net(torch.randn(3, 1, *([12] * ndim)))
    assert out.shape == (3, 2) and torch.isfinite(out).all()
