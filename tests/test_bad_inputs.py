"""Table of bad inputs (configs, data files, CLI arguments, model spaces) through ``nni_dash.cli.main``.

Every row must fail before any compute: exit code 2, exactly one stderr line ``error: <key> ...``
containing the expected fragment, and no output folder (nor ``.incomplete``) left behind.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nni_dash.cli import main

TINY = """\
task: {name: digits}
backbone: {name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: [1, 2]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 1, batch_size: 128}
tune: {max_trials: 1, trial_epochs: 1}
retrain: {epochs: 1, batch_size: 128}
trainer: {threads: 1, progress_bar: false}
"""

NPZ = """\
task: {name: npz, options: {path: data.npz, kind: classification}}
backbone: {name: tcn, args: {channels: 4, levels: 1, kernel_sizes: [3], dilations: [1]}}
budget: {mode: epochs}
search: {strategy: DASH, epochs: 1, batch_size: 8}
tune: {enabled: false}
retrain: {epochs: 1, batch_size: 8}
trainer: {threads: 1, progress_bar: false}
"""


def _npz(**change):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.standard_normal((20, 16)).astype(np.float32), y_train=np.arange(20) % 2,
                  x_test=rng.standard_normal((6, 16)).astype(np.float32), y_test=np.arange(6) % 2)
    arrays.update(change)
    return {k: v for k, v in arrays.items() if v is not None}


def _nan_x():
    x = np.zeros((20, 16), np.float32)
    x[3, 4] = np.nan
    return x


# (id, command line after the subcommand's config, config text or None for TINY, npz arrays or None, fragment)
CASES = [
    # ---- config keys, types, ranges ----
    ("unknown-key", ["--set", "search.epochz=1"], None, None, "error: search.epochz: unknown key"),
    ("unknown-section", ["--set", "serch.epochs=1"], None, None, "error: serch: unknown key; allowed keys: task"),
    ("wrong-type-int", ["--set", "retrain.epochs=many"], None, None, "error: retrain.epochs: expected int, got str"),
    ("wrong-type-bool", ["--set", "search.epochs=true"], None, None, "error: search.epochs: expected int, got bool"),
    ("section-as-value", ["--set", "search=3"], None, None, "error: search: expected a mapping of keys, got int 3"),
    ("epochs-zero", ["--set", "search.epochs=0"], None, None, "error: search.epochs=0: must be >= 1"),
    ("lr-negative", ["--set", "search.learning_rate=-0.1"], None, None, "error: search.learning_rate=-0.1: must be > 0"),
    ("lr-nan", ["--set", "retrain.learning_rate=.nan"], None, None, "error: retrain.learning_rate=nan: must be a finite"),
    ("dropout-one", ["--set", "retrain.dropout=1"], None, None, "error: retrain.dropout=1.0: must be >= 0 and < 1"),
    ("threads-zero", ["--set", "trainer.threads=0"], None, None, "error: trainer.threads=0: must be >= 1"),
    ("ckpt-steps-negative", ["--set", "trainer.checkpoint_every_n_steps=-1"], None, None,
     "error: trainer.checkpoint_every_n_steps=-1: must be >= 0"),
    ("milestone-zero", ["--set", "retrain.lr_milestones=[0]"], None, None, "error: retrain.lr_milestones[0]=0"),
    ("reserved-trainer-key", ["--set", "trainer.extra.max_epochs=3"], None, None,
     "error: trainer.extra.max_epochs: set by the pipeline itself"),
    # ---- names ----
    ("task-name", ["--set", "task.name=no_such_task"], None, None, "error: task.name: unknown value 'no_such_task'"),
    ("backbone-name", ["--set", "backbone.name=vgg"], None, None, "error: backbone.name: unknown value 'vgg'"),
    ("strategy-name", ["--set", "search.strategy=DASHH"], None, None, "allowed: DASH, DARTS, GumbelDARTS"),
    ("tuner-name", ["--set", "tune.tuner=Bogus"], None, None, "error: tune.tuner: unknown value 'Bogus'"),
    ("optimizer-name", ["--set", "retrain.optimizer=rmsprop"], None, None, "allowed: adamw, adam, sgd"),
    ("nan-policy", ["--set", "trainer.nan_policy=maybe"], None, None, "error: trainer.nan_policy: unknown value"),
    ("nan-skip-darts", ["--set", "trainer.nan_policy=skip", "--set", "search.strategy=DARTS"], None, None,
     "error: trainer.nan_policy='skip': search.strategy 'DARTS' cannot skip"),
    # ---- trainer keys, as Lightning resolves them on this machine ----
    ("precision", ["--set", "trainer.precision=17"], None, None, "precision=17): Lightning refuses it on this machine: Precision 17 is invalid"),
    ("strategy", ["--set", "trainer.strategy=ddpx"], None, None, "invalid strategy name: `strategy='ddpx'`"),
    ("trainer-extra", ["--set", "trainer.extra={nonsense: 1}"], None, None,
     "unexpected keyword argument 'nonsense'"),
    # ---- search space ----
    ("even-kernel", ["--set", "backbone.args.kernel_sizes=[3, 4]"], None, None,
     "error: backbone.args.kernel_sizes=[3, 4]: kernel size 4 is even; allowed: odd positive integers"),
    ("empty-dilations", ["--set", "backbone.args.dilations=[]"], None, None,
     "error: backbone.args.dilations=[]: empty candidate list"),
    ("duplicate-kernels", ["--set", "backbone.args.kernel_sizes=[3, 3]"], None, None, "duplicate values"),
    ("zero-dilation", ["--set", "backbone.args.dilations=[0, 1]"], None, None, "0 is not allowed"),
    ("float-kernel", ["--set", "backbone.retrain_args.kernel_sizes=[3.5]"], None, None,
     "error: backbone.retrain_args.kernel_sizes=[3.5]: 3.5 is not allowed"),
    ("wrn-depth", ["--set", "backbone.args.depth=11"], None, None, "error: backbone.depth=11: WRN depth must be 6n+4"),
    ("backbone-arg", ["--set", "backbone.args.bogus=1"], None, None, "error: backbone.wrn: "),
    ("strategy-arg", ["--set", "search.strategy_args.bogus=1"], None, None, "error: search.strategy_args: "),
    ("strategy-mode", ["--set", "search.strategy_args.mode=trilevel"], None, None, "mode='trilevel'"),
    ("tune-space-key", ["--set", "tune.search_space.lr={_type: choice, _value: [0.1]}"], None, None,
     "error: tune.search_space: unknown key 'lr'"),
    ("tune-space-type", ["--set", "tune.search_space.learning_rate={_type: foo, _value: [1]}"], None, None,
     "error: tune.search_space.learning_rate._type: unknown value 'foo'"),
    ("tune-space-format", ["--set", "tune.search_space.learning_rate=3"], None, None,
     "expected {_type: ..., _value: [...]}"),
    ("spans-too-large", ["--set", "backbone.args.kernel_sizes=[17, 19]"], None, None,
     "error: backbone.args: every candidate of kernel_sizes=[17, 19] x dilations=[1, 2] has a span"),
    # ---- config files ----
    ("not-yaml", [], "task: [unclosed\n", None, "is not valid YAML"),
    ("not-mapping", [], "- 1\n- 2\n", None, "error: config: expected a mapping of keys, got list"),
    ("bad-override-format", ["--set", "search.epochs"], None, None, "error: --set 'search.epochs': expected key.sub=value"),
    # ---- data ----
    ("task-seed-negative", ["--set", "task.options.seed=-1"], None, None,
     "error: task.options.seed=-1: expected an integer in [0, 2**32 - 1]"),
    ("task-seed-float", ["--set", "task.options.seed=0.5"], None, None, "error: task.options.seed=0.5"),
    ("task-option-value", ["--set", "task.options.test_fraction=1.5"], None, None,
     "error: task.options: task 'digits' rejected {'test_fraction': 1.5}: "),
    ("npz-missing", [], NPZ, "missing", "error: task.options (npz): npz path"),
    ("npz-nan", [], NPZ, _npz(x_train=_nan_x()), "x_train has 1 NaN/inf value(s)"),
    ("npz-label-range", ["--set", "task.options.num_outputs=2"], NPZ, _npz(y_test=np.array([0, 1, 5, 0, 1, 0])),
     "y_test has labels in [0, 5]; expected integers in [0, 2)"),
    ("npz-empty-split", [], NPZ, _npz(x_test=np.zeros((0, 16), np.float32), y_test=np.zeros(0, np.int64)), "x_test"),
    ("npz-length-mismatch", [], NPZ, _npz(y_train=np.arange(7) % 2), "y_train has 7 sample(s)"),
    ("npz-missing-key", [], NPZ, _npz(y_test=None), "lacks key 'y_test'"),
    ("npz-dtype", [], NPZ, _npz(x_train=np.array([["a"] * 16] * 20)), "x_train has dtype <U1; expected a numeric array"),
    ("npz-short-input", ["--set", "backbone.args.kernel_sizes=[5, 7]"], NPZ,
     _npz(x_train=np.zeros((20, 2), np.float32), x_test=np.zeros((6, 2), np.float32)),
     "error: backbone.args: every candidate of kernel_sizes=[5, 7] x dilations=[1] has a span d*(k-1)+1 > 3"),
]



def _check(capsys, code, fragment, out: Path | None):
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    if out is not None:
        assert not out.exists() and not out.with_name(out.name + ".incomplete").exists()


@pytest.mark.parametrize("name, extra, text, arrays, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_config_and_data(tmp_path, monkeypatch, capsys, name, extra, text, arrays, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY if text is None else text)
    if isinstance(arrays, dict):
        np.savez(tmp_path / "data.npz", **arrays)
    out = tmp_path / "out"
    _check(capsys, main(["run", "cfg.yml", "--out", str(out), *extra]), fragment, out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA device")
def test_gpu_accelerator_on_a_machine_without_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY)
    out = tmp_path / "out"
    _check(capsys, main(["run", "cfg.yml", "--out", str(out), "--set", "trainer.accelerator=gpu"]),
           "error: trainer (accelerator='gpu', devices=1, strategy='auto', precision='32-true'): Lightning refuses it "
           "on this machine: No supported gpu backend found!", out)


def _arch(tmp_path: Path, labels: dict) -> str:
    import json
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(labels))
    return str(path)


WRN10 = {label: "k3d1" for label in ("stem", "s1b1c1", "s1b1c2", "s2b1c1", "s2b1c2", "s3b1c1", "s3b1c2")}

CLI_CASES = [
    ("no-config-file", lambda t: ["search", str(t / "absent.yml")], "error: config: no such file"),
    ("no-config-arg", lambda t: ["search"], "error: config: missing the CONFIG argument"),
    ("tune-without-arch", lambda t: ["tune", "cfg.yml", "--out", str(t / "out")], "error: --arch: tune needs"),
    ("out-exists", lambda t: ((t / "exists").mkdir(), ["search", "cfg.yml", "--out", str(t / "exists")])[1],
     "already exists; choose another folder or pass --force"),
    ("arch-missing", lambda t: ["retrain", "cfg.yml", "--arch", str(t / "no.json"), "--out", str(t / "out")],
     "error: --arch: no such file"),
    ("arch-labels", lambda t: ["retrain", "cfg.yml", "--arch", _arch(t, {"x": "k3d1"}), "--out", str(t / "out")],
     "error: --arch: layer labels ['x'] do not match"),
    ("arch-value", lambda t: ["retrain", "cfg.yml", "--arch", _arch(t, {**WRN10, "stem": "k9d9"}),
                              "--out", str(t / "out")], "error: --arch: stem='k9d9' is not a candidate"),
    ("resume-nothing", lambda t: ["search", "cfg.yml", "--resume", str(t / "out")], "error: --resume: no interrupted run"),
    ("resume-with-out", lambda t: ((t / "r.incomplete").mkdir(), (t / "r.incomplete" / "config.yml").write_text(TINY),
                                   (t / "r.incomplete" / "resume.json").write_text('{"command": "search"}'),
                                   ["search", "--resume", str(t / "r"), "--out", str(t / "x")])[-1],
     "error: --out: not allowed with --resume"),
]


@pytest.mark.parametrize("name, argv, fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_arguments(tmp_path, monkeypatch, capsys, name, argv, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY)
    _check(capsys, main(argv(tmp_path)), fragment, tmp_path / "out")


def test_model_space_without_a_searchable_layer(tmp_path, monkeypatch, capsys):
    import torch.nn as nn
    from nni.nas.nn.pytorch import ModelSpace

    from nni_dash.backbones import _registry

    class Plain(ModelSpace):
        def __init__(self, *, in_channels, num_outputs, head="classification", **kwargs):
            super().__init__()
            self.fc = nn.Linear(in_channels, num_outputs)

        def forward(self, x):
            return self.fc(x.flatten(2).mean(-1))

    monkeypatch.setitem(_registry._REGISTRY, "plain", Plain)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY.replace("name: wrn, args: {depth: 10, kernel_sizes: [3, 5], dilations: "
                                                   "[1, 2]}", "name: plain"))
    _check(capsys, main(["search", "cfg.yml", "--out", str(tmp_path / "out")]),
           "error: backbone.args: the model space of backbone 'plain' has no searchable layer", tmp_path / "out")


def test_dilations_no_input_can_use_are_cropped_with_one_warning(tmp_path, monkeypatch, capsys):
    """digits are 8x8 (limit 2n-1 = 15): dilation 15 spans 31 even at k=3 and k=17 spans 17 at d=1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.yml").write_text(TINY.replace("kernel_sizes: [3, 5], dilations: [1, 2]",
                                                   "kernel_sizes: [3, 5, 17], dilations: [1, 7, 15]"))
    assert main(["search", "cfg.yml", "--dry-run"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: backbone.args: dropped dilation 15, kernel size 17 from the search space: their "
                        "smallest span d*(k-1)+1 exceeds 15 (2n-1 for input size n=8), so they would see only "
                        "padding; searching kernel_sizes=[3, 5] x dilations=[1, 7]"]
    assert "checks passed" in captured.out and not list(tmp_path.glob("runs*"))
