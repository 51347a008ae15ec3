"""Real ``nnictl create`` experiments whose trials run nni_dash.nni_trial; checked through NNI's REST API.

The manager (NNI's bundled node) listens on a free port; the tests talk to 127.0.0.1 only.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.nnictl

TINY = """\
task: {name: digits}
backbone: {name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: [1, 2]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 2, batch_size: 128}
tune: {max_trials: 1, trial_epochs: 1, trial_batch_fraction: 0.3}
retrain: {epochs: 2, batch_size: 128}
trainer: {threads: 1, log_every_n_steps: 1}
"""


def nnictl(python: str = sys.executable) -> str:
    path = Path(python).with_name("nnictl")
    if not path.exists():
        pytest.skip("nnictl is not installed next to this Python")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, route: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{route}", timeout=10) as response:
        return json.loads(response.read())


def run_experiment(tmp_path: Path, search_space: dict, trials: int, command: str = "run",
                   timeout: float = 240, python: str = sys.executable, config: str = TINY) -> tuple[list, list]:
    """Start an experiment, wait (bounded) until it is done, stop it; return (trial jobs, metric records).

    ``python``: the interpreter whose ``nnictl`` starts the experiment and which runs the trials.
    """
    import yaml
    (tmp_path / "tiny.yml").write_text(config)
    exp = {"experimentName": "nni-dash-test", "searchSpace": search_space,
           "trialCommand": f"{python} -m nni_dash.nni_trial --config tiny.yml --command {command}",
           "trialCodeDirectory": ".", "trialConcurrency": 1, "maxTrialNumber": trials,
           "tuner": {"name": "GridSearch"}, "trainingService": {"platform": "local", "useActiveGpu": False},
           "experimentWorkingDirectory": str(tmp_path / "nni-experiments")}
    (tmp_path / "exp.yml").write_text(yaml.safe_dump(exp))
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([nnictl(python), "create", "--config", str(tmp_path / "exp.yml"), "--port", str(port)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    exp_id = None
    try:
        exp_id = get(port, "experiment")["id"]
        deadline = time.monotonic() + timeout
        while True:
            status = get(port, "check-status")["status"]
            jobs = get(port, "trial-jobs")
            done = [j for j in jobs if j["status"] in ("SUCCEEDED", "FAILED", "USER_CANCELED", "EARLY_STOPPED")]
            if status in ("DONE", "ERROR", "STOPPED") or len(done) >= trials:
                break
            assert time.monotonic() < deadline, f"experiment not done after {timeout}s: {status}, {jobs}"
            time.sleep(2)
        assert status != "ERROR", get(port, "check-status")
        return jobs, get(port, "metric-data")
    finally:
        if exp_id is None:
            exp_id = "--all"
        subprocess.run([nnictl(python), "stop", exp_id], cwd=tmp_path, env=env, capture_output=True, timeout=60)


def parse(record: dict) -> dict:
    value = json.loads(record["data"])
    return json.loads(value) if isinstance(value, str) else value


def metrics_of(records: list, trial: str, kind: str) -> list[dict]:
    return [parse(r) for r in records if r["trialJobId"] == trial and r["type"] == kind]


def test_pipeline_trial_reports_each_epoch_and_the_test_score(tmp_path):
    jobs, records = run_experiment(tmp_path, {"search.strategy_args.arc_learning_rate":
                                              {"_type": "choice", "_value": [0.05]}}, trials=1)
    (job,) = jobs
    assert job["status"] == "SUCCEEDED", job
    periodical = metrics_of(records, job["trialJobId"], "PERIODICAL")
    assert len(periodical) == 2 + 1 + 2  # search epochs, tune trials, retrain epochs
    assert all(isinstance(m["default"], float) for m in periodical)
    assert "search_prob_stem_k3d1" in periodical[0] and "search_val_accuracy" in periodical[0]
    assert [m["stage_index"] for m in periodical] == [0, 0, 1, 2, 2]  # search and retrain told apart
    assert any(k.startswith("retrain_") for k in periodical[-1]) and not any("/" in k for m in periodical for k in m)
    (final,) = metrics_of(records, job["trialJobId"], "FINAL")
    assert 0.0 <= final["default"] <= 1.0 and final["default"] == final["test_accuracy"]
    assert final["search.strategy_args.arc_learning_rate"] == 0.05  # the trial's params, against NNI bug #9
    assert final["arch_stem"] in {"k3d1", "k3d2", "k5d1", "k5d2"} and final["strategy"] == "DASH"
    assert not any("/" in k for k in final)  # each key its own column title in NNI's table
    # TensorBoard where the web UI's TensorBoard tab reads it (NNI bug #5609)
    tb = next((tmp_path / "nni-experiments").glob(f"*/trials/{job['trialJobId']}/output/tensorboard"))
    assert list((tb / "search").glob("events.out.tfevents.*")) and list((tb / "retrain").glob("events.out.tfevents.*"))


def test_strategy_comparison_and_a_failing_trial(tmp_path):
    space = {"search.strategy": {"_type": "choice", "_value": ["DASH", "NOPE", "none"]},
             "tune.enabled": {"_type": "choice", "_value": [False]}}
    jobs, records = run_experiment(tmp_path, space, trials=3)
    by_strategy = {json.loads(j["hyperParameters"][0])["parameters"]["search.strategy"]: j for j in jobs}
    assert {s: j["status"] for s, j in by_strategy.items()} == {"DASH": "SUCCEEDED", "NOPE": "FAILED",
                                                               "none": "SUCCEEDED"}
    for strategy in ("DASH", "none"):
        trial = by_strategy[strategy]["trialJobId"]
        periodical = metrics_of(records, trial, "PERIODICAL")
        assert len(periodical) == (2 + 2 if strategy == "DASH" else 2)  # `none` has no search epochs
        (final,) = metrics_of(records, trial, "FINAL")
        assert final["search.strategy"] == strategy and 0.0 <= final["default"] <= 1.0
    failed = by_strategy["NOPE"]
    assert not metrics_of(records, failed["trialJobId"], "FINAL")
    stderr = (Path(failed["logPath"]) / "trial.stderr").read_text()
    assert "error: search.strategy: unknown value 'NOPE'; allowed: DASH" in stderr
