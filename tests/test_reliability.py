"""Reliability: kill -9 / Ctrl-C and --resume, atomic checkpoints, NaN through the CLI, fuzzed configs and files.

The kill tests run the real console script in a subprocess, wait for the first mid-epoch checkpoint,
SIGKILL the process and resume it; the resumed run must end exactly where an uninterrupted one does.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_dash.cli import main

SEARCH = """\
task: {name: digits}
backbone: {name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: [1, 2]}, retrain_args: {width: 1}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 2, batch_size: 32}
retrain: {epochs: 2, batch_size: 32}
tune: {enabled: false}
trainer: {threads: 1, log_every_n_steps: 5, progress_bar: false, checkpoint_every_n_steps: 4}
seed: 3
"""



def _cmd() -> list[str]:
    script = Path(sys.executable).with_name("nni-dash")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nni_dash.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd() + list(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _mid_epoch(ckpt: Path) -> bool:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    loaders = [v.get("loaders") for k, v in state.get("callbacks", {}).items() if "ResumeCheckpoint" in k]
    return bool(loaders and loaders[0])


def kill_when_checkpointed(args: list[str], cwd: Path, ckpt: Path, sig: int = signal.SIGKILL,
                           timeout: float = 240) -> tuple[int, str]:
    """Start ``nni-dash args``; as soon as ``ckpt`` exists, send ``sig``; return (exit code, stderr)."""
    proc = subprocess.Popen(_cmd() + args, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ckpt.exists():
            assert proc.poll() is None, f"finished before a checkpoint appeared: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reliability")
    (folder / "search.yml").write_text(SEARCH)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(work) -> Path:
    proc = cli("run", "search.yml", "--out", "full", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "full"


def _same_search(a: Path, b: Path) -> None:
    assert json.loads((a / "architecture.json").read_text()) == json.loads((b / "architecture.json").read_text())
    pa, pb = (json.loads((x / "search" / "probs.json").read_text())["probs"] for x in (a, b))
    assert set(pa) == set(pb)
    for label in pa:
        assert set(pa[label]) == set(pb[label])
        for value in pa[label]:
            assert pa[label][value] == pytest.approx(pb[label][value], abs=1e-5), (label, value)


def test_search_killed_mid_epoch_resumes_to_the_same_architecture_and_alphas(work, uninterrupted):
    # bilevel DASH: 39 training batches per epoch, the 3 held-out batches cycle (max_size_cycle) - both continue
    ckpt = work / "killed.incomplete" / "search" / "checkpoints" / "last.ckpt"
    code, _ = kill_when_checkpointed(["search", "search.yml", "--out", "killed"], work, ckpt)
    assert code == -signal.SIGKILL
    assert not (work / "killed").exists() and _mid_epoch(ckpt)  # killed inside epoch 0, nothing renamed
    proc = cli("search", "search.yml", "--resume", "killed", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "search: resuming from" in proc.stdout
    assert not (work / "killed.incomplete").exists() and not (work / "killed" / "resume.json").exists()
    _same_search(uninterrupted, work / "killed")


def test_retrain_killed_mid_epoch_resumes_to_the_same_scores(work, uninterrupted):
    arch = str(uninterrupted / "architecture.json")
    ckpt = work / "rkilled.incomplete" / "retrain" / "checkpoints" / "last.ckpt"
    code, _ = kill_when_checkpointed(["retrain", "search.yml", "--arch", arch, "--out", "rkilled"], work, ckpt)
    assert code == -signal.SIGKILL and _mid_epoch(ckpt)
    proc = cli("retrain", "--resume", str(work / "rkilled.incomplete"), cwd=work)  # CONFIG omitted: the saved one
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = cli("retrain", "search.yml", "--arch", arch, "--out", "rfull", cwd=work)
    assert full.returncode == 0, full.stderr[-3000:]
    a, b = (json.loads((work / x / "metrics.json").read_text()) for x in ("rfull", "rkilled"))
    assert b["test_score"] == pytest.approx(a["test_score"], abs=1e-6)
    assert b["val_score"] == pytest.approx(a["val_score"], abs=1e-6)


def test_ctrl_c_saves_a_checkpoint_prints_the_resume_command_and_exits_130(work, uninterrupted):
    ckpt = work / "intr.incomplete" / "search" / "checkpoints" / "last.ckpt"
    code, err = kill_when_checkpointed(["search", "search.yml", "--out", "intr"], work, ckpt, sig=signal.SIGINT)
    assert code == 130, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: interrupted") and "--resume" in line and "last good checkpoint" in line, line
    # the stop lands on a batch boundary (mid-epoch or at an epoch end) with a checkpoint written there
    proc = cli("search", "search.yml", "--resume", "intr", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_search(uninterrupted, work / "intr")


def test_resume_refuses_a_changed_config_and_bad_folders(work, capsys):
    (work / "chg.incomplete").mkdir()
    (work / "chg.incomplete" / "config.yml").write_text(SEARCH)
    (work / "chg.incomplete" / "resume.json").write_text('{"command": "search"}')
    assert main(["search", str(work / "search.yml"), "--resume", str(work / "chg"), "--set", "search.epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "error: --resume: search.epochs differs" in err and "saved 2, given 3" in err
    assert main(["run", str(work / "search.yml"), "--resume", str(work / "chg")]) == 2
    assert "was started by `nni-dash search`" in capsys.readouterr().err
    assert main(["search", str(work / "search.yml"), "--resume", str(work / "nothing")]) == 2
    assert "no interrupted run" in capsys.readouterr().err


# ---- numerical faults through the CLI -------------------------------------------------------------------
TINY_NAN = """\
task: {name: digits}
backbone: {name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: [1, 2]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 1, batch_size: 64}
retrain: {epochs: 1, batch_size: 64}
tune: {enabled: false}
trainer: {threads: 1, progress_bar: false, checkpoint_every_n_steps: 2}
"""


def _poison_after(monkeypatch, calls: int) -> dict:
    """Make the task loss NaN from the ``calls``-th training loss on (search: 2 losses per bilevel step)."""
    from nni_dash.evaluator import TaskModule
    original, seen = TaskModule._loss, {"n": 0}

    def loss(self, out, y):
        value = original(self, out, y)
        if self.training:
            seen["n"] += 1
            if seen["n"] > calls:
                return value * float("nan")
        return value
    monkeypatch.setattr(TaskModule, "_loss", loss)
    return seen


@pytest.mark.parametrize("stage", ["search", "retrain"])
def test_nan_loss_exits_3_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, stage):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY_NAN)
    extra = []
    if stage == "retrain":
        arch = {label: "k3d1" for label in ("stem", "s1b1c1", "s1b1c2", "s2b1c1", "s2b1c2", "s3b1c1", "s3b1c2")}
        (tmp_path / "arch.json").write_text(json.dumps(arch))
        extra = ["--arch", "arch.json"]
    _poison_after(monkeypatch, calls=12 if stage == "search" else 6)  # NaN from batch 6 on
    assert main([stage, "cfg.yml", "--out", "nan", *extra]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    what = "architecture" if stage == "search" else "training"
    assert err[0].startswith(f"error: non-finite {what} loss (nan) at epoch 0, step "), err[0]
    assert ", batch 6;" in err[0] and "last good checkpoint kept:" in err[0]
    assert f"resume with: nni-dash {stage} cfg.yml --resume" in err[0] and "nan_policy=skip" in err[0]
    ckpt = tmp_path / "nan.incomplete" / stage / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] in (5, 6)  # after batch 5
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "nan").exists()
    if stage == "search":  # resume skipping the bad batches (a harmless key) finishes with finite alphas
        assert main(["search", "cfg.yml", "--resume", "nan", "--set", "trainer.nan_policy=skip"]) == 0
        probs = json.loads((tmp_path / "nan" / "search" / "probs.json").read_text())["probs"]
        assert all(np.isfinite(p) for dist in probs.values() for p in dist.values())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous checkpoint intact and no temporary file behind."""
    from nni_dash import checkpoint
    io = checkpoint.AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    assert torch.load(path, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ---- fuzzing: every outcome is success or the documented one-line error, never a traceback ---------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nni_dash.config import ExperimentConfig  # noqa: E402
from nni_dash.errors import ConfigError, DashError  # noqa: E402

KEYS = ["task.name", "task.options", "backbone.name", "backbone.args", "backbone.args.kernel_sizes",
        "backbone.args.dilations", "backbone.args.depth", "backbone.retrain_args", "search.strategy",
        "search.strategy_args", "search.strategy_args.mode", "search.strategy_args.arc_learning_rate",
        "search.epochs", "search.batch_size", "search.learning_rate", "search.momentum", "tune.enabled",
        "tune.tuner", "tune.search_space", "tune.search_space.learning_rate", "tune.max_trials",
        "tune.trial_batch_fraction", "retrain.epochs", "retrain.dropout", "retrain.optimizer", "retrain.lr_milestones",
        "trainer.accelerator", "trainer.devices", "trainer.precision", "trainer.threads", "trainer.nan_policy",
        "trainer.checkpoint_every_n_steps", "trainer.extra", "seed", "bogus", "search.bogus", "trainer.extra.plugins"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from(["", "DASH", "digits", "wrn", "stop", "skip", "k3d1", "sgd", "choice", "x.y"]),
                     st.text(max_size=6))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(["_type", "_value", "mode", "depth"]),
                                                           st.text(max_size=5)), inner, max_size=3)), max_leaves=8)


def _one_line_config_error(err: BaseException) -> None:
    assert isinstance(err, DashError), f"{type(err).__name__}: {err}"
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text


@settings(max_examples=400, deadline=None)
@given(items=st.lists(st.tuples(st.sampled_from(KEYS), _values), max_size=5))
def test_fuzz_config_overrides_and_validation(items):
    try:
        ExperimentConfig().apply_overrides(dict(items)).validate()
    except DashError as err:
        _one_line_config_error(err)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(_values, st.dictionaries(st.sampled_from(["task", "backbone", "search", "tune", "retrain",
                                                                "trainer", "seed", "junk"]), _values, max_size=4)),
       raw=st.text(max_size=40))
def test_fuzz_config_files(tmp_path, data, raw):
    import yaml
    for text in (yaml.safe_dump(data), raw):
        path = tmp_path / "fuzz.yml"
        path.write_text(text)
        try:
            ExperimentConfig.from_yaml(path).validate()
        except DashError as err:
            _one_line_config_error(err)


CLI_KEYS = ["backbone.args.kernel_sizes", "backbone.args.dilations", "backbone.args.depth", "backbone.args.width",
            "search.strategy", "search.strategy_args.mode", "search.epochs", "retrain.dropout", "trainer.nan_policy",
            "task.options.seed", "task.options.bogus", "search.batch_size"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.tuples(st.sampled_from(CLI_KEYS), st.one_of(
    st.integers(-2, 20), st.lists(st.integers(-1, 21), max_size=3), st.sampled_from(["DASH", "none", "skip", "x"]))),
    max_size=3))
def test_fuzz_cli_dry_run(tmp_path, capsys, items):
    (tmp_path / "cfg.yml").write_text(TINY_NAN)
    argv = ["search", str(tmp_path / "cfg.yml"), "--dry-run"]
    for key, value in items:
        argv += ["--set", f"{key}={json.dumps(value)}"]
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert code in (0, 2), err
    if code == 2:
        assert len(err) == 1 and err[0].startswith("error: "), err
    else:
        assert not err
    assert not list(tmp_path.glob("runs*"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x_val", "y_val"]),
                              st.lists(st.integers(0, 6), min_size=1, max_size=3), min_size=2),
       fill=st.sampled_from([0.0, 1.0, 2.0, np.nan, np.inf]), garbage=st.booleans())
def test_fuzz_cli_with_malformed_npz(tmp_path, capsys, shapes, fill, garbage):
    path = tmp_path / "data.npz"
    if garbage:
        path.write_bytes(b"PK\x03\x04 not really a zip" + bytes(len(shapes)))
    else:
        np.savez(path, **{k: np.full(s, fill, np.float32 if k.startswith("x") else np.float64)
                          for k, s in shapes.items()})
    (tmp_path / "cfg.yml").write_text(f"""\
task: {{name: npz, options: {{path: {path}, kind: classification}}}}
backbone: {{name: tcn, args: {{channels: 4, levels: 1, kernel_sizes: [3], dilations: [1]}}}}
trainer: {{threads: 1}}
""")
    code = main(["search", str(tmp_path / "cfg.yml"), "--dry-run"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning:")]
    assert code in (0, 2), err
    if code == 2:
        assert len(err) == 1 and err[0].startswith("error: task.options (npz): "), err
