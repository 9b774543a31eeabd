"""The gate promotes only a model that is better on the same window, and says why."""

import math

import pytest

from orchestration.lib.training.metrics import Performance
from orchestration.lib.training.promotion import GatePolicy, decide

POLICY = GatePolicy(ap_margin=0.01, cp_tolerance=0.02, ap_floor=0.3)


def perf(ap: float, cp: float) -> Performance:
    return Performance(auc_roc=0.9, average_precision=ap, card_precision_top_k=cp)


@pytest.mark.parametrize(
    ("challenger", "champion", "checked", "promote", "why"),
    [
        (perf(0.5, 0.3), None, True, True, "first champion"),
        (perf(0.2, 0.3), None, True, False, "below the floor"),
        (perf(0.7, 0.3), perf(0.6, 0.3), True, True, "AP gain +0.1000"),
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
    assert recorded == challenger.average_precision or math.isnan(challenger.average_precision)
