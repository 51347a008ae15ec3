"""Metrics against hand-computed answers, task-data validation and the user ``npz`` loader."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from nni_dash.errors import ConfigError, DataError
from nni_dash.tasks import TaskData, create_task
from nni_dash.tasks.metrics import (default_metric, higher_is_better, make_loss, make_metric,
                                    trivial_baseline_score)
from nni_dash.tasks.user_data import load_npz_task
from nni_dash.tasks.validate import validate_task_data


def score(name: str, kind: str, k: int, preds, target) -> float:
    metric = make_metric(name, kind=kind, num_outputs=k)
    metric.update(torch.as_tensor(preds), torch.as_tensor(target))
    return float(metric.compute())


# --------------------------------------------------------------------------------------------- metrics
def test_rel_l2_known_answers():
    y = torch.randn(5, 1, 4, 4)
    assert score("rel_l2", "dense_regression", 1, 2 * y, y) == pytest.approx(1.0)
    assert score("rel_l2", "dense_regression", 1, y, y) == pytest.approx(0.0)
    # Mean over samples, accumulated over batches: sample 1 error 0, sample 2 error 1 -> 0.5.
    metric = make_metric("rel_l2", kind="dense_regression", num_outputs=1)
    metric.update(y[:1], y[:1])
    metric.update(torch.zeros_like(y[1:2]), y[1:2])
    assert float(metric.compute()) == pytest.approx(0.5)


def test_classification_and_regression_known_answers():
    y = torch.tensor([0, 1, 2, 2])
    assert score("accuracy", "classification", 3, torch.eye(3)[y] * 5, y) == 1.0
    wrong = torch.eye(3)[torch.tensor([0, 1, 2, 1])]
    assert score("accuracy", "classification", 3, wrong, y) == pytest.approx(0.75)
    # F1 per class: 1, 2/3 (P=1/2, R=1), 2/3 (P=1, R=1/2) -> macro 7/9.
    assert score("macro_f1", "classification", 3, wrong, y) == pytest.approx(7 / 9)
    assert score("mae", "dense_regression", 1, torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)) == 1.0


def test_ranking_metrics_on_logits():
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    assert score("auroc", "multilabel", 3, 6 * y - 3, y) == pytest.approx(1.0)
    assert score("map", "multilabel", 3, 6 * y - 3, y) == pytest.approx(1.0)
    assert score("auroc", "multilabel", 3, torch.zeros_like(y), y) == pytest.approx(0.5)
    mask = (torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    assert score("auroc", "segmentation", 1, 8 * mask - 4, mask) == pytest.approx(1.0)
    assert score("auroc", "segmentation", 1, torch.full_like(mask, -5.0), mask) == pytest.approx(0.5)


def test_metric_table_and_errors():
    assert higher_is_better("accuracy") and higher_is_better("auroc") and not higher_is_better("rel_l2")
    assert [default_metric(k) for k in ("classification", "multilabel", "dense_regression", "segmentation")] \
        == ["accuracy", "map", "rel_l2", "auroc"]
    with pytest.raises(ConfigError, match="unknown metric 'top5'; allowed: accuracy, macro_f1, map"):
        make_metric("top5", kind="classification", num_outputs=3)
    with pytest.raises(ConfigError, match="'rel_l2' does not apply to 'classification'.*accuracy, macro_f1"):
        make_metric("rel_l2", kind="classification", num_outputs=3)
    with pytest.raises(ConfigError, match="unknown metric"):
        higher_is_better("nope")
    assert isinstance(make_loss("classification"), nn.CrossEntropyLoss)
    assert isinstance(make_loss("segmentation"), nn.BCEWithLogitsLoss)
    assert isinstance(make_loss("multilabel"), nn.BCEWithLogitsLoss)
    assert isinstance(make_loss("dense_regression"), nn.MSELoss)


def toy_task(**changes) -> TaskData:
    rng = np.random.default_rng(0)
    x = lambda n: rng.standard_normal((n, 2, 6, 6)).astype(np.float32)  # noqa: E731
    base = TaskData("toy", "classification", "accuracy", 2, x(8), np.array([0, 1] * 4), x(4),
                    np.array([0, 1, 0, 1]), x(6), np.array([0, 1, 0, 1, 0, 1]))
    return dataclasses.replace(base, **changes)


def test_trivial_baseline_scores():
    assert trivial_baseline_score(toy_task()) == pytest.approx(0.5)  # balanced 2-class -> 0.5
    seg_y = lambda n: (np.arange(n * 36).reshape(n, 1, 6, 6) % 7 == 0).astype(np.float32)  # noqa: E731
    seg = toy_task(kind="segmentation", metric="auroc", num_outputs=1, y_train=seg_y(8), y_val=seg_y(4),
                   y_test=seg_y(6))
    assert trivial_baseline_score(seg) == pytest.approx(0.5)
    reg = toy_task(kind="dense_regression", metric="rel_l2", num_outputs=1,
                   y_train=np.ones((8, 1, 6, 6), np.float32), y_val=np.ones((4, 1, 6, 6), np.float32),
                   y_test=np.full((6, 1, 6, 6), 2.0, np.float32))
    assert trivial_baseline_score(reg) == pytest.approx(0.5)  # predicts the train mean 1 for y = 2


# ------------------------------------------------------------------------------------------ validation
def test_valid_task_passes():
    validate_task_data(toy_task())


@pytest.mark.parametrize("changes, fragment", [
    (dict(kind="regression"), "task kind 'regression' is not one of"),
    (dict(x_val=np.zeros((4, 2, 6, 6))), "x_val has dtype float64; expected float32"),
    (dict(x_test=np.where(np.arange(432).reshape(6, 2, 6, 6) == 7, np.inf, 0).astype(np.float32)),
     "x_test has 1 NaN/inf value(s) of 432"),
    (dict(x_train=np.zeros((0, 2, 6, 6), np.float32), y_train=np.zeros(0, np.int64)), "x_train is empty"),
    (dict(x_val=np.zeros((4, 3, 6, 6), np.float32)), "x_val has per-sample shape (3, 6, 6) but x_train"),
    (dict(x_train=np.zeros((8, 36), np.float32)), "x_train has shape (8, 36); expected (N, C, L)"),
    (dict(x_train=np.zeros((8, 6, 6), np.float32)), "x_val has per-sample shape (2, 6, 6) but x_train has (6, 6)"),
    (dict(y_test=np.array([0, 1, 2, 0, 1, 0])), "y_test has labels in [0, 2]; expected integers in [0, 2)"),
    (dict(y_val=np.array([0.0, 1.0, 0.0, 1.0])), "y_val has dtype float64; expected int64"),
    (dict(y_val=np.array([0, 1, 0])), "y_val has 3 sample(s)"),
    (dict(metric="rel_l2"), "'rel_l2' does not apply to 'classification'"),
    (dict(kind="segmentation", metric="auroc", num_outputs=1, y_train=np.full((8, 1, 6, 6), 2, np.float32)),
     "y_train has 288 value(s) outside {0, 1}"),
    (dict(kind="dense_regression", metric="mae", num_outputs=1, y_train=np.zeros((8, 1, 5, 6), np.float32)),
     "y_train has shape (8, 1, 5, 6); expected (N, 1, 6, 6)"),
    (dict(kind="multilabel", metric="map", num_outputs=3, y_train=np.zeros((8, 2), np.float32)),
     "y_train has shape (8, 2); expected (N, 3)"),
])
def test_invalid_task_data(changes, fragment):
    with pytest.raises((DataError, ConfigError)) as info:
        validate_task_data(toy_task(**changes))
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- npz
def write(tmp_path, name="data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def valid_arrays(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x_train": rng.random((n, 8, 8)), "y_train": np.arange(n) % 3,
            "x_test": rng.random((10, 8, 8)), "y_test": np.arange(10) % 3}


def test_npz_round_trip(tmp_path):
    arrays = valid_arrays()
    path = write(tmp_path, **arrays)
    d = create_task("npz", path=path, kind="classification", val_fraction=0.25, seed=4)
    assert (d.num_outputs, d.metric, d.x_train.dtype, d.y_train.dtype) == (3, "accuracy", np.float32, np.int64)
    assert d.x_train.shape == (30, 1, 8, 8) and d.x_val.shape == (10, 1, 8, 8) and d.x_test.shape == (10, 1, 8, 8)
    assert np.allclose(d.x_test[:, 0], arrays["x_test"]) and np.array_equal(d.y_test, arrays["y_test"])
    merged = sorted(map(tuple, np.concatenate([d.x_train, d.x_val]).reshape(40, -1).tolist()))
    assert merged == sorted(map(tuple, arrays["x_train"].astype(np.float32).reshape(40, -1).tolist()))
    again = load_npz_task(path=path, kind="classification", val_fraction=0.25, seed=4)
    assert np.array_equal(d.x_val, again.x_val)


def test_npz_layouts_and_inference(tmp_path):
    series = write(tmp_path, "s.npz", x_train=np.ones((6, 3, 20)), y_train=np.eye(4)[[0, 1, 2, 3, 0, 1]],
                   x_test=np.ones((2, 3, 20)), y_test=np.eye(4)[[0, 1]], x_val=np.ones((2, 3, 20)),
                   y_val=np.eye(4)[[2, 3]])
    d = load_npz_task(path=series, kind="multilabel")
    assert d.x_train.shape == (6, 3, 20) and d.num_outputs == 4 and d.metric == "map" and len(d.x_val) == 2
    flat = write(tmp_path, "f.npz", x_train=np.ones((10, 50)), y_train=np.arange(10) % 2,
                 x_test=np.ones((4, 50)), y_test=np.array([0, 1, 0, 1]))
    assert load_npz_task(path=flat, kind="classification").x_train.shape == (8, 1, 50)  # stratified: 1 val per class
    dense = write(tmp_path, "d.npz", x_train=np.ones((10, 2, 6, 7)), y_train=np.ones((10, 6, 7)),
                  x_test=np.ones((3, 2, 6, 7)), y_test=np.ones((3, 6, 7)))
    d = load_npz_task(path=dense, kind="dense_regression", metric="mae")
    assert d.y_train.shape == (9, 1, 6, 7) and d.num_outputs == 1 and d.metric == "mae"
    img = write(tmp_path, "i.npz", x_train=np.ones((10, 6, 7)), y_train=np.zeros((10, 6, 7)),
                x_test=np.ones((3, 6, 7)), y_test=np.zeros((3, 1, 6, 7)))
    assert load_npz_task(path=img, kind="segmentation").x_train.shape == (9, 1, 6, 7)


def bad(key: str, value) -> dict[str, np.ndarray]:
    arrays = valid_arrays()
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


@pytest.mark.parametrize("arrays, options, fragment", [
    (bad("y_test", None), {}, "lacks key 'y_test' (found: x_test, x_train, y_train; required: x_train, y_train"),
    (bad("x_train", np.full((40, 8, 8), np.nan)), {}, "x_train has 2560 NaN/inf value(s)"),
    (bad("y_test", np.full(10, np.inf)), {}, "y_test has 10 NaN/inf value(s)"),
    (bad("y_test", np.array([0, 1, 2, 3] * 2 + [0, 1])), {},
     "y_test has class(es) [3] that y_train lacks"),
    (bad("y_test", np.array([0, 1, 2, 3] * 2 + [0, 1])), {"num_outputs": 3},
     "y_test has labels in [0, 3]; expected integers in [0, 3)"),
    (bad("y_train", -(np.arange(40) % 2)), {"num_outputs": 2}, "y_train has labels in [-1, 0]"),
    (bad("x_test", np.ones((10, 9, 9))), {}, "x_test has per-sample shape (1, 9, 9) but x_train has (1, 8, 8)"),
    (bad("x_test", np.ones((10, 2, 8, 8))), {}, "x_test has per-sample shape (2, 8, 8) but x_train has (1, 8, 8)"),
    (bad("x_test", np.ones(10)), {}, "x_test has shape (10,); expected (N, H, W) or (N, C, H, W)"),
    (bad("y_train", np.arange(39) % 3), {}, "y_train has 39 sample(s)"),
    (bad("y_train", np.linspace(0, 2, 40)), {}, "y_train holds non-integer values"),
    ({**valid_arrays(), "x_val": np.ones((4, 8, 8))}, {}, "has 'x_val' but no 'y_val'"),
    (bad("x_train", np.array(["a"] * 40)), {}, "x_train has dtype <U1; expected a numeric array"),
])
def test_bad_npz(tmp_path, arrays, options, fragment):
    path = write(tmp_path, **arrays)
    with pytest.raises(DataError) as info:
        load_npz_task(path=path, kind="classification", **options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    (None, "is not a file"),
    (b"definitely not a zip archive", "is not a readable .npz archive"),
    ("npy", "holds a single array, not an .npz archive"),
])
def test_npz_not_an_archive(tmp_path, content, fragment):
    path = tmp_path / "data.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        create_task("npz", path=str(path), kind="classification")
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_npz_options_are_checked(tmp_path):
    path = write(tmp_path, **valid_arrays())
    with pytest.raises(ConfigError, match="'mae' does not apply to 'classification'"):
        load_npz_task(path=path, kind="classification", metric="mae")
    with pytest.raises(DataError, match="task kind 'images' is not one of"):
        load_npz_task(path=path, kind="images")
    with pytest.raises(DataError, match="val_fraction is 1.5"):
        load_npz_task(path=path, kind="classification", val_fraction=1.5)
