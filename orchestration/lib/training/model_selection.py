"""Prequential model selection and per-prediction explanations.

Candidates come from the use case's model families (:mod:`orchestration.lib.training.families`).
Selection follows the Fraud Detection Handbook (ch. 5): each candidate is trained and tested on
every prequential fold; the best is the one with the best mean of the selection metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from orchestration.lib.training.families import Candidate, Families, Grids, candidates
from orchestration.lib.training.metrics import Scorecard
from orchestration.lib.training.validation import (
    LABEL,
    LabelledRows,
    Protocol,
    Windows,
    data_span,
    prequential_folds,
    train_test_frames,
)

SCORE = "score"
"""Column of :attr:`FinalModel.test_predictions` holding the predicted probability."""


@dataclass(frozen=True)
class SearchResult:
    """What a prequential search measured."""

    folds: list[Windows]
    scores: pd.DataFrame
    """One row per candidate and fold: ``candidate``, ``family``, ``fold``, ``test_start``, the
    declared metrics, ``fit_seconds`` and the fold's sizes."""
    summary: pd.DataFrame
    """One row per candidate (index ``candidate``): ``family``, mean and std (over folds, ddof 0
    as in the handbook) of each metric, mean fit time; best mean of the selection metric first
    (the lowest for a metric where lower is better)."""
    best: Candidate
    """The candidate with the best mean of the selection metric."""
    candidates: dict[str, Candidate] = field(repr=False)
    """Candidates by name."""

    def best_per_family(self) -> pd.DataFrame:
        """The summary row of each family's best candidate (by the selection metric)."""
        return self.summary.groupby("family", sort=False).head(1)


def prequential_search(
    frame: pd.DataFrame,
    features: Sequence[str],
    protocol: Protocol,
    last_test_start: date,
    grids: Grids,
    families: Families,
    rows: LabelledRows,
    scorecard: Scorecard,
    selection_metric: str,
    random_state: int = 0,
    n_threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Train and test every candidate on every prequential fold; pick the best by its mean of
    ``selection_metric`` over the folds.

    Fold 0 tests from ``last_test_start``. To choose a model that will be tested from day ``T``
    without peeking at its test window, pass ``validation_test_start(protocol, T)`` as the
    handbook does. ``frame`` must cover :func:`data_span` of the folds. ``n_threads`` caps the
    native thread pools (gradient boosting's OpenMP): on a shared machine more threads than
    free cores make it many times slower, never faster. Results do not depend on it.
    ``log`` receives one line per fitted candidate (e.g. a Dagster ``context.log.info``).
    """
    folds = prequential_folds(protocol, last_test_start)
    _check_coverage(frame, folds, rows)
    features = list(features)
    if selection_metric not in scorecard.metrics:
        raise ValueError(
            f"selection metric {selection_metric!r} is not one of {scorecard.names}"
        )
    pool = candidates(grids, families)
    if not pool:
        raise ValueError("the grids hold no candidate")
    records = []
    for fold, windows in enumerate(folds):
        train, test = train_test_frames(frame, windows, rows)
        if train[LABEL].nunique() < 2:
            raise ValueError(f"fold {fold} ({windows}) has a single class in training")
        for candidate in pool:
            record = _fold_record(candidate, fold, windows, train, test, features, scorecard,
                                  random_state, n_threads)
            if log is not None:
                log(f"fold {fold} ({windows}) {candidate.name}: "
                    f"{scorecard.line({m: record[m] for m in scorecard.names})}, "
                    f"fit {record['fit_seconds']:.1f}s")
            records.append(record)
    scores_table = pd.DataFrame(records)
    summary = _summarize(scores_table, scorecard, selection_metric)
    by_name = {c.name: c for c in pool}
    return SearchResult(
        folds=folds,
        scores=scores_table,
        summary=summary,
        best=by_name[summary.index[0]],
        candidates=by_name,
    )


def _fold_record(
    candidate: Candidate, fold: int, windows: Any, train: pd.DataFrame, test: pd.DataFrame,
    features: list[str], scorecard: Scorecard, random_state: int, n_threads: int,
) -> dict[str, Any]:
    """One candidate fitted on a fold's training rows and scored on its test rows."""
    with threadpool_limits(limits=n_threads):
        fitted, seconds = _fit(candidate.pipeline(random_state), train, features)
        scores = fitted.predict_proba(test[features])[:, 1]
    return {
        "candidate": candidate.name,
        "family": candidate.family,
        "fold": fold,
        "test_start": windows.test_start,
        **scorecard(test, scores),
        "fit_seconds": seconds,
        "n_train": len(train),
        "n_train_positives": int(train[LABEL].sum()),
        "n_test": len(test),
        "n_test_positives": int(test[LABEL].sum()),
    }


@dataclass(frozen=True)
class FinalModel:
    """The chosen pipeline trained on the latest training window and its test evaluation."""

    candidate: Candidate
    pipeline: Pipeline
    features: list[str]
    windows: Windows
    metrics: dict[str, float]
    """The declared metrics on the test window."""
    test_predictions: pd.DataFrame = field(repr=False)
    """The test rows (all columns of the frame, ``label`` included) with their ``score``: for
    figures, the alert threshold and monitoring's reference data."""
    reference_means: pd.Series = field(repr=False)
    """Mean of each feature over the training window: the baseline of :func:`reason_codes`."""
    n_train: int
    n_train_positives: int
    n_test: int
    fit_seconds: float


def fit_final(
    best: Candidate,
    frame: pd.DataFrame,
    windows: Windows,
    features: Sequence[str],
    rows: LabelledRows,
    scorecard: Scorecard,
    random_state: int = 0,
    n_threads: int = 1,
) -> FinalModel:
    """Train ``best`` on ``windows``' training window and evaluate it on its test window."""
    _check_coverage(frame, [windows], rows)
    features = list(features)
    train, test = train_test_frames(frame, windows, rows)
    with threadpool_limits(limits=n_threads):
        fitted, seconds = _fit(best.pipeline(random_state), train, features)
        scores = fitted.predict_proba(test[features])[:, 1]
    return FinalModel(
        candidate=best,
        pipeline=fitted,
        features=features,
        windows=windows,
        metrics=scorecard(test, scores),
        test_predictions=test.assign(**{SCORE: scores}),
        reference_means=train[features].astype(float).mean(),
        n_train=len(train),
        n_train_positives=int(train[LABEL].sum()),
        n_test=len(test),
        fit_seconds=seconds,
    )


def feature_importances(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: Sequence[int] | np.ndarray | pd.Series,
    max_rows: int = 20_000,
    n_repeats: int = 3,
    random_state: int = 0,
    n_threads: int = 1,
) -> pd.Series:
    """Permutation importance: how much Average Precision drops when a feature is shuffled.

    Model-agnostic, so families compare. Computed on a random sample of at most ``max_rows``
    rows of ``X`` (use the test window: importance on training data rewards overfitting).
    Returns the mean drop per feature, largest first.
    """
    y = np.asarray(y)
    if len(X) > max_rows:
        rows = np.sort(np.random.default_rng(random_state).choice(len(X), max_rows, replace=False))
        X, y = X.iloc[rows], y[rows]
    with threadpool_limits(limits=n_threads):
        result = permutation_importance(
            pipeline,
            X,
            y,
            scoring="average_precision",
            n_repeats=n_repeats,
            random_state=random_state,
            n_jobs=1,
        )
    importances = pd.Series(
        result.importances_mean, index=list(X.columns), name="mean drop in average precision"
    )
    return importances.sort_values(ascending=False)


@dataclass(frozen=True)
class ReasonCode:
    """How much one feature pushed one prediction towards fraud."""

    feature: str
    value: float
    reference: float
    """The feature's training mean, the baseline the value is compared with."""
    contribution: float
    """Logistic regression: change in log-odds. Other models: change in fraud probability."""


def reason_codes(
    pipeline: Pipeline,
    X_row: pd.DataFrame | pd.Series | Mapping[str, float],
    reference_means: pd.Series | Mapping[str, float],
    top_n: int = 3,
) -> list[ReasonCode]:
    """The ``top_n`` features that pushed this payment's score up the most, strongest first.

    Logistic regression: coefficient x the feature's deviation from its reference, both in the
    pipeline's standardized space (the exact additive split of the log-odds). Other models:
    the drop in fraud probability when that single feature is replaced by its reference (the
    training mean), all features at once in one ``predict_proba`` call of n_features + 1 rows.
    """
    names = list(pipeline.feature_names_in_)
    row = _one_row(X_row, names)
    reference = pd.Series(reference_means, dtype=float).reindex(names)
    if reference.isna().any():
        raise ValueError(f"no reference for {list(reference.index[reference.isna()])}")
    model = pipeline[-1]
    if hasattr(model, "coef_"):
        both = pd.DataFrame([row, reference.to_numpy()], columns=names)
        transformed = np.asarray(pipeline[:-1].transform(both), dtype=float)
        contributions = model.coef_[0] * (transformed[0] - transformed[1])
    else:
        batch = np.tile(row, (len(names) + 1, 1))
        batch[np.arange(1, len(names) + 1), np.arange(len(names))] = reference.to_numpy()
        proba = pipeline.predict_proba(pd.DataFrame(batch, columns=names))[:, 1]
        contributions = proba[0] - proba[1:]
    order = np.argsort(-contributions, kind="stable")[:top_n]
    return [
        ReasonCode(
            feature=names[i],
            value=float(row[i]),
            reference=float(reference.iloc[i]),
            contribution=float(contributions[i]),
        )
        for i in order
    ]


def _one_row(X_row: pd.DataFrame | pd.Series | Mapping[str, float], names: list[str]) -> np.ndarray:
    if isinstance(X_row, pd.DataFrame):
        if len(X_row) != 1:
            raise ValueError(f"X_row must hold one row, got {len(X_row)}")
        X_row = X_row.iloc[0]
    values = pd.Series(X_row, dtype=float)
    missing = [name for name in names if name not in values.index]
    if missing:
        raise ValueError(f"X_row lacks the features {missing}")
    return values.reindex(names).to_numpy()


def _fit(pipeline: Pipeline, train: pd.DataFrame, features: list[str]) -> tuple[Pipeline, float]:
    started = time.perf_counter()
    pipeline.fit(train[features], train[LABEL])
    return pipeline, time.perf_counter() - started


def _summarize(
    scores: pd.DataFrame, scorecard: Scorecard, selection_metric: str
) -> pd.DataFrame:
    metrics = scorecard.names
    grouped = scores.groupby("candidate", sort=False)
    summary = pd.concat(
        [
            grouped["family"].first(),
            grouped[metrics].mean().add_suffix("_mean"),
            grouped[metrics].std(ddof=0).add_suffix("_std"),
            grouped["fit_seconds"].mean().rename("fit_seconds_mean"),
        ],
        axis=1,
    )
    return summary.sort_values(
        f"{selection_metric}_mean", ascending=not scorecard.higher_is_better(selection_metric),
        kind="stable",
    )


def _check_coverage(frame: pd.DataFrame, folds: Sequence[Windows], rows: LabelledRows) -> None:
    first, end = data_span(folds)
    days = pd.to_datetime(frame[rows.day])
    if days.min() > pd.Timestamp(first) or days.max() < pd.Timestamp(end - timedelta(days=1)):
        raise ValueError(
            f"the frame covers {days.min().date()}..{days.max().date()}, the folds need "
            f"{first}..{end - timedelta(days=1)}"
        )
