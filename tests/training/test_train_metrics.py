"""Handbook metrics: CP@k, AUC ROC / AP, the alert threshold for a budget, figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from orchestration.lib.training.metrics import (
    alert_threshold_for_budget,
    card_precision_top_k,
    card_scores_by_day,
    importance_figure,
    performance,
    roc_pr_figure,
)

# Two days, k = 2. Day 1: cards by highest score A (fraud) 0.9, B 0.8, C (fraud) 0.7,
# D (fraud) 0.1 -> alerts A, B -> CP = 1/2; A is detected. Day 2: A (fraud) 0.95 is gone;
# C has a genuine payment at 0.9 and a fraud at 0.3 (card score 0.9, compromised);
# E's best payment is 0.85 (genuine); D (fraud) 0.2 -> alerts C, E -> CP = 1/2.
HAND_MADE = pd.DataFrame(
    [
        (1, "A", 1, 0.9),
        (1, "B", 0, 0.8),
        (1, "C", 1, 0.7),
        (1, "D", 1, 0.1),
        (2, "A", 1, 0.95),
        (2, "C", 0, 0.9),
        (2, "C", 1, 0.3),
        (2, "E", 0, 0.1),
        (2, "E", 0, 0.85),
        (2, "D", 1, 0.2),
    ],
    columns=["tx_date", "card_key", "label", "score"],
)


def _cp(frame: pd.DataFrame, **kwargs):
    return card_precision_top_k(
        frame["tx_date"], frame["card_key"], frame["label"], frame["score"], **kwargs
    )


def test_card_precision_removes_cards_detected_on_earlier_days():
    result = _cp(HAND_MADE, top_k=2)
    assert result.per_day == [0.5, 0.5]
    assert result.compromised_cards_per_day == [3, 2]
    assert result.mean == 0.5


def test_card_precision_without_removal_counts_a_detected_card_again():
    result = _cp(HAND_MADE, top_k=2, remove_detected=False)
    assert result.per_day == [0.5, 1.0]
    assert result.mean == 0.75


def test_card_precision_divides_by_k_even_when_fewer_cards_paid():
    result = _cp(HAND_MADE, top_k=10)
    # day 1: A, C, D found (3/10); day 2: A, C, D were all detected, nothing left to find
    assert result.per_day == [0.3, 0.0]


def _handbook_card_precision(frame: pd.DataFrame, top_k: int) -> float:
    """The handbook's procedure, restated: per day, max per card, top k, drop found cards."""
    detected: set[str] = set()
    per_day = []
    for day in sorted(frame["tx_date"].unique()):
        rows = frame[(frame["tx_date"] == day) & ~frame["card_key"].isin(detected)]
        cards = rows.groupby("card_key")[["score", "label"]].max()
        top = cards.sort_values("score", ascending=False).head(top_k)
        found = list(top.index[top["label"] == 1])
        per_day.append(len(found) / top_k)
        detected.update(found)
    return float(np.mean(per_day))


def test_card_precision_matches_the_handbook_procedure_on_random_data():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame(
        {
            "tx_date": rng.integers(0, 7, n),
            "card_key": rng.integers(0, 300, n).astype(str),
            "label": (rng.uniform(size=n) < 0.05).astype(int),
            "score": rng.uniform(size=n),
        }
    )
    frame["score"] += 0.3 * frame["label"]
    assert _cp(frame, top_k=20).mean == pytest.approx(_handbook_card_precision(frame, 20))


def test_auc_and_average_precision_are_scikit_learns():
    rng = np.random.default_rng(0)
    n = 2000
    test = pd.DataFrame(
        {
            "tx_date": rng.integers(0, 7, n),
            "card_key": rng.integers(0, 500, n),
            "label": (rng.uniform(size=n) < 0.1).astype(int),
        }
    )
    scores = rng.uniform(size=n) + 0.5 * test["label"].to_numpy()
    result = performance(test, scores, day="tx_date", entity="card_key", top_k=50)
    assert result.auc_roc == roc_auc_score(test["label"], scores)
    assert result.average_precision == average_precision_score(test["label"], scores)
    assert (
        result.card_precision_top_k
        == card_precision_top_k(
            test["tx_date"], test["card_key"], test["label"], scores, top_k=50
        ).mean
    )
    assert result.as_dict() == {
        "auc_roc": result.auc_roc,
        "average_precision": result.average_precision,
        "card_precision_at_50": result.card_precision_top_k,
    }


def test_threshold_free_metrics_are_nan_on_a_single_class():
    test = pd.DataFrame({"tx_date": [1, 1], "card_key": ["a", "b"], "label": [0, 0]})
    result = performance(test, [0.2, 0.4], day="tx_date", entity="card_key")
    assert math.isnan(result.auc_roc) and math.isnan(result.average_precision)
    assert result.card_precision_top_k == 0.0


def test_threshold_gives_the_budget_of_alerts_per_day_on_average():
    days = {"d1": [0.9, 0.8, 0.1], "d2": [0.7, 0.6, 0.5]}
    assert alert_threshold_for_budget(days, alerts_per_day=1) == 0.8  # 0.9 and 0.8
    assert alert_threshold_for_budget(days, alerts_per_day=1.5) == 0.7  # budget 3
    assert alert_threshold_for_budget(days, alerts_per_day=10) == 0.1  # everything fits
    no_alert = alert_threshold_for_budget(days, alerts_per_day=0)
    assert no_alert > 0.9 and no_alert == pytest.approx(0.9)


def test_a_tie_that_would_overflow_the_budget_is_left_out():
    threshold = alert_threshold_for_budget([[0.9, 0.8, 0.8], [0.1]], alerts_per_day=1)
    assert threshold == 0.9


def test_threshold_is_the_lowest_that_respects_the_budget_on_random_scores():
    rng = np.random.default_rng(1)
    days = [rng.beta(1, 20, 1000).round(3) for _ in range(7)]
    scores = np.concatenate(days)
    threshold = alert_threshold_for_budget(days, alerts_per_day=25)
    assert (scores >= threshold).sum() <= 25 * 7
    next_lower = scores[scores < threshold].max()
    assert (scores >= next_lower).sum() > 25 * 7


def test_card_alerts_are_budgeted_on_each_cards_best_score_of_the_day():
    by_day = card_scores_by_day(HAND_MADE["tx_date"], HAND_MADE["card_key"], HAND_MADE["score"])
    assert {day: sorted(scores) for day, scores in by_day.items()} == {
        1: [0.1, 0.7, 0.8, 0.9],
        2: [0.2, 0.85, 0.9, 0.95],
    }
    # two card alerts a day on average, four in all: 0.95, 0.9, 0.9 and 0.85 (one on day 1,
    # three on day 2); the budget is an average over the window, not a daily cap
    assert alert_threshold_for_budget(by_day, alerts_per_day=2) == 0.85


def test_threshold_rejects_empty_input():
    with pytest.raises(ValueError):
        alert_threshold_for_budget({}, alerts_per_day=5)


def test_figures_are_png_images():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=500) < 0.1).astype(int)
    png = roc_pr_figure(y, rng.uniform(size=500) + y)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    importances = pd.Series({"amount": 0.3, "terminal_risk_7day": 0.1, "tx_during_night": 0.0})
    assert importance_figure(importances).startswith(b"\x89PNG\r\n\x1a\n")
