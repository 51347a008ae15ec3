"""Known-answer searches at the default budget: does alpha leave the noise, and on the right candidate?

Task ``lag`` (``nni_dash.tasks.synthetic``): two spikes ``lag`` apart, label = do their signs agree.
Space: two DashConv1d layers over ``k in {3, 5} x d in {1, 7}`` (uniform: p = 0.25). With ``lag=14``
some layer needs ``d=7`` (the undilated spans reach 9 at most); with ``lag=1`` none does, and the
receptive-field penalty should keep both layers at ``d=1``.

Each search runs the auto step count of the task's size (``nni_dash.budget``: 512 samples, batch 64 ->
1500 steps) with the pipeline's weight recipe (AdamW, cosine, label smoothing 0.1), for:

* ``DASH`` (the defaults: Adam on alpha, lr 0.01, bilevel, Gumbel temperature 1, rf_penalty 1e-5);
* ``DASH-reference-update``: the reference code's normalised SGD step on alpha (lr 0.05, grad_scale 100);
* ``DARTS``: NNI's DARTS (Adam 3e-4 on alpha, plain softmax) on the same FFT op.

Writes ``benchmarks/results/search_decisiveness.md``.

    python -m benchmarks.search_decisiveness [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time

import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import ModelSpace

import nni_dash  # noqa: F401
from benchmarks._runner import RESULTS, machine, package_commit
from nni_dash.budget import StepBudget, StepLimit, auto_batch_size, auto_steps, steps_per_epoch
from nni_dash.evaluator import task_evaluator
from nni_dash.nn import DashConv1d, parse_candidate
from nni_dash.pipeline import make_strategy
from nni_dash.strategy.decision import layer_decision
from nni_dash.tasks import create_task

MD_PATH = RESULTS / "search_decisiveness.md"
STRATEGIES = {
    "DASH": ("DASH", {}),
    "DASH-reference-update": ("DASH", {"arc_optimizer": "sgd", "arc_learning_rate": 0.05, "grad_scale": 100.0}),
    "DARTS": ("DARTS", {}),
}


class TwoLayers(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        dash = dict(kernel_sizes=(3, 5), dilations=(1, 7))
        self.c1 = DashConv1d(1, 16, label="c1", **dash)
        self.c2 = DashConv1d(16, 16, label="c2", **dash)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).amax(-1))


def search(lag: int, method: str, seed: int) -> dict:
    data = create_task("lag", lag=lag, seed=seed)
    n = len(data.x_train)
    batch = auto_batch_size(n)
    steps = StepBudget(auto_steps("search", n, batch))
    pl.seed_everything(seed, verbose=False)
    evaluator = task_evaluator(data, batch_size=batch, max_epochs=steps.wanted // steps_per_epoch(n, batch) + 1,
                               callbacks=[StepLimit(steps)], schedule="cosine", step_budget=steps,
                               label_smoothing=0.1, warmup_fraction=0.05)
    name, kwargs = STRATEGIES[method]
    strategy = make_strategy(name, **({"seed": seed, **kwargs} if name == "DASH" else kwargs))
    start = time.perf_counter()
    NasExperiment(TwoLayers(), evaluator, strategy).run()
    seconds = time.perf_counter() - start
    probs = strategy.oneshot_module.export_probs()
    layers = {label: layer_decision(p) for label, p in probs.items()}
    dilated = [label for label, d in layers.items() if parse_candidate(d["choice"])[1] == 7]
    right = bool(dilated) if lag > 9 else not dilated
    return {"layers": layers, "right": right, "steps": steps.limit, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for lag in (14, 1):
        for method in STRATEGIES:
            results = [search(lag, method, seed) for seed in args.seeds]
            tops = [max(d["top"] for d in r["layers"].values()) for r in results]
            decided = [sum(d["decided"] for d in r["layers"].values()) for r in results]
            choices = ["/".join(d["choice"] for d in r["layers"].values()) for r in results]
            rows.append(f"| lag {lag} | {method} | {sum(r['right'] for r in results)}/{len(results)} | "
                        f"{statistics.mean(tops):.2f} ({min(tops):.2f}-{max(tops):.2f}) | "
                        f"{statistics.mean(decided):.1f}/2 | {', '.join(choices)} | {results[0]['steps']} | "
                        f"{statistics.mean(r['seconds'] for r in results):.0f} |")
            print(rows[-1], flush=True)
    lines = ["# Search decisiveness on known-answer tasks", "",
             f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}. Package commit: {package_commit()}. "
             f"Command: `python -m benchmarks.search_decisiveness {' '.join(sys.argv[1:])}`.", "",
             __doc__.split("\n\n", 1)[1].split("\n\n    python")[0], "",
             "A layer is *decided* when its top probability is at least 2x uniform (0.5 here) and 10 % above the "
             "runner-up (`nni_dash.strategy.decision`). *Right*: lag 14 with some layer at d=7, lag 1 with none.", "",
             "| task | method | right | top probability, mean (range) | decided layers | choices c1/c2 per seed | "
             "steps | seconds |", "|---|---|---:|---:|---:|---|---:|---:|", *rows, ""]
    MD_PATH.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
