"""The gate promotes only a model that is better on the same window, and says why."""

import math

import pytest

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.training.promotion import GatePolicy, decide
from orchestration.settings import USECASES_DIR

POLICY = GatePolicy(
    primary="average_precision", margin=0.01, floor=0.3,
    guards=(("card_precision_top_k", 0.02),),
)


def perf(ap: float, cp: float) -> dict[str, float]:
    return {"auc_roc": 0.9, "average_precision": ap, "card_precision_top_k": cp}


@pytest.mark.parametrize(
    ("challenger", "champion", "checked", "promote", "why"),
    [
        (perf(0.5, 0.3), None, True, True, "first champion"),
        (perf(0.2, 0.3), None, True, False, "misses the floor"),
        (perf(0.7, 0.3), perf(0.6, 0.3), True, True, "average_precision gain +0.1000"),
        (perf(0.605, 0.3), perf(0.6, 0.3), True, False, "below the margin"),
        (perf(0.7, 0.25), perf(0.6, 0.3), True, False, "exceeds the tolerance"),
        (perf(0.7, 0.29), perf(0.6, 0.3), True, True, "loss 0.0100"),
        (perf(0.9, 0.5), perf(0.6, 0.3), False, False, "quality check"),
        (perf(math.nan, 0.0), None, True, False, "single class"),
    ],
)
def test_decisions(challenger, champion, checked, promote, why):
    decision = decide(challenger, champion, POLICY, inputs_checked=checked)
    assert decision.promote is promote
    assert why in decision.reason
    recorded = decision.numbers["challenger_average_precision"]
    assert recorded == challenger["average_precision"] or math.isnan(
        challenger["average_precision"]
    )


LOWER = GatePolicy(primary="mae", margin=0.5, floor=10.0, guards=(("late_share", 0.01),),
                   lower_is_better=frozenset({"mae", "late_share"}))


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        ({"mae": 9.0, "late_share": 0.1}, None, True, "first champion"),
        ({"mae": 11.0, "late_share": 0.1}, None, False, "misses the floor"),
        ({"mae": 7.0, "late_share": 0.1}, {"mae": 8.0, "late_share": 0.1}, True, "gain +1.0000"),
        ({"mae": 7.8, "late_share": 0.1}, {"mae": 8.0, "late_share": 0.1}, False, "margin"),
        ({"mae": 9.0, "late_share": 0.1}, {"mae": 8.0, "late_share": 0.1}, False, "gain -1.0000"),
        ({"mae": 7.0, "late_share": 0.2}, {"mae": 8.0, "late_share": 0.1}, False, "late_share"),
    ],
)
def test_a_lower_is_better_metric_is_gated_the_other_way(challenger, champion, promote, why):
    decision = decide(challenger, champion, LOWER, inputs_checked=True)
    assert decision.promote is promote
    assert why in decision.reason


def test_the_fraud_gate_is_the_declared_one(monkeypatch):
    monkeypatch.setenv("BLUEPRINT_FRAUD_GATE_PRIMARY_MARGIN", "0.02")
    policy = GatePolicy.declared(load_usecase("fraud", USECASES_DIR))
    assert (policy.primary, policy.margin, policy.floor) == ("average_precision", 0.02, 0.3)
    assert policy.guards == (("card_precision_top_k", 0.01),)
    assert policy.lower_is_better == frozenset()
