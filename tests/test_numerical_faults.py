"""NaN/inf during search: stop with a message naming the step (keeping the last good checkpoint), or skip."""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import ModelSpace
from pytorch_lightning.callbacks import ModelCheckpoint

from nni_dash.errors import DataError, DashError, NumericalError
from nni_dash.evaluator import task_evaluator
from nni_dash.nn import DashConv1d
from nni_dash.strategy import DASH
from nni_dash.tasks.base import TaskData
from nni_dash.tasks.user_data import load_npz_task


class Poisoned(ModelSpace):
    """Returns NaN outputs from the ``poison_at``-th training forward pass on."""

    def __init__(self, poison_at: int, every: bool = True):
        super().__init__()
        self.conv = DashConv1d(1, 4, kernel_sizes=(3, 5), dilations=(1, 2), label="conv")
        self.fc = nn.Linear(4, 2)
        self.poison_at, self.every, self.calls = poison_at, every, 0

    def forward(self, x):
        self.calls += 1
        out = self.fc(torch.relu(self.conv(x)).mean(-1))
        hit = self.calls >= self.poison_at if self.every else self.calls == self.poison_at
        return out * float("nan") if (self.training and hit) else out


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 16)).astype(np.float32)
    y = (x[:, 0, 3] > 0).astype(np.int64)
    return TaskData("t", "classification", "accuracy", 2, x, y, x[:16], y[:16], x[:16], y[:16])


def _run(space, strategy, callbacks=None, epochs=3):
    pl.seed_everything(0, verbose=False)
    evaluator = task_evaluator(_data(), batch_size=16, max_epochs=epochs, callbacks=callbacks)
    NasExperiment(space, evaluator, strategy).run()


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    # 4 batches per epoch, 2 forward passes per bilevel step: epoch 0 is clean, epoch 1 is poisoned
    with pytest.raises(NumericalError, match=r"non-finite architecture loss .* epoch 1, step \d+, batch 0"):
        _run(Poisoned(poison_at=9), DASH(), callbacks=[ckpt])
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_nan_policy_skip_skips_bad_batches_and_finishes():
    strategy = DASH(nan_policy="skip")
    _run(Poisoned(poison_at=5, every=False), strategy, epochs=1)
    assert strategy.oneshot_module.skipped_batches == 1
    probs = strategy.probabilities()["conv"]
    assert all(np.isfinite(p) for p in probs.values())


# ---- fuzzing the .npz loader: success or a one-line DataError, never a traceback ---------------------
_shapes = st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=4).map(tuple)
_values = st.sampled_from([0.0, 1.0, -3.0, np.nan, np.inf, 7.0])


@st.composite
def npz_files(draw):
    arrays = {}
    for key in draw(st.sets(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "junk"]))):
        shape = draw(_shapes)
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.bool_, np.uint8]))
        fill = draw(_values)
        arr = np.full(shape, fill if np.issubdtype(dtype, np.floating) or np.isfinite(fill) else 0).astype(dtype)
        arrays[key] = arr
    return arrays


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays=npz_files(), kind=st.sampled_from(["classification", "multilabel", "dense_regression",
                                                 "segmentation"]))
def test_fuzz_npz_loader(tmp_path, arrays, kind):
    path = tmp_path / "data.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    try:
        data = load_npz_task(path=str(path), kind=kind)
    except DashError as err:
        assert isinstance(err, DataError) or "metric" in str(err)
        assert "\n" not in str(err) and str(err)
        return
    assert data.x_train.dtype == np.float32 and len(data.x_train) > 0 and np.isfinite(data.x_train).all()
