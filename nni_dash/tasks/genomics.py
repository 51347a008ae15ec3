"""``dna_motifs``: 1-D multi-label motif detection, a DeepSEA stand-in (synthetic sequences, real motifs).

Generator (datasets.md section 3.5):

* background: i.i.d. bases with p(A, C, G, T) = (0.3, 0.2, 0.2, 0.3), ``length`` bases;
* ``n_motifs`` position weight matrices: JASPAR2024 CORE vertebrate PFMs via ``pyjaspar``
  (pseudocount 0.5 per base; lengths 6..min(20, length)), or random PWMs (length 8..15, each
  column drawn from Dirichlet(0.2, 0.2, 0.2, 0.2), about 1.2 bits
  of information per position, similar to JASPAR cores). ``motif_source="auto"`` uses JASPAR when
  pyjaspar is installed, else random PWMs. The motifs are chosen with ``motif_seed`` (default 0),
  so the label set stays the same across data seeds;
* each motif is present in a sequence with probability ``p_present``; a present motif gets one
  instance sampled from its PWM, planted at a uniformly random position that does not overlap
  another planted motif. A motif that finds no free place is dropped (label 0), so labels always
  equal the set of motifs actually planted.

Arrays: ``x`` one-hot float32 ``(N, 4, length)`` (channel order A, C, G, T); ``y`` float32
``(N, n_motifs)`` in {0, 1}; metric ``auroc`` (macro). ``seed`` drives the sequences; train, val and
test are independent draws. Arrays are cached (JASPAR data: CC BY 4.0, attribute JASPAR).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util

import numpy as np

from nni_dash.errors import ConfigError
from nni_dash.tasks.base import TaskData, cached_arrays, register_task, require

__all__ = ["BACKGROUND", "jaspar_pwms", "random_pwms", "consensus", "plant_motifs", "motif_set", "dna_motifs"]

BACKGROUND = np.array([0.3, 0.2, 0.2, 0.3])
BASES = "ACGT"
_JASPAR_HINT = "pip install pyjaspar==4.0.0 biopython==1.88 (or bash .ci/task_data.sh), or motif_source='random'"


def jaspar_pwms(n_motifs: int, *, rng: np.random.Generator, max_len: int = 20,
                release: str = "JASPAR2024") -> tuple[list[np.ndarray], list[str]]:
    """``n_motifs`` JASPAR CORE vertebrate PWMs ``(width, 4)`` (rows sum to 1) and their ``ID name`` labels."""
    pyjaspar = require("pyjaspar", task="dna_motifs", hint=_JASPAR_HINT)
    motifs = pyjaspar.jaspardb(release=release).fetch_motifs(collection="CORE", tax_group=["vertebrates"])
    motifs = sorted((m for m in motifs if 6 <= len(m) <= max_len), key=lambda m: m.matrix_id)
    if len(motifs) < n_motifs:
        raise ConfigError(f"task 'dna_motifs': n_motifs={n_motifs} but {release} has {len(motifs)} motifs")
    pick = np.sort(rng.choice(len(motifs), n_motifs, replace=False))
    pwms, names = [], []
    for i in pick:
        counts = np.array([motifs[i].counts[b] for b in BASES], dtype=np.float64).T + 0.5
        pwms.append(counts / counts.sum(axis=1, keepdims=True))
        names.append(f"{motifs[i].matrix_id} {motifs[i].name}")
    return pwms, names


def random_pwms(n_motifs: int, *, rng: np.random.Generator, max_len: int = 15) -> tuple[list[np.ndarray], list[str]]:
    """Random PWMs of width 8..``max_len``, each column a Dirichlet(0.2) probability vector over ACGT."""
    widths = rng.integers(min(8, max_len), max_len + 1, size=n_motifs)
    pwms = [rng.dirichlet(np.full(4, 0.2), size=int(w)) for w in widths]
    return pwms, [f"random_{i}" for i in range(n_motifs)]


def consensus(pwm: np.ndarray) -> np.ndarray:
    """Most likely base index per position of a PWM ``(width, 4)``."""
    return pwm.argmax(axis=1)


def plant_motifs(n: int, length: int, pwms: list[np.ndarray], *, p_present: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Base indices ``(n, length)`` int8 and labels ``(n, len(pwms))`` float32 (see the module docstring)."""
    seq = rng.choice(4, size=(n, length), p=BACKGROUND).astype(np.int8)
    labels = np.zeros((n, len(pwms)), dtype=np.float32)
    present = rng.random((n, len(pwms))) < p_present
    cdfs = [np.cumsum(p, axis=1) for p in pwms]
    for i in range(n):
        free = np.ones(length, dtype=bool)
        for m in rng.permutation(np.flatnonzero(present[i])):
            width = len(pwms[m])
            if width > length:
                continue
            # start s is allowed when free[s:s+width] is all True (window sum over the free mask)
            csum = np.concatenate([[0], np.cumsum(free)])
            ok = np.flatnonzero(csum[width:] - csum[:-width] == width)
            if len(ok) == 0:
                continue
            start = int(rng.choice(ok))
            draws = rng.random((width, 1))
            seq[i, start:start + width] = np.minimum((draws > cdfs[m]).sum(axis=1), 3)
            free[start:start + width] = False
            labels[i, m] = 1.0
    return seq, labels


def _one_hot(seq: np.ndarray) -> np.ndarray:
    return np.eye(4, dtype=np.float32)[seq].transpose(0, 2, 1).copy()


def _resolve_source(motif_source: str) -> str:
    if motif_source not in ("jaspar", "random", "auto"):
        raise ConfigError(f"task 'dna_motifs': motif_source must be 'jaspar', 'random' or 'auto', got {motif_source!r}")
    if motif_source == "auto":
        return "jaspar" if importlib.util.find_spec("pyjaspar") is not None else "random"
    return motif_source


def motif_set(source: str, n_motifs: int, length: int, motif_seed: int) -> tuple[list[np.ndarray], list[str]]:
    """The PWMs of the task for a resolved ``source`` ('jaspar' or 'random')."""
    rng = np.random.default_rng([motif_seed, 7])
    if source == "jaspar":
        return jaspar_pwms(n_motifs, rng=rng, max_len=min(20, length))
    return random_pwms(n_motifs, rng=rng, max_len=min(15, length))


@register_task("dna_motifs")
def dna_motifs(*, seed: int = 0, n_train: int = 4000, n_val: int = 500, n_test: int = 1000,
               length: int = 200, n_motifs: int = 20, p_present: float = 0.15,
               motif_source: str = "auto", motif_seed: int = 0) -> TaskData:
    """Motif-planting multi-label task; see the module docstring for the generator."""
    if length < 6 or n_motifs < 1 or not 0.0 < p_present < 1.0:
        raise ConfigError(f"task 'dna_motifs': need length >= 6, n_motifs >= 1, 0 < p_present < 1; got "
                          f"length={length}, n_motifs={n_motifs}, p_present={p_present}")
    source = _resolve_source(motif_source)
    version = ""
    if source == "jaspar":
        require("pyjaspar", task="dna_motifs", hint=_JASPAR_HINT)
        version = importlib.metadata.version("pyjaspar")
    params = {"seed": seed, "sizes": [n_train, n_val, n_test], "length": length, "n_motifs": n_motifs,
              "p_present": p_present, "source": source, "motif_seed": motif_seed, "pyjaspar": version}

    def build() -> dict[str, np.ndarray]:
        pwms, names = motif_set(source, n_motifs, length, motif_seed)
        rng = np.random.default_rng([seed, 1])
        out: dict[str, np.ndarray] = {"names": np.array(names)}
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            seq, y = plant_motifs(n, length, pwms, p_present=p_present, rng=rng)
            out[f"x_{split}"], out[f"y_{split}"] = _one_hot(seq), y
        return out

    a = cached_arrays("dna_motifs", params, build)
    about = "JASPAR2024 CORE vertebrates (CC BY 4.0)" if source == "jaspar" else "random PWMs"
    return TaskData("dna_motifs", "multilabel", "auroc", n_motifs, a["x_train"], a["y_train"],
                    a["x_val"], a["y_val"], a["x_test"], a["y_test"],
                    description=f"synthetic DNA with planted motifs from {about}: "
                                + ", ".join(str(s) for s in a["names"]))
