"""Task suite benchmark: plain backbone vs DASH (bilevel, joint) vs DARTS-naive vs RandomOneShot.

For every (task, method, seed): ``search`` (skipped for ``none``) then ``retrain`` with the SAME fixed
retrain hyperparameters for all methods (no HPO stage in the suite). Each finished run is appended to
``benchmarks/results/suite.json`` immediately, so partial results survive; the Markdown report and PNG
are regenerated from that JSON (``--report-only`` regenerates them without running anything).

    python benchmarks/suite.py --quick                       # 1 seed, all tasks in BUDGETS
    python benchmarks/suite.py --tasks mnist1d darcy --seeds 0 1 2
    python benchmarks/suite.py --report-only

Budgets are CPU-sized (one task-method-seed run takes seconds to a few minutes on a laptop core).
"""
from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import logging
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
JSON_PATH, MD_PATH, PNG_PATH = RESULTS / "suite.json", RESULTS / "suite.md", RESULTS / "suite.png"
DISCUSSION_PATH = RESULTS / "suite_discussion.md"  # hand-written; copied into suite.md on every regeneration

METHODS = {  # label -> (strategy, strategy_args)
    "none": ("none", {}),
    "DASH-bilevel": ("DASH", {"mode": "bilevel"}),
    "DASH-joint": ("DASH", {"mode": "joint"}),
    "DARTS-naive": ("DARTS-naive", {}),
    "RandomOneShot": ("RandomOneShot", {}),
}
DASH_METHODS = ("DASH-bilevel", "DASH-joint")

_R1D = {"base_channels": 16, "kernel_sizes": (3, 5, 7, 9), "dilations": (1, 2, 4)}
_W10 = {"depth": 10, "kernel_sizes": (3, 5, 7), "dilations": (1, 2, 4)}
_DASH_FRAC = {"batch_fraction": 0.5}  # DASH-only: half the train batches per search epoch (reference uses 0.2)
# Per-task budget table. task: options for create_task (size); backbone + args (search space = kernel_sizes x
# dilations); search epochs; retrain epochs; lr; batch size; dash: extra DASH strategy_args. The weights' recipe
# (:func:`recipe`) is the same for every method (no HPO): SGD at the task's lr, which these short epoch budgets
# were sized for. The CLI's AdamW 1e-3 recipe goes with its step budgets (thousands of steps) and under-trains
# here (suite_discussion.md).
BUDGETS: dict[str, dict[str, Any]] = {
    "mnist1d": dict(kind="1-D cls", task={"n_train": 2000, "n_val": 400, "n_test": 1000},
                    backbone="resnet1d", backbone_args=_R1D, search_epochs=3, retrain_epochs=20,
                    lr=0.05, batch_size=64, dash=_DASH_FRAC),
    "dna_motifs": dict(kind="1-D multilabel", task={"n_train": 1000, "n_val": 200, "n_test": 400, "length": 100},
                       backbone="resnet1d", backbone_args=_R1D, search_epochs=3, retrain_epochs=15,
                       lr=0.05, batch_size=64, dash=_DASH_FRAC),
    "darcy": dict(kind="2-D dense regression", task={"resolution": 16, "n_train": 160, "n_val": 40, "n_test": 80},
                  backbone="wrn", backbone_args=_W10, search_epochs=2, retrain_epochs=20, lr=0.05, batch_size=32,
                  dash=_DASH_FRAC),
    "burgers": dict(kind="1-D dense regression", task={"resolution": 64, "n_train": 200, "n_val": 40, "n_test": 80},
                    backbone="resnet1d", backbone_args=_R1D, search_epochs=2, retrain_epochs=20,
                    lr=0.01, batch_size=32, dash=_DASH_FRAC),
    "digits": dict(kind="2-D cls", task={}, backbone="wrn",
                   backbone_args={"depth": 10, "kernel_sizes": (3, 5, 7), "dilations": (1, 2)},
                   search_epochs=2, retrain_epochs=15, lr=0.05, batch_size=64, dash=_DASH_FRAC),
    "cosmic": dict(kind="2-D segmentation", task={"crop": 32, "n_train": 160, "n_val": 40, "n_test": 80},
                   backbone="wrn", backbone_args=_W10, search_epochs=2, retrain_epochs=8, lr=0.05, batch_size=32,
                   dash=_DASH_FRAC),
    "myo_emg": dict(kind="1-D real cls", task={}, backbone="tcn",  # 228 train windows: 4 batches per epoch
                    backbone_args={"channels": 16, "levels": 3}, search_epochs=10, retrain_epochs=60,
                    lr=0.05, batch_size=64, dash=_DASH_FRAC),
    "fashion_mnist": dict(kind="2-D cls", task={"n_train": 2000, "n_val": 400, "n_test": 1000}, backbone="wrn",
                          backbone_args=_W10, search_epochs=2, retrain_epochs=6, lr=0.05, batch_size=64,
                          dash=_DASH_FRAC),
    "spherical_fashion_mnist": dict(kind="2-D spherical cls", task={"n_train": 1000, "n_val": 200, "n_test": 500,
                                                                    "bandwidth": 16},
                                    backbone="wrn", backbone_args=_W10, search_epochs=2, retrain_epochs=15,
                                    lr=0.05, batch_size=64, dash=_DASH_FRAC),
    "protein_distance": dict(kind="2-D dense regression (real)", task={"crop": 32, "crops_per_protein": 4},
                             backbone="wrn", backbone_args=_W10, search_epochs=2, retrain_epochs=6,
                             lr=0.05, batch_size=32, dash=_DASH_FRAC),
}
#: the ``recipe`` tag every run records; the report flags a task whose runs carry different tags
RECIPE_TAG = "suite-sgd"
SUITE_RECIPE = "SGD Nesterov (momentum 0.9) at the task's lr, wd 5e-4, constant lr, no label smoothing"


def recipe(task: str) -> dict[str, Any]:
    """The weights' keyword arguments for ``task``'s search and retrain alike: :data:`SUITE_RECIPE`."""
    return dict(optimizer="sgd", learning_rate=BUDGETS[task]["lr"], momentum=0.9, weight_decay=5e-4,
                schedule="constant", label_smoothing=0.0, warmup_fraction=0.0)


QUICK_ORDER = ["mnist1d", "dna_motifs", "darcy", "burgers", "digits", "cosmic",
               "myo_emg", "fashion_mnist", "spherical_fashion_mnist", "protein_distance"]


def _load() -> dict[str, Any]:
    if JSON_PATH.exists():
        return json.loads(JSON_PATH.read_text())
    return {"meta": {}, "runs": []}


def _save(db: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = JSON_PATH.with_suffix(".tmp")
    tmp.write_text(json.dumps(db, indent=1, default=str))
    tmp.replace(JSON_PATH)


def _record(rec: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Merge one finished run (and this process's meta) into suite.json under an exclusive file lock.

    Several suite processes (e.g. one per core, each ``--threads 1`` on its own tasks) may share the file;
    each merge re-reads it, so no process overwrites the others' runs. Returns the merged database.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    key = (rec["task"], rec["method"], rec["seed"])
    with open(JSON_PATH.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = _load()
        db["runs"] = [r for r in db["runs"] if (r["task"], r["method"], r["seed"]) != key] + [rec]
        commands = db["meta"].get("commands", [])
        if meta["command"] not in commands:
            commands.append(meta["command"])
        db["meta"].update({k: v for k, v in meta.items() if k != "command"}, commands=commands)
        _save(db)
    return db


def _code_version() -> str | None:
    """Last commit touching the package (recorded per run: runs of one table may come from several commits)."""
    out = subprocess.run(["git", "log", "-1", "--format=%h", "--", "nni_dash"], cwd=RESULTS.parents[1], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    import nni
    import torch
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import os
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "nni": nni.__version__,
            "python": platform.python_version(), "torch_threads": torch.get_num_threads()}


def run_one(task: str, method: str, seed: int) -> dict[str, Any]:
    import torch
    from nni_dash.pipeline.retrain import retrain
    from nni_dash.pipeline.search import search
    from nni_dash.tasks import create_task
    from nni_dash.tasks.metrics import higher_is_better, trivial_baseline_score
    b = BUDGETS[task]
    data = create_task(task, seed=seed, **b["task"])
    strategy, sargs = METHODS[method]
    sargs = dict(sargs)
    if strategy == "DASH":
        sargs.update(b.get("dash", {}))
    torch.manual_seed(seed)
    s = search(data, backbone=b["backbone"], backbone_args=b["backbone_args"], strategy=strategy,
               strategy_args=sargs, epochs=b["search_epochs"], batch_size=b["batch_size"], seed=seed, **recipe(task))
    r = retrain(data, s.sample, backbone=b["backbone"], backbone_args=b["backbone_args"],
                epochs=b["retrain_epochs"], batch_size=b["batch_size"], seed=seed, **recipe(task))
    return {"task": task, "method": method, "seed": seed, "metric": r.metric,
            "higher_is_better": higher_is_better(r.metric), "score": r.test_score, "val_score": r.val_score,
            "trivial": trivial_baseline_score(data), "search_s": s.seconds, "retrain_s": r.seconds,
            "params": r.num_parameters, "sample": s.sample, "data": data.summary(), "recipe": RECIPE_TAG,
            "date": datetime.date.today().isoformat()}


def warmup(task: str) -> None:
    """Untimed throwaway retrain (1 epoch, 3 batches) so the first timed run does not pay process start-up
    costs (lazy imports, Lightning/thread-pool initialisation), which would inflate the first ``none`` time."""
    from nni_dash.pipeline.retrain import retrain
    from nni_dash.pipeline.search import search
    from nni_dash.tasks import create_task
    b = BUDGETS[task]
    data = create_task(task, seed=0, **b["task"])
    s = search(data, backbone=b["backbone"], backbone_args=b["backbone_args"], strategy="none")
    retrain(data, s.sample, backbone=b["backbone"], backbone_args=b["backbone_args"], epochs=1,
            batch_size=b["batch_size"], limit_train_batches=3, **recipe(task))


# ----------------------------------------------------------------------------------------------- report
def _agg(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        if "error" not in r:
            groups.setdefault((r["task"], r["method"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        sc = [r["score"] for r in rs]
        out[key] = {"mean": statistics.fmean(sc), "std": statistics.stdev(sc) if len(sc) > 1 else 0.0, "n": len(sc),
                    "search_s": statistics.fmean(r["search_s"] for r in rs),
                    "retrain_s": statistics.fmean(r["retrain_s"] for r in rs),
                    "metric": rs[0]["metric"], "hib": rs[0]["higher_is_better"],
                    "trivial": statistics.fmean(r["trivial"] for r in rs)}
    return out


def _clearly_worse(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is worse than ``b`` by more than 2 standard errors of the difference of the seed means."""
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    gap = (b["mean"] - a["mean"]) if a["hib"] else (a["mean"] - b["mean"])
    return a["n"] > 1 and b["n"] > 1 and gap > 2 * se


def _noise_note(misses: list[str], agg: dict[tuple[str, str], dict[str, Any]], dm: str, ref: str) -> str:
    if not misses:
        return ""
    clear = [t for t in misses if _clearly_worse(agg[(t, dm)], agg[(t, ref)])]
    return (f"; worse by more than 2 standard errors of the seed-mean difference: "
            f"{', '.join(clear) if clear else 'none'}, the rest within seed noise")


def _better_eq(a: float, b: float, hib: bool) -> bool:
    return a >= b if hib else a <= b


def report(db: dict[str, Any]) -> None:
    agg = _agg(db["runs"])
    tasks = [t for t in QUICK_ORDER if any(k[0] == t for k in agg)]
    methods = [m for m in METHODS if any(k[1] == m for k in agg)]
    meta = db.get("meta", {})
    dates = sorted({r["date"] for r in db["runs"]})

    def task_recipe(task: str) -> str:
        tags = {r.get("recipe", RECIPE_TAG) for r in db["runs"] if r["task"] == task}
        return f"lr {BUDGETS[task]['lr']:g}" if tags == {RECIPE_TAG} else "mixed: " + ", ".join(sorted(map(str, tags)))

    L = ["# Task suite: plain backbone vs DASH vs DARTS-naive vs RandomOneShot", "",
         f"Date(s): {', '.join(dates)}. Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} logical cores; the suite processes "
         f"listed below ran concurrently, one single-thread process per core (wall times carry that load; compare "
         f"ratios within one table only). torch {meta.get('torch', '?')}, nni {meta.get('nni', '?')}, Python {meta.get('python', '?')}, "
         f"torch threads {meta.get('torch_threads', '?')}.", "",
         "Command(s), run concurrently: " + ", ".join(f"`{c}`" for c in meta.get("commands", [meta.get("command", "?")])),
         "",
         "Each (task, method, seed): `search` (skipped for `none`) then `retrain` from scratch with the SAME fixed "
         f"training recipe for all methods: {SUITE_RECIPE}; lr, epochs and batch below. "
         "**No HPO stage** (`tune`) is run in the suite. Score = test metric of the final retrained model (last "
         "epoch). Search s / retrain s are `SearchResult.seconds` / `RetrainResult.seconds`. "
         "`ratio` = (search + retrain) / retrain time of `none` (the plain backbone training time).", "",
         "## Budgets per task", "",
         "| task | kind | task options | backbone (args) | search ep | retrain ep | batch | DASH extra | lr |",
         "|---|---|---|---|---|---|---|---|---|"]
    for t in QUICK_ORDER:
        b = BUDGETS[t]
        L.append(f"| {t} | {b['kind']} | `{json.dumps(b['task'])}` | {b['backbone']} `{json.dumps(b['backbone_args'])}` "
                 f"| {b['search_epochs']} | {b['retrain_epochs']} | {b['batch_size']} | `{json.dumps(b.get('dash', {}))}` "
                 f"| {task_recipe(t)} |")
    L += ["", "Tasks without rows in the results table below were not run in this pass.", "", "## Results", "",
          "| task | metric | trivial | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for t in tasks:
        first = next(agg[(t, m)] for m in methods if (t, m) in agg)
        cells = []
        for m in methods:
            a = agg.get((t, m))
            cells.append("—" if a is None else f"{a['mean']:.4f} ± {a['std']:.4f} (n={a['n']})")
        arrow = "↑" if first["hib"] else "↓"
        L.append(f"| {t} | {first['metric']} {arrow} | {first['trivial']:.4f} | " + " | ".join(cells) + " |")
    L += ["", "### Wall time per stage (seconds, mean over seeds) and ratio to backbone training", "",
          "| task | " + " | ".join(f"{m} search / retrain / ratio" for m in methods) + " |",
          "|---|" + "---|" * len(methods)]
    for t in tasks:
        base = agg.get((t, "none"))
        cells = []
        for m in methods:
            a = agg.get((t, m))
            if a is None:
                cells.append("—")
                continue
            ratio = (a["search_s"] + a["retrain_s"]) / base["retrain_s"] if base else float("nan")
            cells.append(f"{a['search_s']:.1f} / {a['retrain_s']:.1f} / {ratio:.2f}×")
        L.append(f"| {t} | " + " | ".join(cells) + " |")
    # targets
    L += ["", "## Targets", ""]
    verdict_lines = []
    for dm in DASH_METHODS:
        if dm not in methods:
            continue
        t1 = [t for t in tasks if (t, dm) in agg and (t, "none") in agg]
        ok1 = [t for t in t1 if _better_eq(agg[(t, dm)]["mean"], agg[(t, "none")]["mean"], agg[(t, dm)]["hib"])]
        t2 = [t for t in tasks if (t, dm) in agg and (t, "DARTS-naive") in agg]
        ok2 = [t for t in t2 if _better_eq(agg[(t, dm)]["mean"], agg[(t, "DARTS-naive")]["mean"], agg[(t, dm)]["hib"])]
        ok3 = [t for t in t1 if (agg[(t, dm)]["search_s"] + agg[(t, dm)]["retrain_s"]) <= 2 * agg[(t, "none")]["retrain_s"]]
        v1 = "MET" if t1 and len(ok1) == len(t1) else "NOT MET"
        v2 = "MET" if t2 and len(ok2) >= 0.7 * len(t2) else "NOT MET"
        v3 = "MET" if t1 and len(ok3) >= 0.5 * len(t1) else "NOT MET"
        miss1, miss2 = sorted(set(t1) - set(ok1)), sorted(set(t2) - set(ok2))
        verdict_lines += [
            f"**{dm}**", "",
            f"1. DASH ≥ backbone on every task: {len(ok1)}/{len(t1)} → **{v1}**"
            + (f" (fails: {', '.join(miss1)}{_noise_note(miss1, agg, dm, 'none')})" if miss1 else ""),
            f"2. DASH ≥ DARTS-naive on ≥ 70 % of tasks: {len(ok2)}/{len(t2)} → **{v2}**"
            + (f" (loses: {', '.join(miss2)}{_noise_note(miss2, agg, dm, 'DARTS-naive')})" if miss2 else ""),
            f"3. search + retrain ≤ 2× backbone training on ≥ half the tasks: {len(ok3)}/{len(t1)} → **{v3}**"
            + (f" (within 2×: {', '.join(ok3)})" if ok3 else ""), ""]
    L += verdict_lines
    errors = [r for r in db["runs"] if "error" in r]
    if errors:
        L += ["## Failed runs", ""] + [f"- {r['task']} / {r['method']} / seed {r['seed']}: `{r['error']}`" for r in errors] + [""]
    discussion = (DISCUSSION_PATH.read_text().strip() if DISCUSSION_PATH.exists()
                  else db.get("meta", {}).get("discussion", "(see the commit message)"))
    L += ["## Discussion", "", f"(hand-written in `{DISCUSSION_PATH.name}`)", "", discussion, ""]
    if tasks:
        L += ["![scores relative to the plain backbone](suite.png)", ""]
    MD_PATH.write_text("\n".join(L))
    _plot(agg, tasks, methods, dates[-1])


def _plot(agg: dict, tasks: list[str], methods: list[str], date: str) -> None:
    if not tasks:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals, errs = [], []
        for t in tasks:
            a, base = agg.get((t, m)), agg.get((t, "none"))
            if a is None or base is None or base["mean"] == 0:
                vals.append(np.nan); errs.append(0); continue
            # normalised so that > 1 is better than the backbone for every metric direction
            rel = a["mean"] / base["mean"] if a["hib"] else base["mean"] / max(a["mean"], 1e-12)
            vals.append(rel); errs.append(a["std"] / abs(a["mean"]) * rel if a["mean"] else 0)
        ax.bar(np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * w, vals, w, yerr=errs, label=m, capsize=2)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=20)
    ax.set_ylabel("score relative to plain backbone\n(>1 = better; lower-is-better metrics inverted)")
    ax.set_title(f"nni_dash task suite ({date}, CPU quick budgets)")
    ax.legend(fontsize=7, ncol=len(methods))
    fig.tight_layout()
    fig.savefig(PNG_PATH, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="single seed (0)")
    p.add_argument("--tasks", nargs="+", default=QUICK_ORDER, choices=list(BUDGETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up retrain")
    p.add_argument("--fresh", action="store_true", help="discard suite.json first")
    p.add_argument("--rerun", action="store_true", help="rerun runs already in suite.json")
    args = p.parse_args(argv)
    if args.fresh and JSON_PATH.exists():
        JSON_PATH.unlink()
    db = _load()
    if args.report_only:
        report(db)
        return
    import torch
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("nni").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    seeds = [0] if args.quick else args.seeds
    meta = {**machine_info(), "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/suite.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "code": _code_version()}
    if not args.no_warmup:
        warmup(args.tasks[0])
    for task in args.tasks:
        for seed in seeds:
            for method in args.methods:
                done = [r for r in db["runs"] if (r["task"], r["method"], r["seed"]) == (task, method, seed)]
                if done and not args.rerun:
                    continue
                t0 = time.perf_counter()
                try:
                    rec = run_one(task, method, seed)
                except Exception as err:  # noqa: BLE001 -- record and continue with the next run
                    traceback.print_exc()
                    rec = {"task": task, "method": method, "seed": seed, "error": f"{type(err).__name__}: {err}"}
                rec["wall_s"] = time.perf_counter() - t0
                rec["code"] = meta.get("code")
                db = _record(rec, meta)
                report(db)
                msg = rec.get("error") or (f"score={rec['score']:.4f} search={rec['search_s']:.1f}s "
                                           f"retrain={rec['retrain_s']:.1f}s")
                print(f"[suite] {task:>12} {method:>13} seed={seed}: {msg} (wall {rec['wall_s']:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
