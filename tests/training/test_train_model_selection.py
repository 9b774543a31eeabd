"""Candidate pipelines, prequential search, final fit, importances and reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from benchmarks.model_quality import HANDBOOK_GRIDS
from orchestration.lib.training.families import Candidate
from orchestration.lib.training.metrics import performance
from orchestration.lib.training.model_selection import (
    SCORE,
    feature_importances,
    fit_final,
    prequential_search,
    reason_codes,
)
from orchestration.lib.training.validation import LABEL, Protocol, split_windows, train_test_frames
from tests.training.families import (
    DECISION_TREE,
    DEFAULT_GRIDS,
    FAMILIES,
    FRAUD,
    GRADIENT_BOOSTING,
    LOGISTIC_REGRESSION,
    RANDOM_FOREST,
    ROWS,
    SCORECARD,
    build_pipeline,
    candidates,
)
from tests.training.train_synthetic import FEATURES, day, synthetic_frame

PROTOCOL = Protocol(n_folds=3)
DECLARED = {"rows": ROWS, "scorecard": SCORECARD, "selection_metric": "average_precision"}
"""What the search takes from the fraud declaration."""
HANDBOOK_COLUMNS = {"day": FRAUD.data.partition_date, "entity": FRAUD.data.entities["card"]}
"""The columns the handbook's CP@k reads: each row's day and card."""
LAST_TEST_START = day(35)
"""Folds test from days 35, 28 and 21; the oldest trains on days 7..13."""

SMALL_GRIDS = {
    LOGISTIC_REGRESSION: {"C": [1.0]},
    GRADIENT_BOOSTING: {"max_iter": [30], "max_depth": [3], "learning_rate": [0.1]},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture(autouse=True)
def one_thread():
    """Fits outside the library's own limit also use one thread (OpenMP crawls when shared)."""
    with threadpool_limits(limits=1):
        yield


def test_grids_expand_to_every_combination():
    assert [len(candidates({f: g})) for f, g in HANDBOOK_GRIDS.items()] == [11, 4, 12, 18]
    assert {c.family for c in candidates(HANDBOOK_GRIDS)} == {
        DECISION_TREE,
        LOGISTIC_REGRESSION,
        RANDOM_FOREST,
        GRADIENT_BOOSTING,
    }
    assert len(candidates(DEFAULT_GRIDS)) == 9
    forest = candidates({RANDOM_FOREST: {"n_estimators": [25], "max_depth": [5]}})[0]
    assert forest.name == "random_forest(max_depth=5, n_estimators=25)"
    assert forest.pipeline()[-1].get_params()["max_depth"] == 5


def test_preprocessing_travels_with_the_model():
    linear = build_pipeline(LOGISTIC_REGRESSION, {"C": 10.0})
    assert isinstance(linear.named_steps["scale"], StandardScaler)
    assert linear[-1].C == 10.0
    boosting = build_pipeline(GRADIENT_BOOSTING, {"max_iter": 25}, random_state=7)
    assert boosting[-1].random_state == 7 and boosting[-1].early_stopping is False
    # missing feature values are imputed inside the pipeline, so raw rows can be scored
    rows = pd.DataFrame({"x_a": [0.1, np.nan, 0.5, -0.2], "x_b": [1.0, 2.0, np.nan, 0.3]})
    linear.fit(rows, [0, 1, 0, 1])
    assert np.isfinite(linear.predict_proba(rows)).all()
    with pytest.raises(ValueError, match="unknown model families"):
        candidates({"svm": {"C": [1.0]}})


def test_search_picks_the_model_that_is_clearly_better(frame):
    lines = []
    result = prequential_search(
        frame, FEATURES, PROTOCOL, LAST_TEST_START, grids=SMALL_GRIDS, families=FAMILIES,
        **DECLARED, log=lines.append
    )

    assert result.best.family == GRADIENT_BOOSTING
    summary = result.summary.set_index("family")
    # the interaction is invisible to a linear model
    boosting, linear = summary.loc[GRADIENT_BOOSTING], summary.loc[LOGISTIC_REGRESSION]
    assert boosting["average_precision_mean"] > 0.7
    assert boosting["average_precision_mean"] - linear["average_precision_mean"] > 0.3
    assert boosting["auc_roc_mean"] > 0.95 > linear["auc_roc_mean"] + 0.2
    assert list(result.best_per_family()["family"]) == [GRADIENT_BOOSTING, LOGISTIC_REGRESSION]

    assert len(result.scores) == len(lines) == 2 * PROTOCOL.n_folds
    assert lines[0].startswith("fold 0 (train 2018-04-22..2018-04-28, test 2018-05-06..")
    assert sorted(result.scores["test_start"].unique()) == [day(21), day(28), day(35)]
    folds = result.scores[result.scores["candidate"] == result.best.name]["average_precision"]
    assert summary.loc[GRADIENT_BOOSTING, "average_precision_std"] == pytest.approx(np.std(folds))
    assert summary.loc[GRADIENT_BOOSTING, "average_precision_mean"] == pytest.approx(folds.mean())


def test_each_fold_is_scored_on_its_own_test_window(frame):
    result = prequential_search(
        frame, FEATURES, PROTOCOL, LAST_TEST_START, grids={LOGISTIC_REGRESSION: {"C": [1.0]}},
        families=FAMILIES, **DECLARED,
    )
    fold = result.folds[1]
    train, test = train_test_frames(frame, fold, ROWS)
    linear = Candidate(LOGISTIC_REGRESSION, (("C", 1.0),), FAMILIES[LOGISTIC_REGRESSION])
    pipeline = linear.pipeline()
    pipeline.fit(train[FEATURES], train[LABEL])
    expected = performance(
        test, pipeline.predict_proba(test[FEATURES])[:, 1], **HANDBOOK_COLUMNS
    )
    row = result.scores.iloc[1]
    assert (row["fold"], row["n_test"], row["n_train"]) == (1, len(test), len(train))
    assert row["average_precision"] == pytest.approx(expected.average_precision)
    assert row["card_precision_top_k"] == pytest.approx(expected.card_precision_top_k)


def test_same_seed_gives_the_same_metrics(frame):
    grids = {RANDOM_FOREST: {"n_estimators": [10], "max_depth": [4]}, **SMALL_GRIDS}
    metrics = ["candidate", "fold", "auc_roc", "average_precision", "card_precision_top_k"]
    first = prequential_search(frame, FEATURES, PROTOCOL, LAST_TEST_START, grids, FAMILIES,
                               **DECLARED, random_state=3)
    again = prequential_search(frame, FEATURES, PROTOCOL, LAST_TEST_START, grids, FAMILIES,
                               **DECLARED, random_state=3)
    pd.testing.assert_frame_equal(first.scores[metrics], again.scores[metrics])
    assert first.best == again.best


def test_search_refuses_a_frame_that_does_not_cover_the_folds(frame):
    late = frame[frame["tx_date"] >= pd.Timestamp(day(10))]
    with pytest.raises(ValueError, match="the folds need"):
        prequential_search(late, FEATURES, PROTOCOL, LAST_TEST_START, grids=SMALL_GRIDS,
                           families=FAMILIES, **DECLARED)


def test_final_model_trains_on_the_latest_window_and_tests_on_the_next(frame):
    windows = split_windows(PROTOCOL, LAST_TEST_START)
    best = candidates({GRADIENT_BOOSTING: SMALL_GRIDS[GRADIENT_BOOSTING]})[0]
    final = fit_final(best, frame, windows, FEATURES, ROWS, SCORECARD)
    train, test = train_test_frames(frame, windows, ROWS)
    assert (final.n_train, final.n_test) == (len(train), len(test))
    assert final.n_train_positives == train[LABEL].sum()
    predictions = final.test_predictions
    pd.testing.assert_frame_equal(predictions.drop(columns=SCORE), test)
    np.testing.assert_allclose(
        predictions[SCORE], final.pipeline.predict_proba(test[FEATURES])[:, 1]
    )
    # the handbook's three, computed apart
    expected = performance(test, predictions[SCORE], **HANDBOOK_COLUMNS)
    assert final.metrics == {
        "auc_roc": expected.auc_roc, "average_precision": expected.average_precision,
        "card_precision_top_k": expected.card_precision_top_k,
    }
    pd.testing.assert_series_equal(final.reference_means, train[FEATURES].mean())
    assert list(final.pipeline.feature_names_in_) == FEATURES


def _toy(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The score is driven by ``x_b`` alone: fraud iff x_b > 1 (plus a little noise)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x_a", "x_b", "x_c"])
    y = ((X["x_b"] > 1) ^ (rng.uniform(size=n) < 0.02)).to_numpy().astype(int)
    return X, y


@pytest.mark.parametrize("family", [GRADIENT_BOOSTING, RANDOM_FOREST, DECISION_TREE])
def test_reason_codes_of_a_tree_model_name_the_driving_feature(family):
    X, y = _toy()
    params = {RANDOM_FOREST: {"n_estimators": 20}, DECISION_TREE: {"max_depth": 3}}
    pipeline = build_pipeline(family, params.get(family, {"max_iter": 30})).fit(X, y)
    calls = []
    predict_proba = pipeline.predict_proba
    pipeline.predict_proba = lambda rows: calls.append(len(rows)) or predict_proba(rows)

    row = pd.DataFrame({"x_a": [0.1], "x_b": [2.5], "x_c": [-0.2]})
    codes = reason_codes(pipeline, row, X.mean(), top_n=2)

    assert [c.feature for c in codes][0] == "x_b"
    assert codes[0].value == 2.5 and codes[0].reference == pytest.approx(X["x_b"].mean())
    assert codes[0].contribution > 0.5
    assert abs(codes[1].contribution) < 0.2
    assert calls == [len(X.columns) + 1], "one batched predict_proba call"


def test_reason_codes_of_logistic_regression_split_the_log_odds_exactly():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(4000, 3)), columns=["x_a", "x_b", "x_c"])
    logit = -3 + 2.5 * X["x_a"] - 1.0 * X["x_c"]
    y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    pipeline = build_pipeline(LOGISTIC_REGRESSION, {"C": 1.0}).fit(X, y)
    row = pd.Series({"x_a": 2.0, "x_b": 0.0, "x_c": -1.5})
    reference = X.mean()

    codes = reason_codes(pipeline, row, reference, top_n=3)

    assert [c.feature for c in codes] == ["x_a", "x_c", "x_b"]
    both = pd.DataFrame([row, reference])
    log_odds = pipeline.decision_function(both)
    assert sum(c.contribution for c in codes) == pytest.approx(log_odds[0] - log_odds[1])


def test_reason_codes_need_a_value_and_a_reference_for_every_feature():
    X, y = _toy(500)
    pipeline = build_pipeline(DECISION_TREE, {"max_depth": 2}).fit(X, y)
    with pytest.raises(ValueError, match="no reference"):
        reason_codes(pipeline, X.iloc[[0]], X.mean().drop("x_c"))
    with pytest.raises(ValueError, match="lacks the features"):
        reason_codes(pipeline, {"x_a": 1.0, "x_b": 2.0}, X.mean())


def test_permutation_importance_ranks_the_driving_feature_first():
    X, y = _toy()
    pipeline = build_pipeline(DECISION_TREE, {"max_depth": 3}).fit(X, y)
    importances = feature_importances(pipeline, X, y, max_rows=1000)
    assert importances.index[0] == "x_b"
    assert importances["x_b"] > 0.5
    assert importances.drop("x_b").abs().max() < 0.05
