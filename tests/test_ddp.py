"""DDP: a 2-process CPU (gloo) DASH search through the CLI ends with the same α on both ranks and exports.

The flags are the ones README.md gives for multi-node runs (plus ``--num_nodes``/``MASTER_ADDR`` there).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nni_dash.strategy.decision import decisions

pytestmark = pytest.mark.slow

CONFIG = """\
task: {name: lag, options: {lag: 14, n_train: 128, n_val: 64, n_test: 64}}
backbone: {name: resnet1d, args: {base_channels: 4, kernel_sizes: [3, 5], dilations: [1, 7]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 3, batch_size: 16}
trainer: {threads: 1, progress_bar: false}
"""


def test_two_rank_ddp_search_ends_with_the_same_alpha_on_both_ranks(tmp_path):
    (tmp_path / "c.yml").write_text(CONFIG)
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("nni-dash")
    proc = subprocess.run([str(cli), "search", "c.yml", "--out", str(out), "--set", "trainer.accelerator=cpu",
                           "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    search = json.loads((out / "metrics.json").read_text())["stages"]["search"]
    # every α entry gathered from both ranks after the last step: identical
    assert search["ddp"] == {"world_size": 2, "max_abs_diff": 0.0}
    assert "DDP over 2 processes" in proc.stdout
    probs = json.loads((out / "search" / "probs.json").read_text())["probs"]
    assert any(max(p.values()) > 1.05 / len(p) for p in probs.values())  # α moved: the agreement is not vacuous
    arch = json.loads((out / "architecture.json").read_text())
    assert set(arch) == set(probs) and all(search["argmax"][k] == max(p, key=p.get) for k, p in probs.items())
    # the exported CNN: the argmax where alpha decided (undecided layers take the backbone's kernel)
    decided = [k for k, d in decisions(probs).items() if d["decided"]]
    assert arch == search["architecture"] and all(arch[k] == search["argmax"][k] for k in decided)
