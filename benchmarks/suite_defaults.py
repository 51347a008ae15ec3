"""The task suite at the default config: ``nni-dash run`` on each suite task from a config that names only the data.

``benchmarks/suite.py`` compares search strategies under one fixed, short SGD recipe without tuning.
This runs the same tasks, with the same data options (sizes only: ``suite.BUDGETS[task]["task"]``),
through the CLI as a new user would (``benchmarks/_runner.py``, as ``benchmarks/realdata.py`` does):
``budget: auto``, the backbone that fits the data, tuning, the retrain on train+val. Methods:

* ``DASH``: the default pipeline;
* ``backbone``: the plain backbone at the same budget (``search.strategy=none``);
* ``DASH-rf1e-4``: the same with ``rf_penalty`` 1e-4, the default before 6221cfb (runs named ``DASH``
  before that commit were relabelled);
* ``DARTS``: NNI's DARTS over the same space (``search.strategy=DARTS``), exporting every argmax as NNI does
  (``search.undecided=argmax``; the DARTS runs before that key existed exported the argmax too).

Targets (issue 11), on the seed means in each task's metric direction: DASH at least as good as the
backbone on every task, and as DARTS on at least 70 % of the tasks. Runs go to
``benchmarks/results/suite_defaults.json`` as they finish; ``suite_defaults.md`` is regenerated from it.

    python -m benchmarks.suite_defaults --tasks burgers darcy --seeds 0
    python -m benchmarks.suite_defaults --report-only
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from benchmarks._runner import RESULTS, Store, report_tail, run_cli, run_grid
from benchmarks.realdata import _mean_std, _machines, _runs
from benchmarks.suite import BUDGETS, QUICK_ORDER

JSON_PATH, MD_PATH = RESULTS / "suite_defaults.json", RESULTS / "suite_defaults.md"
DISCUSSION_PATH = RESULTS / "suite_defaults_discussion.md"  # hand-written, copied into the report
METHODS = {"DASH": [], "DASH-rf1e-4": ["search.strategy_args.rf_penalty=1e-4"], "backbone": ["search.strategy=none"],
           "DARTS": ["search.strategy=DARTS", "search.undecided=argmax"]}


def _higher(metric: str) -> bool:
    from nni_dash.tasks.metrics import higher_is_better
    return higher_is_better(metric)


def _means(db: dict[str, Any], task: str) -> tuple[dict[str, float | None], str | None]:
    metric = next((r["metric"] for m in METHODS for r in _runs(db, task, m)), None)
    return {m: (statistics.mean(r["score"] for r in runs) if (runs := _runs(db, task, m)) else None)
            for m in METHODS}, metric


def targets(db: dict[str, Any], dash: str = "DASH") -> list[str]:
    """``dash`` >= backbone on every task, >= DARTS on >= 70 % (seed means, the metric's direction)."""
    lines = []
    for peer, need in (("backbone", 1.0), ("DARTS", 0.7)):
        met, missed = [], []
        for task in QUICK_ORDER:
            means, metric = _means(db, task)
            if means[dash] is None or means[peer] is None:
                continue
            sign = 1 if _higher(metric) else -1
            (met if sign * (means[dash] - means[peer]) >= 0 else missed).append(task)
        rows = len(met) + len(missed)
        if rows:
            verdict = "met" if len(met) >= need * rows else "missed"
            lines.append(f"- {dash} at least as good as {peer}: {len(met)}/{rows} tasks (target {need:.0%}: {verdict})"
                         + (f"; worse on {', '.join(missed)}" if missed else ""))
    return lines


def report(db: dict[str, Any]) -> None:
    meta = db.get("meta", {})
    lines = ["# Task suite, default config", "",
             f"Date: {meta.get('date', '?')}. Software: {meta.get('software', '?')}. Machines: {_machines(db)}.", "",
             "Command(s): " + ", ".join(f"`{c}`" for c in meta.get("commands", [])), "",
             "Every row is `nni-dash run` on a config that names only the data (`task: {name: <task>, options: "
             "<sizes>}`), with the row's one override, at `budget: auto`; scores are the task's test metric, mean ± "
             "std over seeds. The fixed-recipe strategy comparison is `suite.md`.", "",
             "| task | metric | " + " | ".join(METHODS) + " | " + " | ".join(f"{m} wall (min)" for m in METHODS)
             + " | DASH kept the searched kernels |",
             "|---|---|" + "---:|" * (2 * len(METHODS) + 1)]
    for task in QUICK_ORDER:
        if not any(_runs(db, task, m) for m in METHODS):
            continue
        _, metric = _means(db, task)
        arrow = "↑" if _higher(metric) else "↓"
        cells = [_mean_std([r["score"] for r in _runs(db, task, m)]) for m in METHODS]
        walls = [f"{statistics.mean(r['wall_seconds'] for r in runs) / 60:.1f}" if (runs := _runs(db, task, m)) else "—"
                 for m in METHODS]
        kept = [r.get("kept") for r in _runs(db, task, "DASH")]
        lines.append(f"| {task} ({BUDGETS[task]['kind']}) | {metric} {arrow} | " + " | ".join(cells + walls)
                     + (f" | {sum(k == 'searched' for k in kept)}/{len(kept)} |" if kept else " | — |"))
    lines += ["", "## Targets", "", *targets(db), *targets(db, "DASH-rf1e-4"), ""]
    lines += report_tail(db, DISCUSSION_PATH)
    MD_PATH.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=QUICK_ORDER, choices=QUICK_ORDER)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rerun", action="store_true", help="run again what the store already has")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    store = Store(JSON_PATH, ("task", "method", "seed"))
    if not args.report_only:
        def run(task: str, method: str, seed: int) -> dict[str, Any]:
            return {**run_cli(task, BUDGETS[task]["task"], seed, overrides=METHODS[method]), "method": method}

        cells = [(t, m, seed) for seed in args.seeds for t in args.tasks for m in args.methods]
        run_grid(store, cells, run, report, rerun=args.rerun,
                 command="python -m benchmarks.suite_defaults " + " ".join(sys.argv[1:]))
    report(store.load())


if __name__ == "__main__":
    main()
