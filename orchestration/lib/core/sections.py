"""The declaration's own sections: where a model's rows come from (data), the label, the
feature lists, the validation protocol, the decision budget, serving and monitoring. The sources,
the models and the declared features have modules of their own."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from orchestration.lib.core.feature_declaration import DeclaredFeatures
from orchestration.lib.core.schema import Duration, Identifier, Strict


class Data(Strict):
    """Where a model's rows come from and what identifies them."""

    table: Identifier
    """The mart a model learns from and is tested on: one row per decision, with its label."""
    features_table: Identifier
    """The mart of every decision's features, without the label: what batch scoring scores and
    what monitoring compares the served features with."""
    row_id: Identifier
    event_time: Identifier
    """When the event happened: rows are ordered by it."""
    partition_date: Identifier
    """The event's day: the daily partition and the unit of the validation windows."""
    entities: dict[Identifier, Identifier] = Field(min_length=1)
    """Entity name -> its key column in ``table`` (metrics and budgets name the entity)."""


class Label(Strict):
    column: Identifier
    known_at: Identifier
    """The date the label became known: a label is usable on day d iff it is before d."""
    source: Identifier
    """The source whose newest ingested partition says how far the labels are known."""
    maturity: Duration
    """How long after its event a label can still arrive: a day's labels are final after it."""
    time: Identifier | None = None
    """The label source's timestamp column whose day is ``known_at`` (online staging derives
    ``known_at`` from it; required for online serving)."""


def _flatten(value: Any) -> Any:
    if isinstance(value, list):
        return [item for part in value for item in (part if isinstance(part, list) else [part])]
    return value


FeatureList = Annotated[list[Identifier], BeforeValidator(_flatten)]


class Features(Strict):
    declared: DeclaredFeatures | None = None
    """The features serving computes, declared once: dbt renders them into the feature mart and
    the online path reads the same declaration (``feature_declaration``)."""
    train_on: FeatureList = Field(min_length=1)
    """The columns of ``data.table`` the production model trains on (a list may include
    another by its YAML anchor)."""
    baseline: FeatureList = []
    """A reference feature set (benchmarks compare the production set with it)."""

    @field_validator("train_on")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"features listed twice: {repeated}")
        return names


class Protocol(Strict):
    """Prequential validation: train, skip ``delay``, test; ``folds`` times, ``fold_step`` apart."""

    train: Duration
    delay: Duration
    test: Duration
    folds: int = Field(ge=1)
    fold_step: Duration
    exclude_known_positives: Identifier | None = None
    """An entity (of ``data.entities``) whose rows leave a test day once one of its rows is a
    known positive before that day (the handbook drops the payments of cards already known
    compromised: investigators would have blocked them); None keeps every test row."""

    @model_validator(mode="after")
    def _positive(self) -> Protocol:
        for name in ("train", "test", "fold_step"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than zero")
        if self.delay < timedelta(0):
            raise ValueError("delay cannot be negative")
        return self


class DecisionBudget(Strict):
    per_day: float = Field(ge=0)
    """Positive decisions (alerts, retention calls) a day; the threshold is chosen for it."""
    entity: Identifier | None = None
    """The entity (of ``data.entities``) a day's list ranks, each by its riskiest row (the
    investigation queue of cards, the retention list of accounts); None ranks rows."""


class Request(Strict):
    """What a scoring request carries: the columns of the events' source contract, some under
    another name."""

    rename: dict[Identifier, Identifier] = {}
    """Contract column -> the request's field for it."""
    example: dict[Identifier, str | int | float] = {}
    """A request to try, as ``blueprint serve`` shows it: a value for each field but the event
    time and personal data, which the command fills in (none declared: no example)."""


class Serving(Strict):
    mode: Literal["online", "batch", "both"]
    score: Identifier = "score"
    """The name of the score in answers, batch scores and monitoring (``fraud_probability``)."""
    request: Request = Request()
    forward_skew: Duration = timedelta(days=1)
    """How far after the service's clock an event may be (a later one is refused, 422)."""
    back_window: Duration = timedelta(days=1)
    """How far before the service's clock an event may be (an earlier one is refused)."""

    @property
    def online(self) -> bool:
        return self.mode in ("online", "both")


class Decay(Strict):
    metric: Identifier
    drop: float = Field(ge=0)
    """How far a day's realized metric may fall below the champion's test value."""


class Monitoring(Strict):
    traffic: Literal["prediction_log", "batch_scores"]
    """What monitoring reads: the service's prediction log or the batch scores."""
    drift_share_threshold: float = Field(gt=0, le=1)
    decay: Decay
    retrain_on_prediction_drift: bool = True
    min_post_drift_days: int = Field(ge=0)
