"""A config that names only the data: backbone, splits, standardisation, budget and search fit the data."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nni_dash.backbones import default_sample, rebuild
from nni_dash.cli import main
from nni_dash.config import ExperimentConfig
from nni_dash.tasks import create_task
from nni_dash.tasks.splits import input_stats, kfold, stratified_split


def _series(n: int, *, seed: int, length: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two channels on very different scales; class = which of two frequencies channel 0 carries."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(length)
    x = np.stack([np.sin(2 * np.pi * (2 + 3 * y[:, None]) * t / length) + 0.3 * rng.standard_normal((n, length)),
                  1000 + 50 * rng.standard_normal((n, length))], axis=1)
    return x.astype(np.float32), y.astype(np.int64)


def _images(n: int, *, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.standard_normal((n, size, size)).astype(np.float32)
    x[y == 1, :, : size // 2] += 2.0  # class 1: a bright left half
    return 10 * x + 5, y.astype(np.int64)


def _write(tmp_path: Path, name: str, arrays: dict[str, np.ndarray], extra: str = "") -> Path:
    np.savez(tmp_path / f"{name}.npz", **arrays)
    cfg = tmp_path / f"{name}.yml"
    cfg.write_text(f"task: {{name: npz, options: {{path: {tmp_path / name}.npz, kind: classification}}}}\n{extra}")
    return cfg


@pytest.fixture(scope="module")
def data_1d(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("d1")
    (xa, ya), (xb, yb) = _series(60, seed=0), _series(60, seed=1)
    return _write(tmp, "sig", dict(x_train=xa, y_train=ya, x_test=xb, y_test=yb))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_data_only_config_runs_end_to_end_within_its_time_limit(kind, data_1d, tmp_path, capsys):
    if kind == "1d":
        cfg = data_1d
    else:
        (xa, ya), (xb, yb) = _images(60, seed=0), _images(40, seed=1)
        cfg = _write(tmp_path, "img", dict(x_train=xa, y_train=ya, x_test=xb, y_test=yb))
    out = tmp_path / f"run{kind}"
    limit = 0.5  # minutes: start-up, a search, a tuning trial or two and a retrain
    start = time.monotonic()
    code = main(["run", str(cfg), "--out", str(out), "--budget", f"{limit}m"])
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    text = captured.out
    assert code == 0, captured.err
    assert elapsed <= 1.1 * 60 * limit, f"{elapsed:.1f} s for a {limit} min budget"
    resolved = ExperimentConfig.from_yaml(out / "config.yml")
    assert resolved.backbone.name == ("resnet1d" if kind == "1d" else "wrn")  # backbone follows the data
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages"]["retrain"]["trained_on"] == "train+val" and 0.0 <= metrics["test_score"] <= 1.0
    assert "budget: 0.5 minutes" in text and "test accuracy:" in text
    assert "budget: measured step times give tune" in text  # the split reserves the later stages' needs
    # progress: one line per stage over its step budget (not Lightning's bar per epoch), and numbered trials with an ETA
    for stage in ("search", "retrain"):
        assert re.search(rf"^{stage}  \d+(/\d+)? steps in \d+:\d\d", text, re.M), text
    assert "Epoch 0" not in text + captured.err
    assert re.search(r"^  trial 1/\d+: .* -> val accuracy [\d.]+  \(\d+:\d\d elapsed, ETA \d+:\d\d\)$", text, re.M), text
    decision = json.loads((out / "search" / "probs.json").read_text())["decision"]
    assert decision and all({"top", "margin", "decided"} <= set(d) for d in decision.values())
    assert "p=" in (out / "summary.txt").read_text()  # per-layer top probability in the summary
    # a layer whose alpha stayed within noise exports the backbone's kernel, a decided one its argmax
    search = metrics["stages"]["search"]
    classes, channels = (3, 2) if kind == "1d" else (2, 1)
    backbone = default_sample(resolved.backbone.name, in_channels=channels, num_outputs=classes, **resolved.backbone.args)
    assert search["undecided"] == "backbone"
    for label, d in decision.items():
        assert search["argmax"][label] == d["choice"]
        assert search["architecture"][label] == (d["choice"] if d["decided"] else backbone[label]), label
    assert json.loads((out / "architecture.json").read_text()) == search["architecture"]


def test_npz_validation_split_is_stratified(tmp_path):
    x, y = _series(40, seed=0)
    y[:4] = 3  # a rare class: 4 of 40 samples
    path = tmp_path / "s.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    data = create_task("npz", path=str(path), kind="classification", val_fraction=0.2)
    for cls in range(4):
        n = int((y == cls).sum())
        assert (data.y_val == cls).sum() == max(1, round(0.2 * n))  # every class on both sides, in proportion
        assert (data.y_train == cls).sum() == n - max(1, round(0.2 * n))


def test_stratified_split_keeps_a_singleton_class_in_train():
    y = np.array([0] * 10 + [1])
    train, val = stratified_split(y, 0.3, np.random.default_rng(0))
    assert 10 in train and 10 not in val and len(val) == 3


def test_kfold_holds_out_every_sample_once_and_stratifies():
    y = np.array([0] * 12 + [1] * 6 + [2] * 3)
    folds = kfold(y, 3, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(len(y)))
    for train, held_out in folds:
        assert set(train) | set(held_out) == set(range(len(y))) and not set(train) & set(held_out)
        assert np.bincount(y[held_out], minlength=3).tolist() == [4, 2, 1]


def test_standardization_is_fitted_on_the_train_split_only_and_the_exported_model_applies_it(data_1d, tmp_path):
    out = tmp_path / "std"
    code = main(["run", str(data_1d), "--out", str(out), "--budget", "epochs", "--set", "search.epochs=1",
                 "--set", "tune.enabled=false", "--set", "retrain.epochs=1", "--set", "trainer.progress_bar=false"])
    assert code == 0
    record = json.loads((out / "preprocess.json").read_text())
    data = create_task("npz", path=str(data_1d.with_suffix(".npz")), kind="classification")
    mean, std = input_stats(data.x_train)
    np.testing.assert_allclose(record["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(record["std"], std, rtol=1e-6)
    everything = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert not np.allclose(record["mean"], input_stats(everything)[0], rtol=1e-4)  # not fitted on val/test
    assert record["std"][1] > 10  # the raw scale of channel 1 (1000 +- 50) is what the model undoes

    # the retrained checkpoint carries the statistics: a plain network loaded from it takes raw data
    sample = json.loads((out / "architecture.json").read_text())
    cfg = ExperimentConfig.from_yaml(out / "config.yml")
    net = rebuild(cfg.backbone.name, sample, in_channels=2, num_outputs=3, **cfg.backbone.args)
    state = torch.load(out / "retrain" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("_model."): v for k, v in state.items() if k.startswith("_model.")})
    np.testing.assert_allclose(net.input_norm.mean.numpy(), mean, rtol=1e-6)
    x = torch.from_numpy(data.x_test[:4])
    net.eval()
    manual = (x - torch.from_numpy(mean)[None, :, None]) / torch.from_numpy(std)[None, :, None]
    assert torch.allclose(net.input_norm(x), manual, atol=1e-5)


def _expect_bad_input(capsys, args: list[str], match: str, out: Path) -> None:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert not out.exists() and not out.with_name(out.name + ".incomplete").exists()  # nothing written


def test_backbone_of_the_wrong_dimensionality_is_a_one_line_error(data_1d, tmp_path, capsys):
    out = tmp_path / "bad"
    _expect_bad_input(capsys, ["run", str(data_1d), "--out", str(out), "--set", "backbone.name=wrn"],
                      "backbone.name='wrn': a 2-D backbone, but the task's inputs are 1-D", out)


def test_budget_too_small_for_one_step_per_stage(data_1d, tmp_path, capsys):
    out = tmp_path / "bad"
    _expect_bad_input(capsys, ["run", str(data_1d), "--out", str(out), "--budget", "5s"],
                      "is too small for search, tune, retrain: the minimum is", out)


def test_a_class_the_training_split_lacks(tmp_path, capsys):
    x, y = _series(30, seed=0)
    cfg = _write(tmp_path, "gap", dict(x_train=x[y != 2], y_train=y[y != 2], x_test=x, y_test=y))
    out = tmp_path / "bad"
    _expect_bad_input(capsys, ["run", str(cfg), "--out", str(out)], "y_test has class(es) [2] that y_train lacks", out)


def test_default_config_is_steps_based_and_names_only_the_data(data_1d):
    cfg = ExperimentConfig.from_yaml(data_1d)
    assert yaml.safe_load(data_1d.read_text()).keys() == {"task"}
    assert cfg.backbone.name == "auto" and cfg.budget.mode == "auto" and cfg.retrain.refit
    assert cfg.search.batch_size is None and cfg.retrain.batch_size is None  # from the data size
