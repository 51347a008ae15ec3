"""How decisive a search's architecture probabilities are (pure Python).

For each layer with probabilities ``p`` over ``n`` candidates (softmax of alpha):

* ``top``: the largest probability (the exported choice), ``runner_up``: the second largest;
* ``margin = top - runner_up``; ``lift = top * n`` (1 for a uniform alpha);
* ``decided``: ``lift >= MIN_LIFT`` and ``margin >= MIN_RELATIVE_MARGIN * top``. A layer that is not
  decided has an argmax within noise: its choice says little about the data, and a longer search
  (``--budget``) or a larger ``arc_learning_rate`` would be needed to trust it.

:func:`settle` is what the pipeline exports (``search.undecided``): ``"backbone"`` (the default) gives
each undecided layer the backbone's hand-designed kernel, since a choice within noise is a random
draw from the space; ``"argmax"`` exports every argmax, as the DASH reference and NNI do.
"""
from __future__ import annotations

from typing import Any

__all__ = ["MIN_LIFT", "MIN_RELATIVE_MARGIN", "UNDECIDED", "layer_decision", "decisions", "undecided", "settle",
           "decision_metrics"]

MIN_LIFT = 2.0
MIN_RELATIVE_MARGIN = 0.1
#: what an undecided layer exports (``search.undecided``)
UNDECIDED = ("backbone", "argmax")


def layer_decision(probs: dict[str, float]) -> dict[str, Any]:
    """``{choice, top, runner_up, margin, lift, decided}`` of one layer's ``{candidate: p}``."""
    ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)
    choice, top = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    lift = top * len(ranked)
    margin = top - runner_up
    decided = len(ranked) == 1 or (lift >= MIN_LIFT and margin >= MIN_RELATIVE_MARGIN * top)
    return {"choice": choice, "top": float(top), "runner_up": float(runner_up), "margin": float(margin),
            "lift": float(lift), "decided": bool(decided)}


def decisions(probs: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """:func:`layer_decision` of every layer."""
    return {label: layer_decision(p) for label, p in probs.items() if p}


def undecided(probs: dict[str, dict[str, float]]) -> list[str]:
    """Labels whose argmax is within noise."""
    return [label for label, d in decisions(probs).items() if not d["decided"]]


def settle(sample: dict[str, str], probs: dict[str, dict[str, float]], default: dict[str, str], *,
           undecided_as: str = "backbone") -> dict[str, str]:
    """``sample`` (the argmaxes) with every undecided layer set to ``default``'s choice (``undecided_as="backbone"``).

    ``default``: the backbone's hand-designed sample over the same labels; ``undecided_as="argmax"``
    returns ``sample`` unchanged. Labels without probabilities keep their choice.
    """
    if undecided_as not in UNDECIDED:
        raise ValueError(f"undecided_as={undecided_as!r}; allowed: {', '.join(UNDECIDED)}")
    if undecided_as == "argmax":
        return dict(sample)
    noisy = set(undecided(probs))
    return {label: default[label] if label in noisy and label in default else choice for label, choice in sample.items()}


def decision_metrics(probs: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat metrics for NNI and TensorBoard: ``top_<label>``, ``margin_<label>``, ``decided_layers``."""
    out: dict[str, float] = {}
    table = decisions(probs)
    for label, d in table.items():
        out[f"top_{label}"] = d["top"]
        out[f"margin_{label}"] = d["margin"]
    if table:
        out["decided_layers"] = float(sum(d["decided"] for d in table.values()))
    return out
