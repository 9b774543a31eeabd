"""Scoring with the champion: one code path for the real-time service and batch scoring.

Both load the version the registry names champion (never the newest model), score
``transaction_features`` rows with its pipeline, raise an alert at the threshold the promotion
gate chose for it, and explain a score with
:func:`orchestration.lib.training.model_selection.reason_codes`.
Batch scores equal the service's because both call :meth:`ScoringModel.score` on the same
feature values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import ThreadpoolController

from orchestration.lib.registry import registry
from orchestration.lib.serving.flat_forest import FLAT_MAX_ROWS, FlatForest
from orchestration.lib.training.metrics import DEFAULT_TOP_K
from orchestration.lib.training.model_selection import ReasonCode
from orchestration.settings import Settings

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import UseCase

_THREADPOOLS = ThreadpoolController()
"""Scanned once: ``threadpool_limits()`` rescans the loaded libraries on every call, a cost
each request would pay (figures: docs/OPERATING_NOTES.md, "The scoring service's Python")."""

DEFAULT_ALERT_THRESHOLD = 0.5
"""Threshold of a version the gate never evaluated (only reachable by promoting by hand)."""


@dataclass(frozen=True)
class ScoringModel:
    """A registered version loaded for scoring."""

    version: str
    pipeline: Any = field(repr=False)
    facts: registry.ModelFacts = field(repr=False)
    alert_threshold: float

    @property
    def features(self) -> list[str]:
        return list(self.facts.features)

    @property
    def feature_definitions_hash(self) -> str:
        return self.facts.feature_definitions_hash

    def score(self, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Fraud probability of each ``transaction_features`` row (missing values are imputed
        by the pipeline, as in training)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"rows lack the model's features {missing}")
        X = frame[self.features].astype(float)
        with _THREADPOOLS.limit(limits=1):
            return self._proba1(X)

    @cached_property
    def _flat_forest(self) -> FlatForest | None:
        model = self.pipeline[-1]
        if isinstance(model, RandomForestClassifier | DecisionTreeClassifier):
            return FlatForest(model)
        return None

    def _proba1(self, X: pd.DataFrame) -> np.ndarray:
        """``predict_proba(X)[:, 1]``; a few rows of a forest through :class:`FlatForest`
        (the same numbers without scikit-learn's per-tree overhead).

        A row's probability never depends on the rows beside it, to the last bit: the service
        scores a request alone or with the requests that waited with it, and a retry must get
        the same answer. A linear model's log-odds are therefore summed row by row
        (``predict_proba``'s matrix product rounds a row differently with the number of rows)."""
        model = self.pipeline[-1]
        if hasattr(model, "coef_"):
            transformed = np.ascontiguousarray(self.pipeline[:-1].transform(X), dtype=float)
            log_odds = (transformed * model.coef_[0]).sum(axis=1) + model.intercept_[0]
            return expit(log_odds)  # as predict_proba's
        if self._flat_forest is not None and len(X) <= FLAT_MAX_ROWS:
            transformed = np.asarray(self.pipeline[:-1].transform(X), dtype=float)
            if not np.isnan(transformed).any():
                return self._flat_forest.predict_proba1(transformed)
        return self.pipeline.predict_proba(X)[:, 1]

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.alert_threshold

    def reasons_batch(self, rows: pd.DataFrame, top_n: int = 3) -> list[list[ReasonCode]]:
        """The ``top_n`` reason codes of each row (see :meth:`score_and_explain`)."""
        return self.score_and_explain(rows, top_n)[1]

    def score_and_explain(
        self, rows: pd.DataFrame, top_n: int = 3
    ) -> tuple[np.ndarray, list[list[ReasonCode]]]:
        """:meth:`score` of many rows and the ``top_n`` features that pushed each score up the
        most, in one ``predict_proba`` call.

        Same method as :func:`orchestration.lib.training.model_selection.reason_codes`: logistic
        regression splits its log-odds exactly; other models measure the drop in probability
        when one feature at a time is replaced by its training mean, and the unchanged rows of
        that batch are the scores (a row's probability does not depend on the rows beside it).
        """
        names = self.features
        X = rows.reindex(columns=names).astype(float).to_numpy()
        means = self.facts.reference_means or {}
        reference = np.array([float(means.get(name, 0.0)) for name in names])
        n_rows, n_features = X.shape
        model = self.pipeline[-1]
        with _THREADPOOLS.limit(limits=1):
            if hasattr(model, "coef_"):
                both = pd.DataFrame(np.vstack([X, reference]), columns=names)
                transformed = np.asarray(self.pipeline[:-1].transform(both), dtype=float)
                contributions = model.coef_[0] * (transformed[:-1] - transformed[-1])
                scores = self._proba1(pd.DataFrame(X, columns=names))
            else:
                batch = np.repeat(X, n_features + 1, axis=0).reshape(
                    n_rows, n_features + 1, n_features
                )
                idx = np.arange(n_features)
                batch[:, idx + 1, idx] = reference
                proba = self._proba1(
                    pd.DataFrame(batch.reshape(-1, n_features), columns=names)
                ).reshape(n_rows, n_features + 1)
                contributions = proba[:, :1] - proba[:, 1:]
                scores = proba[:, 0].copy()
        result = []
        for i in range(n_rows):
            order = np.argsort(-contributions[i], kind="stable")[:top_n]
            result.append(
                [
                    ReasonCode(
                        feature=names[j],
                        value=float(X[i, j]),
                        reference=float(reference[j]),
                        contribution=float(contributions[i, j]),
                    )
                    for j in order
                ]
            )
        return scores, result


def load_scoring_model(version: str, settings: Settings | None = None) -> ScoringModel:
    """Load ``version`` from the model store with its alert threshold from the registry."""
    pipeline, facts = registry.load_model(version, settings)
    threshold = registry.alert_threshold(version, settings)
    return ScoringModel(
        version=version,
        pipeline=pipeline,
        facts=facts,
        alert_threshold=DEFAULT_ALERT_THRESHOLD if threshold is None else threshold,
    )


def load_champion(settings: Settings | None = None) -> ScoringModel:
    """The champion, ready to score (raises ``NoChampionError`` before the first promotion)."""
    return load_scoring_model(registry.champion_version(settings), settings)


@dataclass(frozen=True)
class DailyScoring:
    """What batch scoring of a use case keeps and ranks each day (from its declaration)."""

    day: str
    """The rows' day column."""
    row_id: str
    kept: tuple[str, ...]
    """Columns a score row keeps beside its score (the row's ids, time and entities)."""
    score: str
    """The score column's name."""
    entity: str | None
    """The key column the day's list ranks, each entity by its riskiest row (None: rows)."""
    top_k: int
    """How many the day's list holds: the decision budget."""

    @classmethod
    def declared(cls, usecase: UseCase) -> DailyScoring:
        data, budget = usecase.data, usecase.decision_budget
        kept = [data.row_id, data.event_time, data.partition_date, *data.entities.values()]
        entity = None if budget is None or budget.entity is None else budget.entity
        return cls(
            day=data.partition_date, row_id=data.row_id, kept=tuple(dict.fromkeys(kept)),
            score=usecase.serving.score,
            entity=None if entity is None else data.entities[entity],
            top_k=DEFAULT_TOP_K if budget is None else max(1, int(budget.per_day)),
        )


def score_days(
    model: ScoringModel, rows: pd.DataFrame, days: Sequence[date], scoring: DailyScoring
) -> dict[date, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each of ``days``: its rows scored (``rows`` hold them, by ``scoring.day``) and its list,
    the ``top_k`` entities by their highest score (or rows), each with the reasons of that row.
    One prediction for all the rows and one for all the lists' reason codes; a day without rows
    gets empty frames."""
    scores = model.score(rows) if len(rows) else np.empty(0)
    scored = _scored(model, rows, scores, scoring)
    day = np.asarray(rows[scoring.day].to_numpy(), dtype="datetime64[D]")
    entity = scoring.entity or scoring.row_id
    top_k = scoring.top_k
    candidates = _queue_candidates(day, rows[entity].to_numpy(), scores, top_k)
    best = (
        scored.iloc[candidates]
        .assign(_row=candidates, _day=day[candidates])
        .sort_values(["_day", scoring.score, scoring.row_id],
                     ascending=[True, False, True])
        .drop_duplicates(["_day", entity])
        .groupby("_day", sort=False)
        .head(top_k)
    )
    reasons = model.reasons_batch(rows.iloc[best["_row"].to_numpy()]) if len(best) else []
    best_day = best["_day"].to_numpy()
    result = {}
    for value in days:
        wanted = np.datetime64(value, "D")
        in_day = best_day == wanted
        result[value] = (
            scored.loc[day == wanted].reset_index(drop=True),
            _queue(best.loc[in_day].drop(columns="_day"),
                   [r for r, keep in zip(reasons, in_day, strict=True) if keep]),
        )
    return result


def _queue_candidates(
    day: np.ndarray, entities: np.ndarray, scores: np.ndarray, top_k: int
) -> np.ndarray:
    """Positions (ascending) of the only rows that can reach their day's list: by day, those
    scoring at least as high as the row where the ``top_k``-th distinct entity first appears in
    descending score order (all of the day's rows when it has fewer entities).

    An entity ranks by its best row, so an entity whose best row scores below that row's score
    is outranked by ``top_k`` others; rows tied with it stay, for the tie-break on the row id.
    Sorting these few rows instead of all of them (strings included) gives the same list."""
    if not len(day):
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((-scores, day))
    sorted_day = day[order]
    bounds = np.flatnonzero(np.r_[True, sorted_day[1:] != sorted_day[:-1], True])
    keep = []
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        seen: set = set()
        cut = end
        for i in range(start, end):
            seen.add(entities[order[i]])
            if len(seen) == top_k:
                cut = i + 1
                while cut < end and scores[order[cut]] == scores[order[i]]:
                    cut += 1
                break
        keep.append(order[start:cut])
    return np.sort(np.concatenate(keep))


def _scored(
    model: ScoringModel, rows: pd.DataFrame, scores: np.ndarray, scoring: DailyScoring
) -> pd.DataFrame:
    return rows[list(scoring.kept)].assign(
        **{scoring.score: scores},
        alert=model.alerts(scores),
        model_version=model.version,
    )


def _queue(best: pd.DataFrame, reasons: Sequence[list[ReasonCode]]) -> pd.DataFrame:
    queue = best.drop(columns="_row").reset_index(drop=True)
    queue.insert(0, "rank", range(1, len(queue) + 1))
    queue["reasons"] = [
        "; ".join(f"{r.feature}={r.value:.4g} (+{r.contribution:.3f})" for r in codes)
        for codes in reasons
    ]
    return queue
