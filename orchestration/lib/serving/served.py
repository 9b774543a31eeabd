"""What an online use case's service takes, answers and logs, from its declaration.

:class:`ServedColumns` names the columns the service works with: the staged event a prediction
log row keeps (the events' source contract as staging keeps it: pseudonyms, never personal
data), the features it was scored on, the score's name, the staged label a label log row keeps.
The service, the fast peer of the benchmarks, monitoring's traffic and the replay's restart all
read these names here, never a use case's literal.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.lib.core.usecase import UseCase
from orchestration.lib.serving.staging import staged_columns

FEATURES = "features"
"""The prediction log's field holding the feature values (an object), spread into
``features.<name>`` columns when read."""


def request_spec(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A staging spec's columns without their descriptions: what a request may carry and how
    it is staged (a description edited since a snapshot changes neither)."""
    return [{k: v for k, v in c.items() if k != "description"} for c in spec["columns"]]


@dataclass(frozen=True)
class ServedColumns:
    """The names an online use case's service works with."""

    usecase: str
    events_source: str
    """The source whose rows are scored: also the field of a batch of them."""
    label_source: str
    """The source of the labels the service is sent: also the field of a batch of them."""
    row_id: str
    row_field: str
    """The request field holding the row id (the answer names the row by it)."""
    event_time: str
    partition_date: str
    label_time: str
    label_known_at: str
    events: tuple[str, ...]
    """The staged event columns a prediction log row keeps (what a restart adds back)."""
    labels: tuple[str, ...]
    """The staged label columns a label log row keeps."""
    features: tuple[str, ...]
    score: str
    staging: Mapping[str, Any]
    """The resolved declaration's online staging (``events``, ``labels``)."""

    @classmethod
    def declared(cls, usecase: UseCase) -> ServedColumns:
        resolved = usecase.resolved_features()
        if resolved is None or not resolved.staging:
            raise ValueError(
                f"use case {usecase.name!r} is not served online: it declares no features "
                "with online staging (serving.mode online or both, features.declared)"
            )
        events, labels = resolved.staging["events"], resolved.staging["labels"]
        (known_at, label_time), = labels["dates"].items()
        row_field = next(c["field"] for c in events["columns"] if c["name"] == resolved.row_id)
        return cls(
            usecase=usecase.name,
            events_source=resolved.events,
            label_source=resolved.label_source,
            row_id=resolved.row_id,
            row_field=row_field,
            event_time=resolved.event_time,
            partition_date=resolved.partition_date,
            label_time=label_time,
            label_known_at=known_at,
            events=staged_columns(events),
            labels=staged_columns(labels),
            features=tuple(resolved.names),
            score=usecase.serving.score,
            staging=resolved.staging,
        )

    @functools.cached_property
    def time_field(self) -> str:
        """The request field of an event's time."""
        return _field(self.staging["events"], self.event_time)

    @functools.cached_property
    def label_time_field(self) -> str:
        """The request field of a label's time."""
        return _field(self.staging["labels"], self.label_time)

    @property
    def prediction_columns(self) -> tuple[str, ...]:
        """The fields of a prediction log row, in the order they are written."""
        return ("request_id", "logged_at", *self.events, "model_version", FEATURES, self.score,
                "alert")

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The fields of a label log row."""
        return ("request_id", "logged_at", *self.labels)

    def prediction_row(
        self,
        request_id: str,
        logged_at: datetime,
        event: Mapping[str, Any],
        features: Mapping[str, Any],
        model_version: str,
        score: float,
        alert: bool,
    ) -> dict[str, Any]:
        """A prediction log row: the staged ``event``, the feature mart's row ``features``."""
        return {
            "request_id": request_id,
            "logged_at": logged_at,
            **{column: event[column] for column in self.events},
            "model_version": model_version,
            FEATURES: {name: features[name] for name in self.features},
            self.score: score,
            "alert": alert,
        }

    def same_requests(self, staging: Mapping[str, Any]) -> bool:
        """Whether ``staging`` (a snapshot's) takes and stages requests as this declaration
        does (descriptions aside)."""
        def spec(source: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
            return request_spec(source), dict(source["dates"])

        empty = {"columns": [], "dates": {}}
        return all(spec(staging.get(kind) or empty) == spec(self.staging[kind])
                   for kind in ("events", "labels"))


def _field(spec: Mapping[str, Any], column: str) -> str:
    return next(c["field"] for c in spec["columns"] if c["name"] == column)
