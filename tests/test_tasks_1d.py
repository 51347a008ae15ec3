"""1-D built-in tasks: series (mnist1d, UCR/UEA, Myo EMG), dna_motifs and burgers.

Tasks whose package or data is absent are skipped with the reason, unless ``CI`` is set: CI runs
``bash .ci/task_data.sh`` first, so there they must load. Sizes are tiny; generator tests use a
temporary cache so every build really runs.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

from nni_dash.errors import MissingExtraError
from nni_dash.tasks import create_task, list_tasks
from nni_dash.tasks import genomics, pde1d, series

UCR = [("gunpoint", 1, 150, 2, 50, 150), ("basic_motions", 6, 100, 4, 40, 40),
       ("italy_power", 1, 24, 2, 67, 1029), ("arrowhead", 1, 251, 3, 36, 175), ("osuleaf", 1, 427, 6, 200, 242),
       ("acsf1", 1, 1460, 10, 100, 100), ("coffee", 1, 286, 2, 28, 28), ("pig_cvp", 1, 2000, 52, 104, 208),
       ("trace", 1, 275, 4, 100, 100)]
SOURCE = {name: source for name, (source, _, _) in series.ARCHIVE_TASKS.items()}


def needs(available: bool, what: str) -> None:
    """Skip when ``what`` is missing, except under CI where it must be installed."""
    if not available:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{what} is missing under CI: `bash .ci/task_data.sh` should have installed it")
        pytest.skip(f"{what} is not installed (run `bash .ci/task_data.sh`)")


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNI_DASH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registered_names():
    assert {"mnist1d", "gunpoint", "basic_motions", "italy_power", "arrowhead", "myo_emg",
            "dna_motifs", "burgers"} <= set(list_tasks())


# --- .ts parser and splits --------------------------------------------------------------------
TS = """# comment
@problemName Toy
@timeStamps false
@univariate false
@classLabel true b a
@data
1,2,3:4,5,6:b
7,8,?:1,1,1:a
0,0,1:2,2,2 : b
"""


def test_parse_ts_multivariate():
    x, labels, lengths = series.parse_ts(TS)
    assert x.dtype == np.float32 and x.shape == (3, 2, 3) and lengths.tolist() == [3, 3, 3]
    assert labels.tolist() == ["b", "a", "b"]
    np.testing.assert_array_equal(x[0], [[1, 2, 3], [4, 5, 6]])
    assert np.isnan(x[1, 0, 2]) and x[2, 1, 0] == 2


def test_parse_ts_pads_variable_length_series():
    x, labels, lengths = series.parse_ts("@data\n1,2:3,4:a\n5,6,7:8,9,1:b\n")
    assert x.shape == (2, 2, 3) and lengths.tolist() == [2, 3]
    np.testing.assert_array_equal(x[0], [[1, 2, 0], [3, 4, 0]])  # zero-padded at the end


@pytest.mark.parametrize("bad", ["@data\n1,2:a\n1,2:3:a\n", "@data\n1,2:3:a\n", "1,2:a\n", "@data\n",
                                 "@timeStamps true\n@data\n(0,1):a\n"])
def test_parse_ts_rejects(bad):
    with pytest.raises(ValueError):
        series.parse_ts(bad)


def test_label_order_is_numeric_when_possible():
    from nni_dash.tasks.archives import _label_order
    assert _label_order(np.array(["10", "2", "-1"])) == ["-1", "2", "10"]
    assert _label_order(np.array(["b", "a"])) == ["a", "b"]


def test_stratified_split_keeps_every_class():
    y = np.array([0] * 10 + [1] * 2 + [2] * 3)
    tr, va = series.stratified_split(y, 0.2, np.random.default_rng(0))
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    assert set(y[tr]) == set(y[va]) == {0, 1, 2}


# --- UCR/UEA ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,c,length,k,n_train,n_test", UCR)
def test_ucr_task(name, c, length, k, n_train, n_test):
    needs(has(SOURCE[name]), f"{SOURCE[name]} (pip install --no-deps {SOURCE[name]})")
    d = create_task(name, seed=0)
    assert (d.kind, d.metric, d.num_outputs) == ("classification", "accuracy", k)
    assert d.x_train.shape[1:] == (c, length) and d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert len(d.x_train) + len(d.x_val) == n_train and len(d.x_test) == n_test
    assert set(d.y_train) == set(d.y_val) == set(d.y_test) == set(range(k))
    if c == 1:  # univariate: z-normalised per series (UCR)
        np.testing.assert_allclose(d.x_test.mean(-1), 0, atol=1e-4)
        np.testing.assert_allclose(d.x_test.std(-1), 1, atol=1e-3)
    else:  # multivariate: as the archive ships it (per-channel levels are information)
        assert np.abs(d.x_test.mean(-1)).max() > 0.1
    other = create_task(name, seed=1)
    assert not np.array_equal(d.y_val, other.y_val) or not np.array_equal(d.x_val, other.x_val)


def test_variable_length_japanese_vowels_is_zero_padded_and_not_normalised():
    needs(has("sktime"), "sktime (pip install --no-deps sktime==1.2.0)")
    d = create_task("japanese_vowels", seed=0)
    assert d.x_train.shape[1:] == (12, 29) and d.num_outputs == 9 and len(d.x_test) == 370
    x = np.concatenate([d.x_train, d.x_val])
    lengths = (np.abs(x).sum(1) > 0).sum(-1)                     # padded tails are exact zeros
    assert lengths.min() < lengths.max() <= 29
    short = int(np.argmin(lengths))
    assert not x[short, :, lengths[short]:].any()
    # the LPC cepstra keep their levels: the first coefficient's mean over the series is far from 0
    # (a per-series z-normalisation would make it 0 and cost MiniRocket 0.989 -> 0.819 test accuracy)
    assert abs(x[:, 0, :lengths.min()].mean()) > 0.5


def test_ucr_missing_sktime(monkeypatch):
    from nni_dash.tasks import archives
    monkeypatch.setattr(archives.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match="--no-deps sktime==1.2.0"):
        series.load_ucr("GunPoint", task="gunpoint")


# --- mnist1d ----------------------------------------------------------------------------------
def test_mnist1d(tmp_cache):
    needs(has("mnist1d"), "mnist1d")
    d = create_task("mnist1d", seed=0, n_train=200, n_val=50, n_test=100)
    assert d.x_train.shape == (200, 1, 40) and d.x_val.shape == (50, 1, 40) and d.x_test.shape == (100, 1, 40)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64 and d.num_outputs == 10
    assert set(d.y_train) == set(range(10))
    again = series.mnist1d(seed=0, n_train=200, n_val=50, n_test=100)
    np.testing.assert_array_equal(d.x_train, again.x_train)
    assert not np.array_equal(d.x_train, series.mnist1d(seed=1, n_train=200, n_val=50, n_test=100).x_train)


# --- Myo EMG ----------------------------------------------------------------------------------
def test_myo_emg():
    needs(series.myo_dir().is_dir(), f"the libemg 2.0.3 Myo recordings ({series.myo_dir()})")
    d = create_task("myo_emg")
    assert d.x_train.shape[1:] == (8, 50) and d.num_outputs == 5 and d.metric == "accuracy"
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 456
    assert all(set(y) == set(range(5)) for y in (d.y_train, d.y_val, d.y_test))
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 2)), 0, atol=1e-4)
    shifted = series.myo_emg(train_reps=(0, 1), val_reps=(2,), test_reps=(3,), seed=3)
    assert len(shifted.x_train) == 227  # 10 recordings of 598-602 samples: 22 or 23 windows each


def test_myo_emg_missing(tmp_cache):
    with pytest.raises(MissingExtraError, match="task_data.sh"):
        series.myo_emg()


# --- dna_motifs -------------------------------------------------------------------------------
def test_planted_motifs_match_labels():
    rng = np.random.default_rng(0)
    pwms = [np.eye(4)[[0, 1, 2, 3, 3, 2, 1, 0]], np.eye(4)[[1, 1, 2, 2, 1, 1, 2, 2]]]  # deterministic
    seq, y = genomics.plant_motifs(400, 60, pwms, p_present=0.4, rng=rng)
    for m, pwm in enumerate(pwms):
        motif = "".join("ACGT"[b] for b in genomics.consensus(pwm))
        found = np.array(["".join("ACGT"[b] for b in s).find(motif) >= 0 for s in seq])
        assert found[y[:, m] == 1].all()                      # every positive carries the motif
        assert found[y[:, m] == 0].mean() < 0.05              # negatives only by chance
    assert 0.3 < y.mean() < 0.5


def test_random_pwm_matches_score_higher_in_positives(tmp_cache):
    d = genomics.dna_motifs(seed=0, n_train=600, n_val=10, n_test=10, n_motifs=4, motif_source="random")
    pwms, _ = genomics.motif_set("random", 4, 200, 0)
    for m, pwm in enumerate(pwms):
        log_odds = np.log(pwm / genomics.BACKGROUND)                           # (width, 4)
        windows = np.lib.stride_tricks.sliding_window_view(d.x_train, len(pwm), axis=2)
        best = np.einsum("ncpw,wc->np", windows, log_odds).max(axis=1)         # best PWM match per sequence
        pos, neg = best[d.y_train[:, m] == 1], best[d.y_train[:, m] == 0]
        auc = (pos[:, None] > neg[None, :]).mean()
        assert auc > 0.8, (m, auc)


def test_dna_motifs_layout_and_seeds(tmp_cache, monkeypatch):
    kw = dict(n_train=300, n_val=50, n_test=60, length=100, n_motifs=5, motif_source="random")
    d = create_task("dna_motifs", seed=0, **kw)
    assert (d.kind, d.metric, d.num_outputs) == ("multilabel", "auroc", 5)
    assert d.x_train.shape == (300, 4, 100) and d.x_train.dtype == np.float32
    assert d.y_test.shape == (60, 5) and d.y_test.dtype == np.float32
    np.testing.assert_array_equal(d.x_train.sum(1), 1)  # one-hot
    assert 0.08 < d.y_train.mean() < 0.22
    np.testing.assert_allclose(d.x_train.mean((0, 2)), genomics.BACKGROUND, atol=0.03)
    monkeypatch.setenv("NNI_DASH_CACHE", str(tmp_cache / "other"))  # rebuild, not a cache hit
    np.testing.assert_array_equal(genomics.dna_motifs(seed=0, **kw).x_train, d.x_train)
    assert not np.array_equal(genomics.dna_motifs(seed=1, **kw).x_train, d.x_train)


def test_dna_motifs_jaspar(tmp_cache):
    needs(has("pyjaspar"), "pyjaspar")
    d = genomics.dna_motifs(n_train=20, n_val=5, n_test=5, n_motifs=3, motif_source="jaspar")
    assert d.y_train.shape == (20, 3) and "JASPAR2024" in d.description and " MA" in d.description


def test_dna_motifs_without_pyjaspar(tmp_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyjaspar", None)  # makes `import pyjaspar` fail
    with pytest.raises(MissingExtraError, match="pyjaspar==4.0.0"):
        genomics.dna_motifs(n_train=4, n_val=2, n_test=2, motif_source="jaspar")
    monkeypatch.setattr(genomics.importlib.util, "find_spec", lambda name: None)
    assert "random PWMs" in genomics.dna_motifs(n_train=4, n_val=2, n_test=2).description  # auto


# --- burgers ----------------------------------------------------------------------------------
def test_burgers_small_amplitude_is_heat_equation():
    u0 = 1e-6 * pde1d.sample_initial_conditions(3, 64, rng=np.random.default_rng(0))
    nu, t = 0.02, 0.5
    ut = pde1d.solve_burgers(u0, viscosity=nu, t_final=t)
    k = 2 * np.pi * np.fft.rfftfreq(64, d=1 / 64)
    expect = np.fft.rfft(u0) * np.exp(-nu * k ** 2 * t)
    # the nonlinear term is ~1e-6 of the linear one here; the decay factors differ from 1 by up to 1 - 1e-7
    np.testing.assert_allclose(np.fft.rfft(ut), expect, rtol=1e-3, atol=1e-6 * np.abs(expect).max())


def test_burgers_matches_cole_hopf():
    # u = -2 nu phi_x / phi with phi = 1 + a exp(-4 pi^2 nu t) cos(2 pi x) solves u_t + u u_x = nu u_xx.
    nu, a, x = 0.05, 0.5, np.arange(128) / 128

    def exact(t: float) -> np.ndarray:
        g = a * np.exp(-4 * np.pi ** 2 * nu * t)
        return 4 * np.pi * nu * g * np.sin(2 * np.pi * x) / (1 + g * np.cos(2 * np.pi * x))

    got = pde1d.solve_burgers(exact(0.0)[None], viscosity=nu, t_final=0.3)[0]
    np.testing.assert_allclose(got, exact(0.3), atol=1e-6)


def test_burgers_energy_decays():
    u0 = pde1d.sample_initial_conditions(4, 128, rng=np.random.default_rng(1))
    energies = [np.sum(pde1d.solve_burgers(u0, viscosity=0.02, t_final=t) ** 2, axis=1) for t in (0.1, 0.2, 0.4)]
    energies.insert(0, np.sum(u0 ** 2, axis=1))
    assert np.all(np.diff(np.stack(energies), axis=0) < 0)


def test_burgers_task(tmp_cache, monkeypatch):
    kw = dict(n_train=40, n_val=8, n_test=8, resolution=64, solve_factor=1)
    d = create_task("burgers", seed=0, **kw)
    assert (d.kind, d.metric, d.num_outputs) == ("dense_regression", "rel_l2", 1)
    assert d.x_train.shape == (40, 2, 64) and d.y_train.shape == (40, 1, 64) and d.y_val.dtype == np.float32
    assert abs(d.x_train[:, 0].std() - 1) < 1e-5                            # scaled by the train std of u0
    np.testing.assert_allclose(d.x_train[0, 1], np.arange(64) / 64, atol=1e-7)
    np.testing.assert_allclose(d.y_train.mean(-1)[:, 0], d.x_train[:, 0].mean(-1), atol=1e-5)  # mean conserved
    rel = np.linalg.norm(d.y_train[:, 0] - d.x_train[:, 0]) / np.linalg.norm(d.y_train)
    assert rel > 0.2                                                        # identity is not a solution
    assert pde1d.burgers(seed=0, grid=False, **kw).x_train.shape == (40, 1, 64)
    monkeypatch.setenv("NNI_DASH_CACHE", str(tmp_cache / "other"))
    np.testing.assert_array_equal(pde1d.burgers(seed=0, **kw).y_test, d.y_test)
    assert not np.array_equal(pde1d.burgers(seed=1, **kw).y_test, d.y_test)
