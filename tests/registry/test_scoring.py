"""Scoring with a registered version: one code path for the service and batch scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestration.lib.registry import registry
from orchestration.lib.serving.scoring import ScoringModel, load_scoring_model
from orchestration.lib.training.model_selection import reason_codes
from tests.registry.conftest import FEATURES
from tests.training.families import build_pipeline


def _scoring(top_k: int):
    """Batch scoring as the fraud declaration says, with a list of ``top_k`` cards a day."""
    from dataclasses import replace

    from orchestration.lib.core.usecase import load_usecase
    from orchestration.lib.serving.scoring import DailyScoring
    from orchestration.settings import USECASES_DIR

    fraud = load_usecase("fraud", USECASES_DIR, environ={})
    return replace(DailyScoring.declared(fraud), top_k=top_k)


@pytest.mark.parametrize(
    ("family", "params"),
    [("random_forest", {"n_estimators": 20, "max_depth": 4}), ("logistic_regression", {"C": 1.0})],
)
def test_scores_and_reasons_are_the_same_one_row_at_a_time_or_in_batch(
    frame: pd.DataFrame, make_facts, family: str, params: dict
):
    pipeline = build_pipeline(family, params).fit(frame[FEATURES], frame["is_fraud"])
    means = frame[FEATURES].mean()
    facts = make_facts(pipeline, reference_means=means.to_dict())
    version = registry.save_model(pipeline, facts)
    registry.record_decision(
        version, True, "first", {registry.ALERT_THRESHOLD: 0.4}, actor="test"
    )
    model = load_scoring_model(version)
    assert model.alert_threshold == 0.4

    rows = frame[FEATURES].iloc[:40].reset_index(drop=True)
    expected = pipeline.predict_proba(rows)[:, 1]
    # a linear model's score is summed row by row (never depending on the rows beside it), so
    # it may differ from predict_proba's matrix product in the last bit: far below the 1e-9
    # the parity between service and batch allows
    np.testing.assert_allclose(model.score(rows), expected, rtol=0, atol=1e-12)
    batch_scores, batch_reasons = model.score_and_explain(rows)
    np.testing.assert_array_equal(batch_scores, model.score(rows))
    for i in range(len(rows)):
        one_score, [one_reasons] = model.score_and_explain(rows.iloc[[i]])
        assert one_score[0] == batch_scores[i]
        assert one_reasons == batch_reasons[i]
        # the method of model_selection.reason_codes, batched
        direct = reason_codes(pipeline, rows.iloc[i], means, top_n=3)
        assert [r.feature for r in one_reasons] == [r.feature for r in direct]
        assert [r.contribution for r in one_reasons] == pytest.approx(
            [r.contribution for r in direct], abs=1e-12
        )
    np.testing.assert_array_equal(model.alerts(expected), expected >= 0.4)


@pytest.mark.parametrize(
    ("family", "params"),
    [("random_forest", {"n_estimators": 20}), ("logistic_regression", {"C": 1.0})],
)
def test_scoring_many_days_at_once_gives_each_days_scores_and_queue(
    frame: pd.DataFrame, make_facts, family: str, params: dict
):
    from orchestration.lib.serving.scoring import score_days

    pipeline = build_pipeline(family, params).fit(frame[FEATURES], frame["is_fraud"])
    version = registry.save_model(
        pipeline, make_facts(pipeline, reference_means=frame[FEATURES].mean().to_dict())
    )
    model = load_scoring_model(version)
    days = pd.to_datetime("2018-05-01") + pd.to_timedelta(np.arange(len(frame)) % 3, unit="D")
    rows = frame[FEATURES].assign(
        transaction_id=[f"t{i:04d}" for i in range(len(frame))],
        tx_datetime=days, tx_date=days,
        card_key=[f"c{i % 40}" for i in range(len(frame))],  # cards pay several times a day
        terminal_id="1", amount=frame["amount"],
    )
    asked = sorted({d.date() for d in days})
    quiet_day = asked[-1] + pd.Timedelta(days=1)  # no payment: empty frames
    together = score_days(model, rows, [*asked, quiet_day], _scoring(10))
    assert sorted(together) == [*asked, quiet_day]
    scored, queue = together.pop(quiet_day)
    assert scored.empty and queue.empty and "reasons" in queue.columns
    for day, (scored, queue) in together.items():
        alone_scored, alone_queue = score_days(
            model, rows[rows["tx_date"].dt.date == day].reset_index(drop=True), [day], _scoring(10)
        )[day]
        assert len(queue) == 10 and queue["card_key"].is_unique
        # equal up to the last bit a different batch may change (BLAS, see above)
        pd.testing.assert_frame_equal(scored, alone_scored, check_exact=False, rtol=0, atol=1e-12)
        pd.testing.assert_frame_equal(
            queue.drop(columns="reasons"), alone_queue.drop(columns="reasons"),
            check_exact=False, rtol=0, atol=1e-12,
        )
        assert list(queue["reasons"]) == list(alone_queue["reasons"])


@pytest.mark.parametrize("top_k", [1, 5, 10, 39, 40, 200])
def test_each_days_queue_is_its_best_cards_by_their_best_payment(
    frame: pd.DataFrame, make_facts, top_k: int
):
    """The queue sorts only the rows that can reach it; it must hold what sorting every row
    gives: each card's best payment (highest score, then smallest transaction id), the top_k
    cards by it. A shallow forest of few trees gives many tied scores to break."""
    from orchestration.lib.serving.scoring import score_days

    pipeline = build_pipeline("random_forest", {"n_estimators": 3, "max_depth": 2})
    pipeline.fit(frame[FEATURES], frame["is_fraud"])
    version = registry.save_model(
        pipeline, make_facts(pipeline, reference_means=frame[FEATURES].mean().to_dict())
    )
    model = load_scoring_model(version)
    n = len(frame)
    days = pd.to_datetime("2018-05-01") + pd.to_timedelta(np.arange(n) % 2, unit="D")
    rng = np.random.default_rng(7)
    rows = frame[FEATURES].assign(
        transaction_id=[f"t{i:05d}" for i in rng.permutation(n)],
        tx_datetime=days, tx_date=days,
        card_key=[f"c{i % 40}" for i in range(n)],
        terminal_id="1", amount=frame["amount"],
    )
    result = score_days(model, rows, sorted({d.date() for d in days}), _scoring(top_k))
    assert len(result) == 2
    for scored, queue in result.values():
        assert scored["fraud_probability"].duplicated().any()  # ties exist
        expected = (
            scored.sort_values(["fraud_probability", "transaction_id"], ascending=[False, True])
            .drop_duplicates("card_key")
            .head(top_k)
        )
        assert list(queue["transaction_id"]) == list(expected["transaction_id"])
        assert list(queue["rank"]) == list(range(1, len(expected) + 1))


def test_a_linear_models_score_is_the_same_to_the_last_bit_alone_or_in_a_group() -> None:
    """``predict_proba``'s matrix product rounds a row differently with the rows beside it
    (with 23 features, most groups below have a row that differs in its last bit); the service
    scores a request alone or with the requests that waited with it, and a retry must get the
    same answer."""
    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(23)]
    frame = pd.DataFrame(rng.gamma(2, 30, size=(400, 23)), columns=names)
    y = (rng.random(400) < 0.2).astype(int)
    pipeline = build_pipeline("logistic_regression", {"C": 1.0}).fit(frame, y)
    facts = type("Facts", (), {"features": names, "reference_means": {}})()
    model = ScoringModel(version="v", pipeline=pipeline, facts=facts, alert_threshold=0.5)
    records = frame.to_dict("records")  # the service's rows: dicts, as the store returns them
    alone = [model.score_and_explain(pd.DataFrame([r]))[0][0] for r in records]
    for size in (2, 7, 25, 64):
        for start in range(0, len(records), size):
            scores, _ = model.score_and_explain(pd.DataFrame(records[start : start + size]))
            assert list(scores) == alone[start : start + size], (size, start)
    np.testing.assert_array_equal(model.score(frame), alone)
    np.testing.assert_allclose(alone, pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-15)
