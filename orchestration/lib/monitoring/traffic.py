"""The scoring service's traffic as monitoring reads it, and the training-serving skew check.

``raw_predictions`` holds every row the service logged (a retried request is a second row);
monitoring wants one row per event: the first one logged. The feature values the service
computed online are compared with the offline feature mart's values of the same events: they
are the same dbt SQL, so any difference beyond :data:`SKEW_TOLERANCE` is a bug (a feature
computed differently online, a late-arriving input the service never saw) and fails the check.
Events are named by the use case's row id and event time columns, given by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from orchestration.lib.features.feature_definitions import quote_identifier
from orchestration.lib.serving.served import FEATURES

SKEW_TOLERANCE = 1e-9
"""Largest absolute difference allowed between a feature served online and its offline value."""
ONLINE_PREFIX = f"{FEATURES}."
"""Logged feature columns are ``features.<name>``; the offline values keep the plain name."""


def online_feature_names(frame: pd.DataFrame) -> list[str]:
    """The features logged with the traffic in ``frame`` (``features.<name>`` columns)."""
    return [c.removeprefix(ONLINE_PREFIX) for c in frame.columns if c.startswith(ONLINE_PREFIX)]


def load_scored_traffic(
    raw_predictions_dir: Path, first: date, end: date, row_id: str, event_time: str
) -> pd.DataFrame:
    """The events of ``[first, end)`` the service scored (``row_id`` names an event,
    ``event_time`` its time), one row each (the first logged of a retried event), ordered by
    time; ``retries`` counts the extra rows dropped."""
    files = sorted(Path(raw_predictions_dir).glob("file=*/data.parquet"))
    if not files:
        return pd.DataFrame(columns=[row_id, event_time, "model_version", "logged_at", "retries"])
    key, when = quote_identifier(row_id), quote_identifier(event_time)
    with duckdb.connect() as con:
        frame = con.execute(
            f"""
            select * exclude (rank_), count(*) over (partition by {key}) - 1 as retries
            from (
                select *, row_number() over (
                    partition by {key} order by logged_at, request_id
                ) as rank_
                from read_parquet(?, union_by_name = true)
                where cast({when} as date) >= ? and cast({when} as date) < ?
            )
            qualify rank_ = 1
            order by {when}, {key}
            """,
            [[str(f) for f in files], first, end],
        ).df()
    return frame.drop(columns=["request_id", "log_file"], errors="ignore")


def label_maturity(event_times: pd.Series, max_label_date: date | None, delay_days: int) -> float:
    """Share of the events whose label window has closed: every label that can still come for
    them (up to ``delay_days`` after their day) is loaded."""
    if len(event_times) == 0:
        return float("nan")
    if max_label_date is None:
        return 0.0
    closes = pd.to_datetime(event_times).dt.date + timedelta(days=delay_days)
    return float((closes <= max_label_date).mean())


@dataclass(frozen=True)
class SkewExample:
    row_id: str
    feature: str
    online: float | None
    offline: float | None


@dataclass(frozen=True)
class SkewResult:
    """What comparing the served features with the offline ones found."""

    compared: int
    """Events found both in the traffic and offline."""
    missing_offline: int
    """Scored events the offline mart does not hold (quarantined, or not ingested yet)."""
    mismatched: int
    """Events with at least one feature differing beyond the tolerance."""
    by_feature: dict[str, int]
    max_abs_difference: dict[str, float]
    examples: list[SkewExample] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.mismatched == 0


def compare_features(
    traffic: pd.DataFrame,
    offline: pd.DataFrame,
    row_id: str,
    features: Sequence[str] | None = None,
    tolerance: float = SKEW_TOLERANCE,
    max_examples: int = 10,
) -> SkewResult:
    """Compare ``features.<name>`` of ``traffic`` with ``<name>`` of ``offline`` (both keyed by
    ``row_id``). Two missing values are equal; a missing and a present value differ."""
    names = list(features) if features is not None else online_feature_names(traffic)
    absent = [n for n in names if n not in offline.columns]
    if absent:
        raise KeyError(f"offline features lack {', '.join(absent)}")
    online = traffic[[row_id, *(ONLINE_PREFIX + n for n in names)]]
    joined = online.merge(offline[[row_id, *names]], on=row_id, how="left", indicator=True)
    found = joined["_merge"] == "both"
    joined = joined.loc[found].reset_index(drop=True)
    any_bad = np.zeros(len(joined), dtype=bool)
    by_feature: dict[str, int] = {}
    max_diff: dict[str, float] = {}
    examples: list[SkewExample] = []
    for name in names:
        served = pd.to_numeric(joined[ONLINE_PREFIX + name], errors="coerce").to_numpy(float)
        stored = pd.to_numeric(joined[name], errors="coerce").to_numpy(float)
        both_missing = np.isnan(served) & np.isnan(stored)
        diff = np.abs(served - stored)
        bad = ~both_missing & ~(diff <= tolerance)  # NaN on one side only counts as different
        by_feature[name] = int(bad.sum())
        finite = diff[~np.isnan(diff)]
        max_diff[name] = float(finite.max()) if len(finite) else 0.0
        any_bad |= bad
        for row in np.flatnonzero(bad)[: max(0, max_examples - len(examples))]:
            examples.append(
                SkewExample(
                    row_id=str(joined.at[row, row_id]),
                    feature=name,
                    online=_number(served[row]),
                    offline=_number(stored[row]),
                )
            )
    return SkewResult(
        compared=len(joined),
        missing_offline=int((~found).sum()),
        mismatched=int(any_bad.sum()),
        by_feature=by_feature,
        max_abs_difference=max_diff,
        examples=examples,
    )


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
