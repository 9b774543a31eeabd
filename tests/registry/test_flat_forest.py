"""FlatForest: the same fraud probabilities as scikit-learn's trees, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from orchestration.lib.serving.flat_forest import FLAT_MAX_ROWS, FlatForest
from orchestration.lib.serving.scoring import ScoringModel
from tests.training.families import build_pipeline


def _data(n: int = 2000, features: int = 6, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)) * [1, 10, 100, 0.01, 1, 1]
    X[:, 4] = rng.integers(0, 3, size=n)  # ties: many rows sit exactly on thresholds' sides
    y = ((X[:, 0] + X[:, 1] / 10 + rng.normal(size=n)) > 1.5).astype(int)
    return X, y


def _edge_rows(model, X: np.ndarray) -> np.ndarray:
    """Rows whose values sit exactly on a threshold, or just above it in float64 while equal
    in float32 (where a comparison in float64 would go the other way)."""
    tree = (model.estimators_[0] if hasattr(model, "estimators_") else model).tree_
    rows = []
    for node in np.flatnonzero(tree.children_left != -1)[:50]:
        f, t = tree.feature[node], tree.threshold[node]
        for value in (t, np.nextafter(t, np.inf), float(np.float32(t))):
            row = X[node % len(X)].copy()
            row[f] = value
            rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1),
        RandomForestClassifier(n_estimators=7, max_depth=4, random_state=1, n_jobs=1),
        DecisionTreeClassifier(random_state=0),
    ],
    ids=["deep forest", "shallow forest", "one tree"],
)
def test_flat_forest_equals_predict_proba_bit_for_bit(model):
    X, y = _data()
    model.fit(X, y)
    flat = FlatForest(model)
    rows = np.vstack([X, _edge_rows(model, X)])
    expected = model.predict_proba(rows)[:, 1]
    for start in range(0, len(rows), 300):  # several batch sizes, one row included
        chunk = slice(start, start + 300)
        np.testing.assert_array_equal(flat.predict_proba1(rows[chunk]), expected[chunk])
    np.testing.assert_array_equal(flat.predict_proba1(rows[:1]), expected[:1])


def test_flat_forest_refuses_rows_of_the_wrong_width():
    X, y = _data()
    flat = FlatForest(DecisionTreeClassifier(random_state=0).fit(X, y))
    with pytest.raises(ValueError, match="6 features"):
        flat.predict_proba1(X[:, :5])


def test_a_scoring_model_scores_few_rows_flat_and_many_with_scikit_learn_alike():
    X, y = _data(n=3000)
    names = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    frame.iloc[::17, 2] = np.nan  # the pipeline imputes them, as in production
    pipeline = build_pipeline("random_forest", {"n_estimators": 25}).fit(frame, y)
    facts = type("Facts", (), {"features": names})()
    model = ScoringModel(version="v", pipeline=pipeline, facts=facts, alert_threshold=0.5)
    assert model._flat_forest is not None
    expected = pipeline.predict_proba(frame)[:, 1]
    assert len(frame) > FLAT_MAX_ROWS  # scikit-learn's path
    np.testing.assert_array_equal(model.score(frame), expected)
    for start in range(0, 600, 24):  # the service's path: a payment and its reason rows
        part = frame.iloc[start:start + 24]
        np.testing.assert_array_equal(model.score(part), expected[start:start + 24])
