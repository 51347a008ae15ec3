"""``pip install nni-dash`` as a user does it: a fresh venv, torch==2.13.0 first, then a plain install.

The venv starts without setuptools (as Python 3.12's venvs do), so nothing but nni-dash's own
requirements decides which setuptools ends up there; nnictl needs ``pkg_resources`` (setuptools < 81).
Then ``nnictl --version`` and one tiny ``nnictl create`` experiment run from that venv alone.
Needs PyPI (the package registry) and takes a few minutes: marked ``install``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_nnictl import run_experiment

pytestmark = [pytest.mark.install, pytest.mark.slow, pytest.mark.nnictl]
ROOT = Path(__file__).resolve().parents[1]
# generated data only: a plain install has none of the task extras
TINY_LAG = """\
task: {name: lag, options: {n_train: 64, n_val: 32, n_test: 32}}
backbone: {name: resnet1d, args: {base_channels: 4, kernel_sizes: [3, 5], dilations: [1, 3]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 2, batch_size: 32}
tune: {enabled: false}
retrain: {epochs: 2, batch_size: 32}
trainer: {threads: 1}
"""


def sh(*cmd: str, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("plain") / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    py = str(venv / "bin" / "python")
    sh(py, "-m", "pip", "uninstall", "-q", "-y", "setuptools")  # as on Python >= 3.12
    sh(py, "-m", "pip", "install", "-q", "torch==2.13.0")
    sh(py, "-m", "pip", "install", "-q", str(ROOT))  # no extras, nothing pinned by hand
    return venv


def test_plain_pip_install_gives_a_working_nnictl(plain_venv):
    py = str(plain_venv / "bin" / "python")
    version = sh(py, "-W", "ignore", "-c", "import setuptools, pkg_resources; print(setuptools.__version__)").split()[-1]
    assert int(version.split(".")[0]) < 81, version
    assert sh(str(plain_venv / "bin" / "nnictl"), "--version").strip().startswith("3.0")
    sh(str(plain_venv / "bin" / "nni-dash"), "--help")


def test_plain_install_runs_a_tiny_experiment_to_completion(plain_venv, tmp_path):
    jobs, records = run_experiment(tmp_path, {"search.strategy": {"_type": "choice", "_value": ["DASH"]}},
                                   trials=1, python=str(plain_venv / "bin" / "python"), config=TINY_LAG)
    (job,) = jobs
    assert job["status"] == "SUCCEEDED", job
    assert [r for r in records if r["type"] == "FINAL"]
