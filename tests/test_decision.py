"""What a search exports per layer: the argmax where alpha decided, the backbone's kernel where it stayed within noise."""
import pytest

from nni_dash.strategy.decision import layer_decision, settle

UNIFORM = {"k3d1": 0.25, "k5d1": 0.25, "k7d1": 0.26, "k9d1": 0.24}   # argmax k7d1, 1.04x uniform: noise
DECIDED = {"k3d1": 0.05, "k5d1": 0.05, "k7d1": 0.10, "k9d1": 0.80}   # k9d1 at 3.2x uniform, far ahead


def test_decided_layers_keep_their_argmax_and_undecided_ones_take_the_backbones_kernel():
    probs = {"a": DECIDED, "b": UNIFORM, "c": UNIFORM}
    assert [layer_decision(p)["decided"] for p in probs.values()] == [True, False, False]
    argmax = {"a": "k9d1", "b": "k7d1", "c": "k7d1", "head": "k1d1"}
    backbone = {"a": "k3d1", "b": "k3d1", "c": "k7d1", "head": "k1d1"}
    assert settle(argmax, probs, backbone) == {"a": "k9d1", "b": "k3d1", "c": "k7d1", "head": "k1d1"}
    assert settle(argmax, probs, backbone, undecided_as="argmax") == argmax  # the reference: every argmax


def test_a_close_runner_up_is_undecided_even_far_above_uniform():
    close = {"k3d1": 0.02, "k5d1": 0.02, "k7d1": 0.46, "k9d1": 0.50}   # 2x uniform, but within 10 % of the runner-up
    assert layer_decision(close)["lift"] == pytest.approx(2.0) and not layer_decision(close)["decided"]
    assert settle({"a": "k9d1"}, {"a": close}, {"a": "k3d1"}) == {"a": "k3d1"}


def test_an_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="undecided_as='random'; allowed: backbone, argmax"):
        settle({}, {}, {}, undecided_as="random")
