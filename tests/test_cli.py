"""nni-dash end to end on a tiny config: every artefact exists and is valid; stages alone; bad input."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nni_dash.cli import main
from nni_dash.config import ExperimentConfig

TINY = """\
task: {name: digits}
backbone: {name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: [1, 2]}, retrain_args: {width: 2}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 1, batch_size: 128}
tune: {max_trials: 2, trial_epochs: 1, trial_batch_fraction: 0.3, early_stop: false}
retrain: {epochs: 1, batch_size: 128, refit: false}
trainer: {threads: 1, log_every_n_steps: 1, progress_bar: false}
"""
LABELS = {"stem", "s1b1c1", "s1b1c2", "s2b1c1", "s2b1c2", "s3b1c1", "s3b1c2"}  # WRN-10



def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("nni-dash")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "nni_dash.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny.yml").write_text(TINY)
    return folder


@pytest.fixture(scope="module")
def run_dir(tiny) -> Path:
    proc = cli("run", "tiny.yml", "--out", "run", "--set", "search.epochs=2", "--set", "seed=1", cwd=tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test accuracy:" in proc.stdout and "time: search" in proc.stdout  # the final summary
    return tiny / "run"


def test_run_writes_resolved_config_with_overrides(run_dir, tiny):
    cfg = ExperimentConfig.from_yaml(run_dir / "config.yml")
    expected = ExperimentConfig.from_yaml(tiny / "tiny.yml").apply_overrides(["search.epochs=2", "seed=1"])
    assert cfg == expected and cfg.search.epochs == 2
    assert not (tiny / "run.incomplete").exists()


def test_run_exports_architecture_json_and_png(run_dir):
    arch = json.loads((run_dir / "architecture.json").read_text())
    assert set(arch) == LABELS and all(v in {"k3d1", "k3d2", "k5d1", "k5d2"} for v in arch.values())
    probs = json.loads((run_dir / "search" / "probs.json").read_text())["probs"]
    assert set(probs) == LABELS and all(sum(p.values()) == pytest.approx(1.0, abs=1e-4) for p in probs.values())
    png = (run_dir / "architecture.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt
    assert plt.imread(str(run_dir / "architecture.png")).ndim == 3


def test_run_writes_metrics_checkpoints_and_tensorboard(run_dir):
    data = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= data["test_score"] <= 1.0 and data["metric"] == "accuracy"
    assert set(data["stages"]) == {"search", "tune", "retrain"}
    assert all(stage["seconds"] > 0 for stage in data["stages"].values())
    assert len(data["stages"]["tune"]["trials"]) == 2
    assert data["stages"]["retrain"]["hparams_source"] == "tuned"
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = {r["name"]: float(r["value"]) for r in rows if r["stage"] == "final"}
    assert final["test_accuracy"] == pytest.approx(data["test_score"])
    search_epochs = {r["epoch"] for r in rows if r["stage"] == "search" and r["name"] == "val_accuracy"}
    assert search_epochs == {"0", "1"}  # --set search.epochs=2 took effect
    assert any(r["name"].startswith("prob/") for r in rows)
    assert (run_dir / "search/checkpoints/last.ckpt").is_file()
    assert (run_dir / "retrain/checkpoints/best.ckpt").is_file() and (run_dir / "tune/best.json").is_file()
    assert "test accuracy" in (run_dir / "summary.txt").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tensorboard" / "search"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {f"prob/{label}/k3d1" for label in LABELS} <= set(tags) and "train_loss_step" in tags
    acc = EventAccumulator(str(run_dir / "tensorboard" / "retrain"))
    acc.Reload()
    assert {"val_accuracy", "val_loss"} <= set(acc.Tags()["scalars"])


def test_retrain_alone_from_arch_json_uses_config_hparams(run_dir, tiny):
    proc = cli("retrain", "tiny.yml", "--arch", str(run_dir / "architecture.json"), "--out", "retrain_only",
               "--set", "retrain.learning_rate=0.05", cwd=tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tiny / "retrain_only" / "metrics.json").read_text())
    assert set(data["stages"]) == {"retrain"} and data["stages"]["retrain"]["hparams_source"] == "config"
    assert data["stages"]["retrain"]["hparams"]["learning_rate"] == 0.05


def test_retrain_extends_a_search_folder_with_its_tuned_hparams(run_dir, tiny):
    work = tiny / "extend"
    shutil.copytree(run_dir, work)
    assert main(["retrain", str(tiny / "tiny.yml"), "--out", str(work)]) == 0
    data = json.loads((work / "metrics.json").read_text())
    assert set(data["stages"]) == {"search", "tune", "retrain"}
    assert data["stages"]["retrain"]["hparams_source"] == "tuned"


BAD = [
    (["--set", "search.epochz=1"], "search.epochz", "allowed keys in search: strategy"),
    (["--set", "retrain.epochs=many"], "retrain.epochs", "expected int"),
    (["--set", "task.name=no_such_task"], "task.name", "allowed: "),
    (["--set", "task.name=npz", "--set", "task.options={path: /no/such.npz, kind: classification}"],
     "task.options", "/no/such.npz"),
    (["--set", "search.strategy=DASHH"], "search.strategy", "allowed: DASH, DARTS, GumbelDARTS"),
    (["--set", "search.strategy_args.bogus=1"], "search.strategy_args", "bogus"),
]


@pytest.mark.parametrize("extra, key, allowed", BAD, ids=[b[1] for b in BAD])
def test_bad_input_exits_2_with_one_line_and_no_output(tiny, capsys, extra, key, allowed):
    out = tiny / f"bad-{key}"
    assert main(["run", str(tiny / "tiny.yml"), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}") and allowed in err[0], err
    assert not out.exists() and not out.with_name(out.name + ".incomplete").exists()


def test_bad_input_through_the_console_script(tiny):
    proc = cli("search", "tiny.yml", "--out", "bad", "--set", "search.strategy=NOPE", cwd=tiny)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: search.strategy: unknown value 'NOPE'; allowed:")
    assert not (tiny / "bad").exists()


def test_tune_without_architecture_and_existing_out_are_refused(tiny, capsys):
    assert main(["tune", str(tiny / "tiny.yml"), "--out", str(tiny / "none-here")]) == 2
    assert "--arch" in capsys.readouterr().err
    (tiny / "exists").mkdir()
    assert main(["search", str(tiny / "tiny.yml"), "--out", str(tiny / "exists")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_failure_during_a_stage_leaves_only_a_marked_incomplete_folder(tiny, monkeypatch):
    import nni_dash.pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(nni_dash.pipeline, "search", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["search", str(tiny / "tiny.yml"), "--out", str(tiny / "crash")])
    assert not (tiny / "crash").exists()
    assert "simulated crash" in (tiny / "crash.incomplete" / "error.txt").read_text()
