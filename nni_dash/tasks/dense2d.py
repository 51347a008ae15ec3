"""2-D dense tasks: ``darcy`` (PDE regression), ``cosmic`` (segmentation), ``protein_distance``.

Layouts follow :mod:`nni_dash.tasks.base`: x float32 ``(N, C, S, S)``, y float32 ``(N, K, S, S)``.
Each builder draws its samples with ``numpy.random.default_rng([seed, split])`` so the test split of a
seed does not change with ``n_train``; results are cached with :func:`cached_arrays`.

* ``darcy``: -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary (NAS-Bench-360 Darcy flow). ``a`` is
  a thresholded Gaussian random field (12 / 3). Input channels: ``(a - 7.5) / 4.5`` in {-1, 1} and
  the x, y cell-centre coordinates; target ``u / scale`` with ``scale`` the RMS of the train u
  (stated in ``description``). Metric rel_l2.
* ``cosmic``: crops of the Hubble Deep Field (grayscale x 1000 + 50 counts, Poisson noise) with
  injected straight cosmic-ray tracks; target the track mask. Input ``asinh(counts / 50)``
  standardised with the train mean/std. Train/val/test crops come from disjoint column bands of the
  image (0-65 % / 65-80 % / 80-100 %), so they never overlap. Metric auroc.
* ``protein_distance``: C-beta (C-alpha for Gly) distance maps of the 50 MDAnalysisTests DSSP
  chains, clipped at 20 A and divided by 20; random ``crop x crop`` windows; split by protein.
  Inputs are sequence-only pair features (no structure): 5 residue-class one-hots of residue i,
  5 of residue j, ``log1p(|i-j|) / log1p(200)``, ``i / L`` and ``j / L``. Metric mae.
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from nni_dash.errors import DataError, MissingExtraError
from nni_dash.tasks.base import TaskData, cache_dir, cached_arrays, register_task, require

__all__ = ["sample_darcy_coefficient", "solve_darcy", "inject_tracks", "protein_data_dir",
           "load_darcy_task", "load_cosmic_task", "load_protein_distance_task"]

_SPLITS = ("train", "val", "test")


def _task(name: str, kind: str, metric: str, k: int, arrays: dict[str, np.ndarray], desc: str) -> TaskData:
    return TaskData(name, kind, metric, k, *(arrays[f"{a}_{s}"] for s in _SPLITS for a in "xy"), description=desc)


# ----------------------------------------------------------------------------------------------- darcy
def sample_darcy_coefficient(rng: np.random.Generator, resolution: int, *, tau: float = 3.0,
                             alpha: float = 2.0) -> np.ndarray:
    """GRF psi with covariance (-Lap + tau^2)^-alpha (DCT modes), thresholded: a = 12 if psi > 0 else 3."""
    fft = require("scipy.fft", task="darcy")
    k = np.arange(resolution)
    k1, k2 = np.meshgrid(k, k, indexing="ij")
    coef = (np.pi ** 2 * (k1 ** 2 + k2 ** 2) + tau ** 2) ** (-alpha / 2)
    coef[0, 0] = 0.0  # zero-mean field
    psi = fft.idctn(coef * rng.standard_normal((resolution, resolution)), norm="ortho")
    return np.where(psi > 0, 12.0, 3.0)


def solve_darcy(a: np.ndarray, *, f: float = 1.0) -> np.ndarray:
    """Cell-centred 5-point finite-volume solve of -div(a grad u) = f on (0,1)^2 with u = 0 on the boundary.

    ``a`` is ``(S, S)`` per cell (h = 1/S). Interior faces use the harmonic mean of the two cells;
    boundary faces sit h/2 from the cell centre (conductance 2a). Returns u at the cell centres.
    """
    sparse = require("scipy.sparse", task="darcy")
    linalg = require("scipy.sparse.linalg", task="darcy")
    s = a.shape[0]
    idx = np.arange(s * s).reshape(s, s)
    diag = np.zeros((s, s))
    rows, cols, vals = [], [], []
    for (p, q), (ap, aq) in (((idx[:, :-1], idx[:, 1:]), (a[:, :-1], a[:, 1:])),
                             ((idx[:-1, :], idx[1:, :]), (a[:-1, :], a[1:, :]))):
        t = 2.0 * ap * aq / (ap + aq)
        rows += [p.ravel(), q.ravel()]
        cols += [q.ravel(), p.ravel()]
        vals += [-t.ravel(), -t.ravel()]
        np.add.at(diag, np.unravel_index(p.ravel(), (s, s)), t.ravel())
        np.add.at(diag, np.unravel_index(q.ravel(), (s, s)), t.ravel())
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        diag[edge] += 2.0 * a[edge]
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    mat = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(s * s, s * s))
    return linalg.spsolve(mat, np.full(s * s, f / s ** 2)).reshape(s, s)


@register_task("darcy")
def load_darcy_task(*, seed: int = 0, resolution: int = 32, n_train: int = 1000, n_val: int = 100,
                    n_test: int = 200) -> TaskData:
    """Darcy flow at ``resolution`` x ``resolution`` (see the module docstring)."""
    params = {"resolution": resolution, "n": [n_train, n_val, n_test], "seed": seed, "v": 1}

    def build() -> dict[str, np.ndarray]:
        out = {}
        for k, (split, n) in enumerate(zip(_SPLITS, (n_train, n_val, n_test))):
            rng = np.random.default_rng([seed, k])
            coeffs = np.stack([sample_darcy_coefficient(rng, resolution) for _ in range(n)])
            out[f"a_{split}"] = coeffs.astype(np.float32)
            out[f"u_{split}"] = np.stack([solve_darcy(c) for c in coeffs]).astype(np.float32)
        return out

    raw = cached_arrays("darcy", params, build)
    scale = float(np.sqrt(np.mean(raw["u_train"].astype(np.float64) ** 2)))
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    gx, gy = np.meshgrid(centres, centres, indexing="ij")
    arrays = {}
    for split in _SPLITS:
        a = raw[f"a_{split}"]
        grid = np.broadcast_to(np.stack([gx, gy]), (len(a), 2, resolution, resolution))
        arrays[f"x_{split}"] = np.concatenate([((a - 7.5) / 4.5)[:, None], grid], axis=1).astype(np.float32)
        arrays[f"y_{split}"] = (raw[f"u_{split}"] / scale)[:, None].astype(np.float32)
    return _task("darcy", "dense_regression", "rel_l2", 1, arrays,
                 f"Darcy flow {resolution}x{resolution}; channels (a-7.5)/4.5, x, y; target u / {scale:.6g}")


# ---------------------------------------------------------------------------------------------- cosmic
def inject_tracks(image: np.ndarray, rng: np.random.Generator, *, min_tracks: int = 3, max_tracks: int = 12,
                  max_length: float = 25.0, amplitude: tuple[float, float] = (300.0, 5000.0)
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Add straight tracks (random start, angle, length in [1, max_length], amplitude) to a 2-D image.

    Returns ``(image + tracks, mask)``; ``mask`` is 1.0 exactly on the pixels that received a track.
    """
    h, w = image.shape
    out, mask = image.astype(np.float64).copy(), np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(min_tracks, max_tracks + 1))):
        length, angle = rng.uniform(1.0, max_length), rng.uniform(0.0, np.pi)
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        t = np.linspace(0.0, length, int(np.ceil(2 * length)) + 1)
        r = np.floor(r0 + t * np.sin(angle)).astype(int)
        c = np.floor(c0 + t * np.cos(angle)).astype(int)
        keep = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        pix = np.unique(r[keep] * w + c[keep])
        out.flat[pix] += rng.uniform(*amplitude)
        mask.flat[pix] = 1.0
    return out, mask


@register_task("cosmic")
def load_cosmic_task(*, seed: int = 0, crop: int = 64, n_train: int = 1000, n_val: int = 200,
                     n_test: int = 200, min_tracks: int = 3, max_tracks: int = 12) -> TaskData:
    """Cosmic-ray segmentation on Hubble Deep Field crops (see the module docstring)."""
    params = {"crop": crop, "n": [n_train, n_val, n_test], "seed": seed, "tracks": [min_tracks, max_tracks],
              "v": 1}

    def build() -> dict[str, np.ndarray]:
        data, color = require("skimage.data", task="cosmic"), require("skimage.color", task="cosmic")
        sky = color.rgb2gray(data.hubble_deep_field()) * 1000.0 + 50.0
        h, w = sky.shape
        bands = [(0, int(0.65 * w)), (int(0.65 * w), int(0.8 * w)), (int(0.8 * w), w)]
        out = {}
        for k, (split, n, (c_lo, c_hi)) in enumerate(zip(_SPLITS, (n_train, n_val, n_test), bands)):
            if c_hi - c_lo < crop or h < crop:
                raise DataError(f"cosmic: crop={crop} is larger than the {split} band ({h}x{c_hi - c_lo})")
            rng = np.random.default_rng([seed, k])
            xs, ys = [], []
            for _ in range(n):
                r, c = rng.integers(0, h - crop + 1), rng.integers(c_lo, c_hi - crop + 1)
                img, mask = inject_tracks(rng.poisson(sky[r:r + crop, c:c + crop]).astype(np.float64), rng,
                                          min_tracks=min_tracks, max_tracks=max_tracks)
                xs.append(np.arcsinh(img / 50.0)), ys.append(mask)
            out[f"x_{split}"] = np.stack(xs)[:, None].astype(np.float32)
            out[f"y_{split}"] = np.stack(ys)[:, None]
        return out

    arrays = dict(cached_arrays("cosmic", params, build))
    mean, std = float(arrays["x_train"].mean()), float(arrays["x_train"].std()) or 1.0
    for split in _SPLITS:
        arrays[f"x_{split}"] = ((arrays[f"x_{split}"] - mean) / std).astype(np.float32)
    return _task("cosmic", "segmentation", "auroc", 1, arrays,
                 f"Hubble Deep Field {crop}x{crop} crops with injected cosmic-ray tracks (mask target)")


# ------------------------------------------------------------------------------------ protein distance
_CLASSES = {**dict.fromkeys("AVLIMFWC", 0), **dict.fromkeys("STNQYH", 1), **dict.fromkeys("KR", 2),
            **dict.fromkeys("DE", 3)}  # everything else (G, P, unknown) -> class 4


def protein_data_dir() -> Path | None:
    """``MDAnalysisTests/data/dssp`` from the unpacked sdist in the cache or an installed package."""
    candidates = [cache_dir() / "sources" / "mdanalysistests" / "MDAnalysisTests" / "data" / "dssp"]
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0]) / "data" / "dssp")
    return next((p for p in candidates if any(p.glob("*.pdb.gz"))), None)


def _parse_chains(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(residue classes (L,), C-beta/C-alpha coordinates (L, 3)) for each chain with a DSSP label file."""
    pdb = require("Bio.PDB", task="protein_distance")
    seq_utils = require("Bio.SeqUtils", task="protein_distance")
    parser = pdb.PDBParser(QUIET=True)
    chains = []
    for path in sorted(folder.glob("*.pdb.gz")):
        if not path.with_name(path.name[:-3] + ".dssp").is_file():
            continue  # the folder also holds deliberately broken examples
        with gzip.open(path, "rt") as f:
            chain = next(iter(next(iter(parser.get_structure(path.stem, f)))))
        residues = [r for r in chain if r.id[0] == " " and "CA" in r]
        letters = [seq_utils.seq1(r.get_resname()) for r in residues]
        coords = [(r["CB"] if "CB" in r else r["CA"]).coord for r in residues]
        chains.append((np.array([_CLASSES.get(a, 4) for a in letters]), np.array(coords, dtype=np.float64)))
    return chains


def _pair_features(classes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    onehot = np.eye(5, dtype=np.float32)[classes]
    n = len(i)
    rows = np.broadcast_to(onehot[i].T[:, :, None], (5, n, n))
    cols = np.broadcast_to(onehot[j].T[:, None, :], (5, n, n))
    sep = np.log1p(np.abs(i[:, None] - j[None, :])) / np.log1p(200.0)
    pos = np.stack([np.broadcast_to(i[:, None], (n, n)), np.broadcast_to(j[None, :], (n, n))]) / len(classes)
    return np.concatenate([rows, cols, sep[None], pos]).astype(np.float32)


@register_task("protein_distance")
def load_protein_distance_task(*, seed: int = 0, crop: int = 32, crops_per_protein: int = 16,
                               n_val_proteins: int = 5, n_test_proteins: int = 10) -> TaskData:
    """Residue distance-map regression from sequence-only pair features (see the module docstring)."""
    folder = protein_data_dir()
    if folder is None:
        raise MissingExtraError("task 'protein_distance' needs MDAnalysisTests/data/dssp from the "
                                "mdanalysistests==2.11.0 sdist; run `bash .ci/task_data.sh`")
    params = {"crop": crop, "k": crops_per_protein, "split": [n_val_proteins, n_test_proteins], "seed": seed,
              "v": 1}

    def build() -> dict[str, np.ndarray]:
        chains = _parse_chains(folder)
        short = min(len(c) for c, _ in chains)
        if crop > short or n_val_proteins + n_test_proteins >= len(chains):
            raise DataError(f"protein_distance: crop={crop} / {n_val_proteins}+{n_test_proteins} held-out "
                            f"proteins do not fit {len(chains)} chains of >= {short} residues")
        order = np.random.default_rng([seed, 99]).permutation(len(chains))
        parts = {"val": order[:n_val_proteins], "test": order[n_val_proteins:n_val_proteins + n_test_proteins],
                 "train": order[n_val_proteins + n_test_proteins:]}
        out = {}
        for k, split in enumerate(_SPLITS):
            rng, xs, ys = np.random.default_rng([seed, k]), [], []
            for p in sorted(parts[split]):
                classes, coords = chains[p]
                dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
                for _ in range(crops_per_protein):
                    i = np.arange(crop) + rng.integers(0, len(classes) - crop + 1)
                    j = np.arange(crop) + rng.integers(0, len(classes) - crop + 1)
                    xs.append(_pair_features(classes, i, j))
                    ys.append(np.minimum(dist[np.ix_(i, j)], 20.0)[None] / 20.0)
            out[f"x_{split}"], out[f"y_{split}"] = np.stack(xs), np.stack(ys).astype(np.float32)
        return out

    return _task("protein_distance", "dense_regression", "mae", 1, cached_arrays("protein_distance", params, build),
                 f"MDAnalysisTests DSSP chains: {crop}x{crop} C-beta distance crops / 20 A (clipped), "
                 f"sequence-only pair features, split by protein")
