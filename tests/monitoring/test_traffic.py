"""The served traffic as monitoring reads it, and the training-serving skew comparison."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from orchestration.lib.monitoring.traffic import (
    compare_features,
    label_maturity,
    load_scored_traffic,
)

KEYS = ("transaction_id", "tx_datetime")
"""The row id and event time columns of the traffic (fraud's)."""


def _logged(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _row(tid: str, when: str, logged: str, value: float, request: str = "r") -> dict:
    return {
        "request_id": request,
        "logged_at": pd.Timestamp(logged, tz="UTC"),
        "transaction_id": tid,
        "tx_datetime": pd.Timestamp(when),
        "card_key": "k" + tid,
        "terminal_id": "1",
        "amount": 10.0,
        "model_version": "v1",
        "features.f1": value,
        "features.f2": 2.0,
        "fraud_probability": 0.1,
        "alert": False,
        "log_file": "x.jsonl",
    }


def test_scored_traffic_keeps_the_first_logged_row_of_a_retried_payment(tmp_path):
    one = tmp_path / "file=a" / "data.parquet"
    two = tmp_path / "file=b" / "data.parquet"
    one.parent.mkdir()
    two.parent.mkdir()
    _logged(
        [
            _row("t1", "2018-05-01 10:00", "2026-01-01 10:00:01", 1.0, "a"),
            _row("t2", "2018-05-02 09:00", "2026-01-01 10:00:02", 1.0, "a"),
        ]
    ).to_parquet(one)
    # the retry, logged later, in another file; and a payment of another day
    _logged(
        [
            _row("t1", "2018-05-01 10:00", "2026-01-01 10:00:05", 9.0, "b"),
            _row("t0", "2018-04-30 23:59", "2026-01-01 10:00:06", 1.0, "b"),
        ]
    ).to_parquet(two)

    traffic = load_scored_traffic(tmp_path, date(2018, 5, 1), date(2018, 5, 2), *KEYS)

    assert traffic["transaction_id"].tolist() == ["t1"]
    assert traffic["features.f1"].tolist() == [1.0]  # the first logged, not the retry
    assert traffic["retries"].tolist() == [1]


def test_no_traffic_gives_an_empty_frame(tmp_path):
    assert load_scored_traffic(tmp_path, date(2018, 5, 1), date(2018, 5, 2), *KEYS).empty


def test_equal_features_pass_and_a_difference_beyond_1e_9_fails_with_examples():
    traffic = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c", "d"],
            "features.f1": [1.0, 2.0, np.nan, 4.0],
            "features.f2": [0.5, 0.5, 0.5, 0.5],
        }
    )
    offline = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c", "d"],
            "f1": [1.0 + 5e-10, 2.0, np.nan, 4.0],
            "f2": [0.5, 0.5, 0.5, 0.5],
        }
    )
    assert compare_features(traffic, offline, "transaction_id").passed

    offline.loc[1, "f1"] = 2.0 + 2e-9
    offline.loc[3, "f2"] = np.nan  # present online, missing offline: a difference
    result = compare_features(traffic, offline, "transaction_id")
    assert not result.passed
    assert result.mismatched == 2
    assert result.by_feature == {"f1": 1, "f2": 1}
    assert result.max_abs_difference["f1"] == pytest.approx(2e-9, rel=1e-3)
    assert {(e.row_id, e.feature) for e in result.examples} == {("b", "f1"), ("d", "f2")}


def test_payments_missing_offline_are_counted_not_compared():
    traffic = pd.DataFrame({"transaction_id": ["a", "z"], "features.f1": [1.0, 7.0]})
    offline = pd.DataFrame({"transaction_id": ["a"], "f1": [1.0]})
    result = compare_features(traffic, offline, "transaction_id")
    assert (result.compared, result.missing_offline, result.passed) == (1, 1, True)


def test_a_served_feature_the_mart_lacks_is_an_error():
    traffic = pd.DataFrame({"transaction_id": ["a"], "features.f9": [1.0]})
    with pytest.raises(KeyError, match="f9"):
        compare_features(traffic, pd.DataFrame({"transaction_id": ["a"]}), "transaction_id")


def test_label_maturity_is_the_share_of_payments_whose_report_window_closed():
    days = pd.Series([datetime(2018, 5, 1, 12), datetime(2018, 5, 1, 13), datetime(2018, 5, 2, 1)])
    assert label_maturity(days, date(2018, 5, 8), delay_days=7) == pytest.approx(2 / 3)
    assert label_maturity(days, date(2018, 5, 9), delay_days=7) == 1.0
    assert label_maturity(days, None, delay_days=7) == 0.0
