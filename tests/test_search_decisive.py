"""Known-answer searches are decisive at the default budget (DASH() defaults, auto step count)."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
from nni.nas.experiment import NasExperiment

from nni_dash.budget import StepBudget, StepLimit, auto_batch_size, auto_steps
from nni_dash.evaluator import task_evaluator
from nni_dash.nn import parse_candidate
from nni_dash.strategy import DASH
from nni_dash.strategy.decision import layer_decision
from test_strategy import LagNet, lag_task


def _default_search(data, seed):
    pl.seed_everything(seed, verbose=False)
    n = len(data.x_train)
    batch = auto_batch_size(n)
    steps = StepBudget(auto_steps("search", n, batch))  # what `budget: auto` gives this data
    evaluator = task_evaluator(data, batch_size=batch, max_epochs=steps.wanted // (n // batch) + 1,
                               callbacks=[StepLimit(steps)], schedule="cosine", step_budget=steps,
                               label_smoothing=0.1, warmup_fraction=0.05)
    strategy = DASH(seed=seed)
    NasExperiment(LagNet(), evaluator, strategy).run()
    return strategy, steps


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_long_lag_is_found_decisively_at_the_default_budget(seed):
    strategy, steps = _default_search(lag_task(14, seed=seed), seed)
    probs = strategy.probabilities()
    assert steps.limit == auto_steps("search", 512, auto_batch_size(512))
    # a lag of 14 needs dilation 7 in some layer (k<=5, d=1 everywhere spans at most 9)
    wide = {label: layer_decision(p) for label, p in probs.items()
            if parse_candidate(layer_decision(p)["choice"])[1] == 7}
    assert wide, probs
    best = max(wide.values(), key=lambda d: d["top"])
    assert best["decided"] and best["lift"] >= 2.0, probs  # well above uniform (1/4), on a d=7 candidate
