"""When drift or decay calls for retraining: the retraining sensor's decision, as plain Python.

Each monitoring report leaves headline numbers per day (``reports/index.json``). A day
*breaches* when its share of drifted features reaches the configured share, when the score
distribution drifted (if that alone counts), or when its realized Average Precision, with mature
labels and the champion serving, fell below the champion's test Average Precision by the
configured drop. Only days after the champion's own data count: what it was trained and tested
on cannot surprise it.

A breach is not enough. A model trained right after the first breach would learn the old
world, because the newest training window with mature labels ends days behind the newest
traffic. Retraining starts once that window holds ``min_post_drift_days`` days from the first
breach on, and once per champion and first breach (the decision's ``key``): if the gate then
refuses the challenger, the weekly schedule tries again with more data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from orchestration.lib.training.validation import Protocol, Windows, split_windows

DATA_DRIFT, PREDICTION_DRIFT, PERFORMANCE = "data_drift", "prediction_drift", "performance"


@dataclass(frozen=True)
class Thresholds:
    drift_share: float
    """Share of drifted features that breaches."""
    ap_drop: float
    """Fall of realized Average Precision below the champion's test Average Precision."""
    prediction_drift: bool
    """Whether drift of the score distribution alone breaches."""
    min_post_drift_days: int
    """Days from the first breach the newest mature training window must hold."""
    decay_metric: str = "average_precision"
    """The performance reports' metric whose fall is decay (the declaration's
    ``monitoring.decay.metric``); ``ap_drop`` is its allowed fall."""
    decay_higher_is_better: bool = True
    """Whether the decay metric falls by going down (a lower-is-better metric decays up)."""


@dataclass(frozen=True)
class Breach:
    day: date
    threshold: str
    observed: float
    limit: float

    def __str__(self) -> str:
        return f"{self.threshold} {self.observed:.3f} vs {self.limit:.3f} on {self.day}"


@dataclass(frozen=True)
class Decision:
    fire: bool
    reason: str
    breaches: list[Breach] = field(default_factory=list)
    first_breach: date | None = None
    post_drift_days: int = 0
    key: str | None = None
    """Identifies the retraining (champion and first breach): one run per key."""

    def tags(self) -> dict[str, str]:
        """Run tags saying which threshold fired and by how much."""
        if not self.breaches:
            return {}
        latest = max(self.breaches, key=lambda b: b.day)
        fired = sorted({b.threshold for b in self.breaches})
        return {
            "blueprint/trigger": "retraining_sensor",
            "blueprint/retrain_key": self.key or "",
            "blueprint/thresholds": ",".join(fired),
            "blueprint/first_breach": self.first_breach.isoformat() if self.first_breach else "",
            "blueprint/latest_breach": str(latest),
            "blueprint/breach_days": str(len({b.day for b in self.breaches})),
            "blueprint/post_drift_training_days": str(self.post_drift_days),
        }


def find_breaches(
    summaries: Iterable[tuple[date, str, Mapping[str, Any]]],
    *,
    after: date,
    champion_version: str,
    champion_test_ap: float | None,
    thresholds: Thresholds,
) -> list[Breach]:
    """The breaches in ``(day, kind, numbers)`` summaries of days after ``after``."""
    breaches = []
    for day, kind, numbers in summaries:
        if day <= after:
            continue
        if kind == DATA_DRIFT:
            share = numbers.get("drifted_share")
            if share is not None and share >= thresholds.drift_share:
                breaches.append(
                    Breach(day, "drifted_feature_share", float(share), thresholds.drift_share)
                )
        elif kind == PREDICTION_DRIFT:
            if thresholds.prediction_drift and numbers.get("score_drift"):
                statistic = numbers.get("score_drift_statistic")
                breaches.append(
                    Breach(
                        day, "prediction_drift",
                        float(statistic) if statistic is not None else 1.0,
                        float(numbers.get("score_drift_threshold") or 0.0),
                    )
                )
        elif kind == PERFORMANCE:
            realized = numbers.get(thresholds.decay_metric)
            served_by = numbers.get("model_version")
            if realized is None or champion_test_ap is None or served_by != champion_version:
                continue
            fall = champion_test_ap - realized
            fall = fall if thresholds.decay_higher_is_better else -fall
            if fall >= thresholds.ap_drop:
                breaches.append(Breach(day, "realized_ap_drop", fall, thresholds.ap_drop))
    return sorted(breaches, key=lambda b: (b.day, b.threshold))


def newest_training_window(
    protocol: Protocol, max_report_date: date, last_day: date
) -> Windows:
    """The split the training pipeline would use now: its test window is the newest whose
    labels are all mature (as :func:`orchestration.lib.training.validation.latest_test_start`)."""
    last_mature = min(last_day, max_report_date - timedelta(days=protocol.max_report_delay_days))
    return split_windows(protocol, last_mature - timedelta(days=protocol.test_days - 1))


def decide(
    breaches: list[Breach],
    *,
    champion_version: str,
    window: Windows,
    thresholds: Thresholds,
) -> Decision:
    """Whether to retrain now, given the breaches and the newest mature training ``window``."""
    if not breaches:
        return Decision(False, "no threshold breached since the champion's data")
    first = breaches[0].day
    post = max(0, (window.train_end - max(first, window.train_start)).days)
    summary = f"{len(breaches)} breach(es) since {first}, latest {breaches[-1]}"
    if post < thresholds.min_post_drift_days:
        return Decision(
            False,
            f"{summary}; waiting: the newest mature training window "
            f"({window.train_start}..{window.train_end - timedelta(days=1)}) holds {post} day(s) "
            f"from the first breach, {thresholds.min_post_drift_days} needed",
            breaches, first, post,
        )
    return Decision(
        True,
        f"{summary}; the newest mature training window holds {post} day(s) from it",
        breaches, first, post, key=f"{champion_version}-{first.isoformat()}",
    )
