"""The DASH pipeline: search -> discretise -> tune -> retrain -> test. Each stage is usable alone."""
from nni_dash.pipeline.prepare import prepare
from nni_dash.pipeline.retrain import RetrainResult, evaluate, retrain
from nni_dash.pipeline.search import STRATEGIES, SearchResult, head_for, make_strategy, search
from nni_dash.pipeline.tune import DEFAULT_GRID, REFERENCE_GRID, TUNERS, TuneResult, make_tuner, tune

__all__ = ["DEFAULT_GRID", "REFERENCE_GRID", "STRATEGIES", "TUNERS", "RetrainResult", "SearchResult", "TuneResult",
           "evaluate", "head_for", "make_strategy", "make_tuner", "prepare", "retrain", "search", "tune"]
