"""How the defaults were chosen: the training recipe and the search settings, on development sets only.

The development sets are **not** the datasets of ``benchmarks/realdata.py``'s targets (except
JapaneseVowels, marked there): ``mnist1d`` (300 train), ``mnist1d`` with 6 per class, JapaneseVowels (270)
and JapaneseVowels with 6 per class. Each cell trains through the package's stage functions
(``nni_dash.pipeline.search`` / ``retrain``) with the task's val split for the search and a final
retrain on train+val, and reports the test accuracy (mean over seeds).

* Part A, the retrain recipe on the plain backbone (resnet1d, hand-designed kernels): optimiser and
  learning rate, schedule, label smoothing, width, batch size, steps, and training on train+val
  (``refit``) against train only.
* Part B, the search: DASH's alpha update (Adam against the reference's normalised SGD), the
  receptive-field penalty, bilevel against joint, Gumbel noise; then the retrain of the exported
  architecture with the default recipe, against the plain backbone.

Writes ``benchmarks/results/recipe.md``.

    python -m benchmarks.recipe [--seeds 0 1] [--part A B]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import statistics
import sys
from typing import Any

import numpy as np
import torch

import nni_dash  # noqa: F401
from benchmarks._runner import RESULTS, machine, package_commit
from nni_dash.backbones import create_backbone
from nni_dash.budget import StepBudget, auto_batch_size
from nni_dash.pipeline import retrain, search
from nni_dash.strategy.decision import decisions
from nni_dash.tasks import create_task
from nni_dash.tasks.base import TaskData
from nni_dash.tasks.splits import input_stats, refit_view

MD_PATH = RESULTS / "recipe.md"
RECIPE = dict(optimizer="adamw", learning_rate=1e-3, weight_decay=1e-2, label_smoothing=0.1, schedule="cosine",
              warmup_fraction=0.05)
STEPS = 2000
PART_A: dict[str, dict[str, Any]] = {
    "default (AdamW 1e-3, cosine, ls 0.1, 32 ch, auto batch, 2000 steps, refit)": {},
    "reference optimiser: SGD-Nesterov 0.1, wd 5e-4": dict(optimizer="sgd", learning_rate=0.1, weight_decay=5e-4),
    "SGD-Nesterov 0.01, wd 5e-4": dict(optimizer="sgd", learning_rate=0.01, weight_decay=5e-4),
    "AdamW 3e-3": dict(learning_rate=3e-3),
    "constant learning rate": dict(schedule="constant"),
    "no label smoothing": dict(label_smoothing=0.0),
    "16 channels": dict(base_channels=16),
    "64 channels": dict(base_channels=64),
    "reference width rule (4 channels below 10 classes)": dict(base_channels=4),
    "batch 64": dict(batch_size=64),
    "500 steps": dict(steps=500),
    "5000 steps": dict(steps=5000),
    "train split only, last step": dict(refit=False),
    "train split only, best val epoch": dict(refit=False, select_best=True),
}
PART_B: dict[str, dict[str, Any] | None] = {
    "plain backbone (no search)": None,
    "DASH default (Adam 0.01 on alpha, rf_penalty 1e-4, bilevel, Gumbel)": {},
    "reference alpha update (normalised SGD 0.05), rf_penalty 1e-4": dict(arc_optimizer="sgd", arc_learning_rate=0.05),
    "rf_penalty 1e-5 (the reference)": dict(rf_penalty=1e-5),
    "rf_penalty 3e-5": dict(rf_penalty=3e-5),
    "joint mode (the reference)": dict(mode="joint"),
    "plain softmax (no Gumbel noise)": dict(temperature=None),
}
SEARCH_STEPS = 1000


def _few_per_class(data: TaskData, per_class: int, seed: int) -> TaskData:
    """``per_class`` samples of each class from train+val (a sixth of them as val); test unchanged."""
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    rng = np.random.default_rng(100 + seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    val = keep[np.arange(len(keep)) % per_class == 0]
    train = keep[np.arange(len(keep)) % per_class != 0]
    return dataclasses.replace(data, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])


def dev_data(name: str, seed: int) -> TaskData:
    if name.startswith("mnist1d"):
        data = create_task("mnist1d", seed=seed, n_train=300, n_val=60, n_test=1000)
    else:
        data = create_task("japanese_vowels", seed=seed)
    if name.endswith("-6"):
        data = _few_per_class(data, 6, seed)
    mean, std = input_stats(data.x_train)
    return dataclasses.replace(data, input_mean=mean, input_std=std)


DEV = ("mnist1d", "mnist1d-6", "japanese_vowels", "japanese_vowels-6")


def _retrain(data: TaskData, sample: dict[str, str], seed: int, **change: Any) -> float:
    hp = {**RECIPE, **{k: v for k, v in change.items() if k in RECIPE}}
    refit = change.get("refit", True)
    fit = refit_view(data) if refit else data
    batch = change.get("batch_size") or auto_batch_size(len(fit.x_train))
    args = {"base_channels": change.get("base_channels", 32)}
    result = retrain(fit, sample, backbone="resnet1d", backbone_args=args, steps=StepBudget(change.get("steps", STEPS)),
                     batch_size=batch, validate=not refit, select_best=change.get("select_best", False),
                     seed=seed, **hp)
    return result.test_score


def part_a(seeds: list[int]) -> list[str]:
    rows = ["| recipe | " + " | ".join(DEV) + " |", "|---|" + "---:|" * len(DEV)]
    for label, change in PART_A.items():
        cells = []
        for name in DEV:
            scores = []
            for seed in seeds:
                data = dev_data(name, seed)
                sample = create_backbone("resnet1d", in_channels=data.in_channels,
                                         num_outputs=data.num_outputs).default_sample()
                scores.append(_retrain(data, sample, seed, **change))
            cells.append(f"{statistics.mean(scores):.3f}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def part_b(seeds: list[int]) -> list[str]:
    rows = ["| search | " + " | ".join(DEV) + " | decided layers (of 9) | mean top p / uniform |",
            "|---|" + "---:|" * (len(DEV) + 2)]
    for label, strategy_args in PART_B.items():
        cells, decided, lifts = [], [], []
        for name in DEV:
            scores = []
            for seed in seeds:
                data = dev_data(name, seed)
                if strategy_args is None:
                    sample = create_backbone("resnet1d", in_channels=data.in_channels,
                                             num_outputs=data.num_outputs).default_sample()
                else:
                    found = search(data, backbone="resnet1d", backbone_args={"base_channels": 16},
                                   steps=StepBudget(SEARCH_STEPS), batch_size=auto_batch_size(len(data.x_train)),
                                   strategy_args={**strategy_args, "seed": seed}, seed=seed,
                                   **{k: v for k, v in RECIPE.items() if k != "learning_rate"})
                    sample = found.sample
                    table = decisions(found.probs)
                    decided.append(sum(d["decided"] for d in table.values()))
                    lifts.append(statistics.mean(d["lift"] for d in table.values()))
                scores.append(_retrain(data, sample, seed))
            cells.append(f"{statistics.mean(scores):.3f}")
        extra = f"{statistics.mean(decided):.1f} | {statistics.mean(lifts):.1f}" if decided else "— | —"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {extra} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--part", nargs="+", default=["A", "B"], choices=["A", "B"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    import logging
    import warnings
    logging.getLogger("nni").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    lines = ["# Choosing the defaults on development sets", "",
             f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}. Package commit: {package_commit()}. "
             f"Command: `python -m benchmarks.recipe {' '.join(sys.argv[1:])}`. Test accuracy, mean over seeds "
             f"{args.seeds}.", "", __doc__.split("\n\n", 1)[1].split("\n\n    python")[0], ""]
    if "A" in args.part:
        lines += ["## A. Retrain recipe (plain backbone)", "", *part_a(args.seeds), ""]
    if "B" in args.part:
        lines += [f"## B. Search settings ({SEARCH_STEPS} search steps at 16 channels, then the default retrain at 32)",
                  "", *part_b(args.seeds), ""]
    discussion = RESULTS / "recipe_discussion.md"
    if discussion.exists():
        lines += ["## Discussion", "", discussion.read_text().strip(), ""]
    MD_PATH.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
