"""The retraining sensor's decision: which breaches count, and when retraining may start."""

from __future__ import annotations

from datetime import date, timedelta

from orchestration.lib.monitoring.retraining import (
    Thresholds,
    decide,
    find_breaches,
    newest_training_window,
)
from orchestration.lib.training.validation import Protocol

THRESHOLDS = Thresholds(drift_share=0.5, ap_drop=0.1, prediction_drift=True, min_post_drift_days=3)
D = date(2018, 6, 1)


def _day(n: int) -> date:
    return D + timedelta(days=n)


def test_only_days_after_the_champions_data_and_over_a_threshold_breach():
    summaries = [
        (_day(0), "data_drift", {"drifted_share": 0.9}),  # the champion's own data: ignored
        (_day(1), "data_drift", {"drifted_share": 0.2}),
        (_day(2), "data_drift", {"drifted_share": 0.6}),
        (
            _day(3),
            "prediction_drift",
            {"score_drift": True, "score_drift_statistic": 0.3, "score_drift_threshold": 0.1},
        ),
        (_day(3), "prediction_drift", {"score_drift": False}),
        (_day(4), "performance", {"average_precision": 0.55, "model_version": "v1"}),
        (_day(5), "performance", {"average_precision": 0.75, "model_version": "v1"}),
        (_day(6), "performance", {"average_precision": 0.10, "model_version": "v0"}),
    ]
    breaches = find_breaches(
        summaries,
        after=_day(0),
        champion_version="v1",
        champion_test_ap=0.8,
        thresholds=THRESHOLDS,
    )
    assert [(b.day, b.threshold) for b in breaches] == [
        (_day(2), "drifted_feature_share"),
        (_day(3), "prediction_drift"),
        (_day(4), "realized_ap_drop"),
    ]
    assert breaches[2].observed == 0.8 - 0.55


def test_decay_is_measured_on_the_declared_metric_in_its_direction():
    summaries = [
        (_day(1), "performance", {"average_precision": 0.1, "auc_roc": 0.85,
                                  "model_version": "v1"}),
        (_day(2), "performance", {"average_precision": 0.9, "auc_roc": 0.70,
                                  "model_version": "v1"}),
        (_day(3), "performance", {"rmse": 14.0, "model_version": "v1"}),
    ]
    auc = Thresholds(0.5, 0.1, True, 3, decay_metric="auc_roc")
    breaches = find_breaches(summaries, after=D, champion_version="v1", champion_test_ap=0.9,
                             thresholds=auc)
    assert [(b.day, round(b.observed, 6)) for b in breaches] == [(_day(2), 0.2)]
    lower = Thresholds(0.5, 2.0, True, 3, decay_metric="rmse", decay_higher_is_better=False)
    breaches = find_breaches(summaries, after=D, champion_version="v1", champion_test_ap=11.0,
                             thresholds=lower)
    assert [(b.day, b.observed) for b in breaches] == [(_day(3), 3.0)]  # rmse rose by 3


def test_prediction_drift_alone_can_be_switched_off():
    off = Thresholds(0.5, 0.1, prediction_drift=False, min_post_drift_days=3)
    summaries = [(_day(3), "prediction_drift", {"score_drift": True})]
    assert (
        find_breaches(
            summaries, after=D, champion_version="v1", champion_test_ap=0.8, thresholds=off
        )
        == []
    )


def test_retraining_waits_until_the_newest_mature_window_holds_enough_post_drift_days():
    protocol = Protocol(train_days=5, delay_days=3, test_days=5, max_report_delay_days=7)
    breaches = find_breaches(
        [(_day(1), "data_drift", {"drifted_share": 0.9})],
        after=D,
        champion_version="v1",
        champion_test_ap=0.8,
        thresholds=THRESHOLDS,
    )
    decisions = {}
    for last in range(1, 30):
        window = newest_training_window(protocol, max_report_date=_day(last), last_day=_day(last))
        decisions[last] = decide(
            breaches, champion_version="v1", window=window, thresholds=THRESHOLDS
        )
    first_fire = min(n for n, d in decisions.items() if d.fire)
    # the window ends (exclusive) at last - 7 (maturity) - 5 (test) + 1 - 3 (delay): 3 days
    # from the breach on day 1 means an end at day 4, so the last day loaded is day 18
    assert first_fire == 18
    assert "waiting" in decisions[17].reason and decisions[17].post_drift_days == 2
    fired = decisions[first_fire]
    assert fired.key == f"v1-{_day(1).isoformat()}"
    tags = fired.tags()
    assert tags["blueprint/thresholds"] == "drifted_feature_share"
    assert tags["blueprint/first_breach"] == _day(1).isoformat()
    assert "0.900" in tags["blueprint/latest_breach"]


def test_no_breach_no_retraining():
    window = newest_training_window(Protocol(), _day(30), _day(30))
    decision = decide([], champion_version="v1", window=window, thresholds=THRESHOLDS)
    assert not decision.fire and decision.key is None
