"""2-D image classification tasks: ``digits``, ``fashion_mnist``, ``spherical_fashion_mnist``.

All inputs are float32 ``(N, 1, H, W)`` and labels int64 ``(N,)`` with 10 classes; the metric is
accuracy. Splits are drawn with ``numpy.random.default_rng(seed)`` (digits: stratified), so a seed
fixes the task. Normalisation is stated per task.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (idx files under
``/usr/share/datasets/fashion-mnist/``, or the same tree unpacked under
``cache_dir()/sources/fashion-mnist/``); ``bash .ci/task_data.sh`` installs it. Nothing is
downloaded at run time.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from nni_dash.errors import DataError, MissingExtraError
from nni_dash.tasks.base import TaskData, cache_dir, cached_arrays, register_task, require

__all__ = ["load_digits_task", "load_fashion_mnist_task", "load_spherical_fashion_mnist_task",
           "fashion_mnist_dir", "read_idx", "project_to_sphere", "dh_grid"]

_FMNIST_SUBDIR = Path("usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _standardise(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Subtract the train mean and divide by the train std (scalars); returns float32 copies."""
    mean, std = float(x_train.mean()), float(x_train.std()) or 1.0
    return [((x - mean) / std).astype(np.float32) for x in (x_train, *others)]


@register_task("digits")
def load_digits_task(*, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> TaskData:
    """scikit-learn's 8x8 digits (1,797 images): x = pixel / 16 in [0, 1], stratified seeded split."""
    datasets = require("sklearn.datasets", task="digits")
    model_selection = require("sklearn.model_selection", task="digits")
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = model_selection.train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), stratify=y_rest, random_state=seed)
    return TaskData("digits", "classification", "accuracy", 10, x_train, y_train, x_val, y_val,
                    x_test, y_test, description="sklearn digits 8x8, pixels scaled to [0, 1]")


def fashion_mnist_dir() -> Path | None:
    """Folder holding the Fashion-MNIST idx files, or None if the data package is not installed."""
    for root in (Path("/"), cache_dir() / "sources" / "fashion-mnist"):
        folder = root / _FMNIST_SUBDIR
        if all((folder / f).is_file() for pair in _FMNIST_FILES.values() for f in pair):
            return folder
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped idx file: 4-byte magic (last byte = number of dims), big-endian uint32 dims, uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {data.size} bytes of data; its header says {tuple(dims)}")
    return data.reshape(tuple(dims))


def _fashion_subset(*, n_train: int, n_val: int, n_test: int, seed: int,
                    task: str = "fashion_mnist") -> dict[str, np.ndarray]:
    """Raw uint8 images and labels of a seeded random subset (train+val from the 60k, test from the 10k)."""
    folder = fashion_mnist_dir()
    if folder is None:
        raise MissingExtraError(f"task {task!r} needs the Debian package dataset-fashion-mnist; "
                                "run `bash .ci/task_data.sh` (installs it or unpacks it into the cache)")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for part, sizes in (("train", {"train": n_train, "val": n_val}), ("test", {"test": n_test})):
        images, labels = (read_idx(folder / f) for f in _FMNIST_FILES[part])
        if sum(sizes.values()) > len(images):
            raise DataError(f"{task}: asked for {sum(sizes.values())} samples from the {part} file, "
                            f"which holds {len(images)}")
        idx = rng.permutation(len(images))
        start = 0
        for split, n in sizes.items():
            take = np.sort(idx[start:start + n])
            out[f"x_{split}"], out[f"y_{split}"] = images[take], labels[take].astype(np.int64)
            start += n
    return out


@register_task("fashion_mnist")
def load_fashion_mnist_task(*, seed: int = 0, n_train: int = 10000, n_val: int = 2000,
                            n_test: int = 2000) -> TaskData:
    """Fashion-MNIST 28x28, 10 classes; pixels standardised with the train subset's mean and std."""
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}
    raw = cached_arrays("fashion_mnist", {**sizes, "v": 1}, lambda: _fashion_subset(**sizes))
    xs = _standardise(*(raw[f"x_{s}"][:, None].astype(np.float32) / 255.0 for s in ("train", "val", "test")))
    return TaskData("fashion_mnist", "classification", "accuracy", 10, xs[0], raw["y_train"], xs[1],
                    raw["y_val"], xs[2], raw["y_test"],
                    description="Fashion-MNIST subset (Debian dataset-fashion-mnist), standardised")


def dh_grid(bandwidth: int) -> np.ndarray:
    """Unit vectors ``(3, 2b, 2b)`` of the Driscoll-Healy grid: theta_j = (2j+1)pi/4b, phi_k = 2 pi k/2b."""
    j = np.arange(2 * bandwidth)
    theta = (2 * j + 1) * np.pi / (4 * bandwidth)
    phi = 2 * np.pi * j / (2 * bandwidth)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)])


def project_to_sphere(images: np.ndarray, *, seed: int, bandwidth: int = 30, rotate: bool = True,
                      extent: float = 1.0) -> np.ndarray:
    """Map ``(N, H, W)`` images onto the sphere and sample them on a ``2b x 2b`` Driscoll-Healy grid.

    The image fills the square ``[-extent, extent]^2`` of the plane z = 0; a sphere point is mapped to
    the plane by stereographic projection from the north pole (so the unit disk covers the southern
    hemisphere). With ``rotate`` each image gets its own uniformly random rotation in SO(3) (from
    normalised Gaussian quaternions drawn with ``seed``). Bilinear sampling, zero outside the image.
    """
    ndimage = require("scipy.ndimage", task="spherical_fashion_mnist")
    transform = require("scipy.spatial.transform", task="spherical_fashion_mnist")
    n, h, w = images.shape
    grid = dh_grid(bandwidth).reshape(3, -1)
    if rotate:
        quats = np.random.default_rng([seed, 7]).standard_normal((n, 4))
        mats = transform.Rotation.from_quat(quats).as_matrix()
        points = np.einsum("nji,jp->nip", mats, grid)  # R^T p: where each grid point came from
    else:
        points = np.broadcast_to(grid, (n, *grid.shape))
    out = np.empty((n, 2 * bandwidth, 2 * bandwidth), dtype=np.float32)
    for i in range(n):
        x, y, z = points[i]
        denom = np.maximum(1.0 - z, 1e-9)
        px, py = x / denom, y / denom
        col = (px + extent) / (2 * extent) * w - 0.5
        row = (extent - py) / (2 * extent) * h - 0.5
        sampled = ndimage.map_coordinates(images[i].astype(np.float32), [row, col], order=1,
                                          mode="constant", cval=0.0)
        out[i] = sampled.reshape(2 * bandwidth, 2 * bandwidth)
    return out


@register_task("spherical_fashion_mnist")
def load_spherical_fashion_mnist_task(*, seed: int = 0, n_train: int = 10000, n_val: int = 2000,
                                      n_test: int = 2000, bandwidth: int = 30, rotate: bool = True) -> TaskData:
    """Fashion-MNIST projected onto the sphere (60x60 DH grid for b=30), randomly rotated, standardised.

    Every split is rotated (NB360 "Spherical" style); pixels are scaled to [0, 1] before projection
    and standardised with the train split's mean/std afterwards. Cached per parameters and seed.
    """
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}
    params = {**sizes, "bandwidth": bandwidth, "rotate": rotate, "v": 1}

    def build() -> dict[str, np.ndarray]:
        raw = _fashion_subset(**sizes, task="spherical_fashion_mnist")
        for k, split in enumerate(("train", "val", "test")):
            images = raw[f"x_{split}"].astype(np.float32) / 255.0
            raw[f"x_{split}"] = project_to_sphere(images, seed=seed * 3 + k, bandwidth=bandwidth, rotate=rotate)
        return raw

    raw = cached_arrays("spherical_fashion_mnist", params, build)
    xs = _standardise(*(raw[f"x_{s}"][:, None] for s in ("train", "val", "test")))
    return TaskData("spherical_fashion_mnist", "classification", "accuracy", 10, xs[0], raw["y_train"],
                    xs[1], raw["y_val"], xs[2], raw["y_test"],
                    description=f"Fashion-MNIST on the sphere, {2 * bandwidth}x{2 * bandwidth} DH grid, "
                                f"{'random SO(3) rotations' if rotate else 'no rotation'}")
