"""Scoring with the champion: one code path for the real-time service and batch scoring.

Both load the version the registry names champion (never the newest model), score
``transaction_features`` rows with its pipeline, raise an alert at the threshold the promotion
gate chose for it, and explain a score with :func:`orchestration.lib.model_selection.reason_codes`.
Batch scores equal the service's because both call :meth:`ScoringModel.score` on the same
feature values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from orchestration.lib import registry
from orchestration.lib.model_selection import ReasonCode, reason_codes
from orchestration.settings import Settings

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
        with threadpool_limits(limits=1):
            return self.pipeline.predict_proba(X)[:, 1]

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.alert_threshold

    def reasons(self, row: Mapping[str, Any], top_n: int = 3) -> list[ReasonCode]:
        """The features that pushed this row's score up the most (cheap: one small batch)."""
        values = {f: _as_float(row.get(f)) for f in self.features}
        with threadpool_limits(limits=1):
            return reason_codes(
                self.pipeline, values, self.facts.reference_means or _zeros(self.features),
                top_n=top_n,
            )


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


def _as_float(value: Any) -> float:
    # the pipeline imputes missing values: keep them missing, as offline
    return float("nan") if value is None else float(value)


def _zeros(features: Sequence[str]) -> dict[str, float]:
    return dict.fromkeys(features, 0.0)
