"""Performance metrics of a detector (Fraud Detection Handbook, ch. 4) and their figures.

Threshold-free: AUC ROC and Average Precision (scikit-learn's). Operational: the handbook's Card
Precision top-k for any entity, the share of positive entities among the ``k`` entities a team
can check per day. The day and entity columns are the caller's (a use case's declaration).
Figures are rendered to PNG bytes with matplotlib's Agg canvas (no pyplot, no display).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import Metric, UseCase

DEFAULT_TOP_K = 100
"""Cards investigators can check per day (the handbook's k)."""

METRICS = ("auc_roc", "average_precision", "card_precision_top_k")
"""The metrics of :class:`Performance`, by attribute name."""


@dataclass(frozen=True)
class CardPrecision:
    """Card Precision top-k over a test window."""

    per_day: list[float]
    """CP@k of each test day, in date order."""
    compromised_cards_per_day: list[int]
    """Compromised cards left to find each day (after removing those detected earlier)."""
    mean: float
    """The metric: mean of ``per_day``."""


@dataclass(frozen=True)
class Performance:
    """The handbook's three metrics for one test window."""

    auc_roc: float
    average_precision: float
    card_precision_top_k: float
    top_k: int = DEFAULT_TOP_K

    def as_dict(self) -> dict[str, float]:
        """Metric name -> value, e.g. for run metadata (``card_precision_at_100``)."""
        return {
            "auc_roc": self.auc_roc,
            "average_precision": self.average_precision,
            f"card_precision_at_{self.top_k}": self.card_precision_top_k,
        }


def card_precision_top_k(
    days: ArrayLike,
    keys: ArrayLike,
    y_true: ArrayLike,
    scores: ArrayLike,
    top_k: int = DEFAULT_TOP_K,
    remove_detected: bool = True,
) -> CardPrecision:
    """Card Precision top-k, computed exactly as the handbook's ``card_precision_top_k``.

    ``days`` and ``keys`` are each row's day and entity key (a card's, in the handbook).
    For each day in date order: each card gets the highest score of its payments that day and
    counts as compromised if any of its payments that day is a fraud; the ``top_k`` cards by
    score are alerted; CP@k(day) = compromised cards among them / ``top_k`` (also when fewer
    than ``top_k`` cards paid that day). With ``remove_detected``, compromised cards alerted on
    a day are dropped from the following days (investigators have blocked them). The result is
    the mean over days. Ties in score are broken by card key, so the metric is deterministic.
    """
    days = np.asarray(days)
    fraud = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=float)
    # card indexes in key order: a stable sort on score then breaks ties by card key
    card_keys, card_of_row = np.unique(np.asarray(keys), return_inverse=True)
    n_cards = len(card_keys)
    detected = np.zeros(n_cards, dtype=bool)
    per_day: list[float] = []
    compromised_per_day: list[int] = []
    for day in np.unique(days):
        rows = (days == day) & ~detected[card_of_row]
        cards = card_of_row[rows]
        card_score = np.full(n_cards, -np.inf)
        np.maximum.at(card_score, cards, scores[rows])
        compromised = np.zeros(n_cards, dtype=bool)
        compromised[cards[fraud[rows]]] = True
        paid = np.unique(cards)
        alerted = paid[np.argsort(-card_score[paid], kind="stable")[:top_k]]
        found = alerted[compromised[alerted]]
        per_day.append(len(found) / top_k)
        compromised_per_day.append(int(compromised.sum()))
        if remove_detected:
            detected[found] = True
    mean = float(np.mean(per_day)) if per_day else math.nan
    return CardPrecision(per_day=per_day, compromised_cards_per_day=compromised_per_day, mean=mean)


def performance(
    test: pd.DataFrame,
    scores: ArrayLike,
    *,
    day: str,
    entity: str,
    label: str = "label",
    top_k: int = DEFAULT_TOP_K,
) -> Performance:
    """AUC ROC, Average Precision and CP@k of ``scores`` on a test frame.

    ``test`` needs the ``day`` column, the ``entity``'s key column CP@k ranks each day, and the
    ``label`` column. AUC ROC and AP are NaN when the window holds a single class (they are
    undefined then).
    """
    y_true = test[label].to_numpy()
    scores = np.asarray(scores, dtype=float)
    both_classes = len(np.unique(y_true)) == 2
    return Performance(
        auc_roc=float(roc_auc_score(y_true, scores)) if both_classes else math.nan,
        average_precision=(
            float(average_precision_score(y_true, scores)) if both_classes else math.nan
        ),
        card_precision_top_k=card_precision_top_k(
            test[day], test[entity], y_true, scores, top_k=top_k
        ).mean,
        top_k=top_k,
    )


def evaluate(
    test: pd.DataFrame,
    scores: ArrayLike,
    metrics: Mapping[str, Metric],
    label: str,
    day_column: str,
    entities: Mapping[str, str],
) -> dict[str, float]:
    """Each declared metric of ``scores`` on a test frame, by its declared name.

    ``entities`` maps an entity name to its key column (``data.entities``); an
    ``entity_precision_at_k`` metric ranks that entity each ``day_column`` day. A threshold-free
    metric is NaN when the window holds a single class (it is undefined then).
    """
    y_true = test[label].to_numpy()
    scores = np.asarray(scores, dtype=float)
    both_classes = len(np.unique(y_true)) == 2
    values: dict[str, float] = {}
    for name, metric in metrics.items():
        if metric.kind == "entity_precision_at_k":
            values[name] = card_precision_top_k(
                test[day_column], test[entities[metric.entity]], y_true, scores, top_k=metric.k
            ).mean
        elif not both_classes:
            values[name] = math.nan
        else:
            values[name] = float(_THRESHOLD_FREE[metric.kind](y_true, scores))
    return values


_THRESHOLD_FREE = {"auc_roc": roc_auc_score, "average_precision": average_precision_score}


@dataclass(frozen=True)
class Scorecard:
    """A use case's declared metrics, ready to measure a test window (:func:`evaluate`)."""

    metrics: Mapping[str, Metric]
    day: str
    """The rows' day column: an entity precision ranks each day."""
    entities: Mapping[str, str]
    """Entity name -> its key column."""

    @property
    def names(self) -> list[str]:
        return list(self.metrics)

    def higher_is_better(self, name: str) -> bool:
        return self.metrics[name].higher_is_better

    def __call__(
        self, test: pd.DataFrame, scores: ArrayLike, label: str = "label"
    ) -> dict[str, float]:
        return evaluate(test, scores, self.metrics, label, self.day, self.entities)

    @classmethod
    def declared(cls, usecase: UseCase) -> Scorecard:
        """The metrics a use case declares, on its table's day and entity columns."""
        return cls(usecase.metrics, usecase.data.partition_date, usecase.data.entities)

    def line(self, values: Mapping[str, float]) -> str:
        """The values in one line, for a log."""
        return ", ".join(f"{name} {value:.3f}" for name, value in values.items())


def alert_threshold_for_budget(
    scores_by_day: Mapping[object, ArrayLike] | Iterable[ArrayLike], alerts_per_day: float
) -> float:
    """The lowest score threshold that raises at most ``alerts_per_day`` alerts a day on average.

    An alert is raised for every score ``>= threshold``. Over the ``n`` days given, the budget
    is ``floor(alerts_per_day * n)`` alerts in total; the threshold is the smallest observed
    score whose alerts fit in it. Tied scores are alerted together, so a tie that would
    overflow the budget is left out entirely (the budget is never exceeded). When even the
    highest score does not fit, the threshold lies just above it (no alerts). Pass one score
    per card and day (its highest) to budget card alerts rather than payment alerts.
    """
    days = list(scores_by_day.values() if isinstance(scores_by_day, Mapping) else scores_by_day)
    if not days:
        raise ValueError("scores_by_day is empty")
    if alerts_per_day < 0:
        raise ValueError("alerts_per_day cannot be negative")
    scores = np.concatenate([np.asarray(day, dtype=float).ravel() for day in days])
    if scores.size == 0:
        raise ValueError("scores_by_day holds no scores")
    budget = math.floor(alerts_per_day * len(days))
    values, counts = np.unique(scores, return_counts=True)
    alerts_at_or_above = np.cumsum(counts[::-1])[::-1]
    fits = np.flatnonzero(alerts_at_or_above <= budget)
    if fits.size == 0:
        return float(np.nextafter(values[-1], np.inf))
    return float(values[fits[0]])


def card_scores_by_day(
    days: ArrayLike, keys: ArrayLike, scores: ArrayLike
) -> dict[object, np.ndarray]:
    """Each entity's (card's) highest score of each day, by day: the input to budget alerts
    on entities rather than rows. ``days`` and ``keys`` are each row's day and entity key."""
    frame = pd.DataFrame({"day": np.asarray(days), "card": np.asarray(keys)})
    frame["score"] = np.asarray(scores, dtype=float)
    best = frame.groupby(["day", "card"], sort=True)["score"].max()
    return {day: group.to_numpy() for day, group in best.groupby(level="day", sort=True)}


def roc_pr_figure(y_true: ArrayLike, scores: ArrayLike) -> bytes:
    """ROC and precision-recall curves side by side, as PNG bytes."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=float)
    fpr, tpr, _ = roc_curve(y_true, scores)
    precision, recall, _ = precision_recall_curve(y_true, scores)
    fraud_rate = float(np.mean(y_true))

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    roc_axes, pr_axes = figure.subplots(1, 2)
    roc_axes.plot(fpr, tpr, label=f"AUC ROC = {roc_auc_score(y_true, scores):.3f}")
    roc_axes.plot([0, 1], [0, 1], "r--", label="Random = 0.500")
    roc_axes.set(
        title="ROC curve",
        xlabel="False positive rate",
        ylabel="True positive rate",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    pr_axes.step(
        recall, precision, where="post", label=f"AP = {average_precision_score(y_true, scores):.3f}"
    )
    pr_axes.plot([0, 1], [fraud_rate, fraud_rate], "r--", label=f"Random = {fraud_rate:.3f}")
    pr_axes.set(
        title="Precision-recall curve",
        xlabel="Recall",
        ylabel="Precision",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
    )
    for axes in (roc_axes, pr_axes):
        axes.legend(loc="lower right" if axes is roc_axes else "upper right")
        axes.grid(alpha=0.3)
    return _png(figure)


def importance_figure(importances: pd.Series) -> bytes:
    """Horizontal bars of feature importances (largest on top), as PNG bytes."""
    ordered = importances.sort_values()
    figure = Figure(figsize=(7, 0.35 * len(ordered) + 1.2), layout="constrained")
    axes = figure.subplots()
    axes.barh(ordered.index.astype(str), ordered.to_numpy())
    axes.set(title="Feature importance", xlabel=importances.name or "importance")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
