"""The 2-D built-in tasks load offline with the documented layouts, and their generators are right."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_dash.errors import MissingExtraError
from nni_dash.tasks import create_task
from nni_dash.tasks import dense2d, images
from nni_dash.tasks.base import cache_dir
from nni_dash.tasks.metrics import make_metric, trivial_baseline_score

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Build every task from scratch in a temporary cache that still sees the installed sources.

    A private mkdtemp folder (not pytest's tmp_path, which a concurrent pytest run may prune).
    """
    sources = cache_dir() / "sources"
    tmp = Path(tempfile.mkdtemp(prefix="nni_dash_cache_"))
    monkeypatch.setenv("NNI_DASH_CACHE", str(tmp))
    if sources.is_dir():
        (tmp / "sources").symlink_to(sources.resolve())
    yield
    shutil.rmtree(tmp)  # removes the symlink, never the sources it points to


def needs(found: object, what: str) -> None:
    if found is None:
        if IN_CI:
            pytest.fail(f"{what} is missing under CI; .ci/task_data.sh should have installed it")
        pytest.skip(f"{what} is not installed (run `bash .ci/task_data.sh`)")


def assert_classification(d, *, shape: tuple[int, ...], classes: int) -> None:
    assert d.kind == "classification" and d.metric == "accuracy" and d.num_outputs == classes
    for split in ("train", "val", "test"):
        x, y = getattr(d, f"x_{split}"), getattr(d, f"y_{split}")
        assert x.dtype == np.float32 and x.shape[1:] == shape and y.dtype == np.int64 and y.shape == (len(x),)
        assert y.min() >= 0 and y.max() < classes


def test_digits_layout_and_stratified_seeded_split():
    d = create_task("digits", seed=0)
    assert_classification(d, shape=(1, 8, 8), classes=10)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797 and len(d.x_test) == 360
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    for y in (d.y_train, d.y_val, d.y_test):
        assert set(np.unique(y)) == set(range(10))
    again, other = create_task("digits", seed=0), create_task("digits", seed=1)
    assert np.array_equal(d.x_test, again.x_test) and not np.array_equal(d.y_test, other.y_test)


def test_digits_linear_model_beats_trivial_baseline():
    d = create_task("digits", seed=0)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = torch.as_tensor(d.x_train).flatten(1), torch.as_tensor(d.y_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threading only adds overhead on a busy machine
    try:
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    metric = make_metric("accuracy", kind="classification", num_outputs=10)
    metric.update(model(torch.as_tensor(d.x_test).flatten(1)).detach(), torch.as_tensor(d.y_test))
    baseline = trivial_baseline_score(d)
    assert baseline < 0.15 and float(metric.compute()) > 0.85


def test_fashion_mnist_subset():
    needs(images.fashion_mnist_dir(), "Debian package dataset-fashion-mnist")
    d = create_task("fashion_mnist", n_train=200, n_val=40, n_test=60, seed=3)
    assert_classification(d, shape=(1, 28, 28), classes=10)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (200, 40, 60)
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1.0) < 1e-3
    assert len(np.unique(d.y_train)) == 10


def test_fashion_mnist_missing_names_the_install_script(monkeypatch):
    monkeypatch.setattr(images, "fashion_mnist_dir", lambda: None)
    with pytest.raises(MissingExtraError, match=r"bash \.ci/task_data\.sh"):
        create_task("fashion_mnist", n_train=10, n_val=5, n_test=5)


def test_spherical_fashion_mnist_keeps_labels_and_is_seeded():
    needs(images.fashion_mnist_dir(), "Debian package dataset-fashion-mnist")
    opts = dict(n_train=60, n_val=20, n_test=20, seed=5)
    s, flat = create_task("spherical_fashion_mnist", **opts), create_task("fashion_mnist", **opts)
    assert_classification(s, shape=(1, 60, 60), classes=10)
    for split in ("train", "val", "test"):  # projection keeps the samples and their labels
        assert np.array_equal(getattr(s, f"y_{split}"), getattr(flat, f"y_{split}"))
    imgs = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    a, b = images.project_to_sphere(imgs, seed=1), images.project_to_sphere(imgs, seed=1)
    assert a.shape == (4, 60, 60) and np.array_equal(a, b)
    assert not np.allclose(a, images.project_to_sphere(imgs, seed=2))


def test_sphere_projection_geometry_without_rotation():
    # Stereographic projection from the north pole maps the unit disk onto the southern hemisphere:
    # a white square image covers the far south (theta > 3pi/4, r < 0.41) and misses the far north.
    out = images.project_to_sphere(np.ones((1, 28, 28), np.float32), seed=0, rotate=False)[0]
    theta = (2 * np.arange(60) + 1) * np.pi / 120
    assert np.allclose(out[theta > 3 * np.pi / 4], 1.0) and np.allclose(out[theta < np.pi / 4], 0.0)
    grid = images.dh_grid(30)
    assert grid.shape == (3, 60, 60) and np.allclose(np.linalg.norm(grid, axis=0), 1.0)


def test_darcy_constant_coefficient_matches_poisson():
    s = 16
    u = dense2d.solve_darcy(np.ones((s, s)))
    # Residual of the 5-point stencil with u = 0 on the faces (ghost cell = -u) and f = 1.
    ghost = np.pad(u, 1)
    ghost[0, 1:-1], ghost[-1, 1:-1], ghost[1:-1, 0], ghost[1:-1, -1] = -u[0], -u[-1], -u[:, 0], -u[:, -1]
    lap = 4 * u - ghost[:-2, 1:-1] - ghost[2:, 1:-1] - ghost[1:-1, :-2] - ghost[1:-1, 2:]
    assert np.allclose(lap, 1.0 / s ** 2, atol=1e-12)
    assert np.allclose(u, u.T) and np.allclose(u, u[::-1]) and np.allclose(u, u[:, ::-1])
    # -Lap u = 1 on the unit square peaks at 0.07367 (series solution); cell centres sit h/2 off the centre.
    assert abs(u.max() - 0.07367) < 0.003
    assert np.allclose(dense2d.solve_darcy(np.full((s, s), 4.0)), u / 4.0)


def test_darcy_task_layout_and_determinism():
    opts = dict(resolution=16, n_train=24, n_val=4, n_test=8, seed=2)
    d = create_task("darcy", **opts)
    assert d.kind == "dense_regression" and d.metric == "rel_l2" and d.num_outputs == 1
    assert d.x_train.shape == (24, 3, 16, 16) and d.y_test.shape == (8, 1, 16, 16)
    assert set(np.unique(d.x_train[:, 0])) == {-1.0, 1.0}
    assert 0.2 < float((d.x_train[:, 0] > 0).mean()) < 0.8  # about half the cells have a = 12
    assert abs(float(np.sqrt((d.y_train ** 2).mean())) - 1.0) < 1e-4 and (d.y_train > 0).all()
    more = create_task("darcy", **{**opts, "n_train": 30})
    assert np.array_equal(d.x_test, more.x_test)  # the test split does not depend on n_train
    coarse = dense2d.sample_darcy_coefficient(np.random.default_rng(0), 16)
    assert np.array_equal(coarse, dense2d.sample_darcy_coefficient(np.random.default_rng(0), 16))


def test_cosmic_mask_marks_injected_brightness():
    rng = np.random.default_rng(0)
    base = np.full((32, 32), 100.0)
    img, mask = dense2d.inject_tracks(base, rng)
    assert mask.any() and set(np.unique(mask)) <= {0.0, 1.0}
    assert np.all(img[mask == 1] - base[mask == 1] >= 300.0) and np.all(img[mask == 0] == base[mask == 0])
    d = create_task("cosmic", crop=32, n_train=16, n_val=4, n_test=8, seed=1)
    assert d.kind == "segmentation" and d.metric == "auroc" and d.num_outputs == 1
    assert d.x_train.shape == (16, 1, 32, 32) and d.y_val.shape == (4, 1, 32, 32) and d.y_train.dtype == np.float32
    assert 0.005 < float(d.y_train.mean()) < 0.3
    # Brightness alone nearly separates track pixels: the input used as a score has a high AUROC.
    metric = make_metric("auroc", kind="segmentation", num_outputs=1)
    metric.update(torch.as_tensor(d.x_test) * 4, torch.as_tensor(d.y_test))
    assert float(metric.compute()) > 0.8 and trivial_baseline_score(d) == pytest.approx(0.5)


def test_protein_distance_crops():
    needs(dense2d.protein_data_dir(), "MDAnalysisTests DSSP data")
    d = create_task("protein_distance", crop=32, crops_per_protein=2, seed=0)
    assert d.kind == "dense_regression" and d.metric == "mae" and d.num_outputs == 1
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (70, 10, 20)  # 35 / 5 / 10 proteins
    assert d.x_train.shape[1:] == (13, 32, 32) and d.y_train.shape[1:] == (1, 32, 32)
    assert d.y_train.min() >= 0.0 and d.y_train.max() <= 1.0
    sep = d.x_train[:, 10]  # log1p(|i - j|) / log1p(200): 0 on the diagonal
    assert np.all(d.y_train[:, 0][sep == 0] == 0.0)
    neighbours = d.y_train[:, 0][np.isclose(sep, np.log1p(1) / np.log1p(200))]
    assert neighbours.size and 3.0 < 20 * np.median(neighbours) < 7.5  # consecutive C-beta ~ 4-7 A
    assert np.allclose(d.x_train[:, :5].sum(1), 1.0) and np.allclose(d.x_train[:, 5:10].sum(1), 1.0)
