"""The bodies an online service takes and gives, built from the declaration: a request to score
carries the events' source contract (its columns under their request names), a label the label
source's; an answer names the event by its row id and the score by the declared name.
Each column's type and rules become the field's type and checks (a card number: digits of the
right length passing Luhn; a timestamp: local, without a time zone; an amount: finite, within
its declared range; an id: its declared shape; any string: at most its declared length),
its description the field's in the OpenAPI page. Unknown fields are refused and an error never
echoes the input (it may hold personal data).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
    create_model,
)

from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid
from orchestration.lib.core.sources import MAX_STRING_LENGTH
from orchestration.lib.serving.served import ServedColumns

if TYPE_CHECKING:
    from orchestration.lib.serving.scoring import ScoringModel

MODEL_CONFIG = ConfigDict(extra="forbid", hide_input_in_errors=True, strict=True)
"""Unknown fields are refused; errors never echo the input (it may hold a card number)."""

Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]


def _local_time(value: datetime) -> datetime:
    if value.tzinfo is not None:
        raise ValueError("must be local time without a time zone")
    return value


def _luhn(value: str) -> str:
    if not luhn_valid(value):
        raise ValueError("fails the Luhn check")
    return value


def _field_type(column: Mapping[str, Any]) -> Any:
    """The field's type with the checks of the column's type and rules."""
    kind, rules = column["type"], set(column["rules"])
    if kind == "timestamp":
        return Annotated[datetime, AfterValidator(_local_time)]
    if kind == "date":
        return date
    if kind == "double":
        lowest = column.get("min")
        if "non_negative" in rules:
            lowest = max(0.0, lowest or 0.0)
        return Annotated[float, Field(ge=lowest, le=column.get("max"),
                                      allow_inf_nan="finite" not in rules)]
    longest = column.get("max_length", MAX_STRING_LENGTH)
    if "pan" in rules:
        return Annotated[Digits, Field(min_length=PAN_LENGTH, max_length=PAN_LENGTH),
                         AfterValidator(_luhn)]
    # (a field that is not personal data holding some is refused by staging's `typed_value`,
    # once per request: the same check here would run the scan's patterns twice)
    shape = [AfterValidator(_shape(column["pattern"]))] if column.get("pattern") else []
    if "digits" in rules:
        return Annotated[Digits, Field(min_length=1, max_length=longest), *shape]
    return Annotated[str, Field(min_length=1, max_length=longest), *shape]


def _shape(pattern: str) -> Callable[[str], str]:
    """A check that a string has the declared shape (the whole value matches ``pattern``)."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise ValueError(f"not of the shape {pattern}")
        return value

    return check


def body_model(name: str, doc: str, staging: Mapping[str, Any]) -> type[BaseModel]:
    """A request body holding one row of a source, from its staging spec (the resolved
    declaration's ``staging["events"]`` or ``staging["labels"]``)."""
    fields: dict[str, Any] = {}
    for column in staging["columns"]:
        description = column.get("description") or f"{column['name']} ({column['type']})"
        kind = _field_type(column)
        if column.get("nullable"):
            fields[column["field"]] = (kind | None, Field(default=None, description=description))
        else:
            fields[column["field"]] = (kind, Field(description=description))
    model = create_model(name, __config__=MODEL_CONFIG, **fields)
    model.__doc__ = doc
    return model


def batch_model(
    name: str, doc: str, field: str, item: type[BaseModel], max_items: int, description: str
) -> type[BaseModel]:
    """A body of 1 to ``max_items`` rows under ``field``."""
    model = create_model(
        name, __config__=MODEL_CONFIG,
        **{field: (list[item], Field(min_length=1, max_length=max_items,
                                     description=description))},
    )
    model.__doc__ = doc
    return model


class Reason(BaseModel):
    """A feature that pushed the score up."""

    feature: str = Field(description="A feature of the feature mart.")
    value: float | None = Field(description="Its value for this event (null: no history).")
    contribution: float = Field(
        description="How much it pushed the score up, compared with the training mean "
        "(logistic regression: log-odds; other models: probability)."
    )


class LabelsAdded(BaseModel):
    changed: int = Field(description="Labels that changed the online state (new or earlier).")


@dataclass(frozen=True)
class ServiceSchemas:
    """Every body of an online use case's service: the event to score and a batch of them, the
    label and a batch of them, the answer to one event and to a batch."""

    columns: ServedColumns
    event: type[BaseModel]
    events: type[BaseModel]
    label: type[BaseModel]
    labels: type[BaseModel]
    score: type[BaseModel]
    scores: type[RootModel]
    top_reasons: int

    @classmethod
    def declared(cls, columns: ServedColumns, max_batch: int, top_reasons: int) -> ServiceSchemas:
        """``max_batch``: the most events or labels in one request."""
        event = body_model(
            "Event", f"One row of the {columns.events_source} source, as its contract declares "
            "it: what the service scores.", columns.staging["events"],
        )
        label = body_model(
            "Label", f"One row of the {columns.label_source} source, as its contract declares "
            "it: a label of an event.", columns.staging["labels"],
        )
        score = create_model(
            "Score",
            **{
                columns.row_field: (str, Field(description="The event's id, as sent.")),
                columns.score: (float, Field(description="The champion's score of the event.")),
                "alert": (bool, Field(description="Whether the score reaches the champion's "
                                      "alert threshold.")),
                "model_version": (str, Field(description="The registry version of the model "
                                             "that scored it.")),
                "reasons": (list[Reason], Field(description=f"The top {top_reasons} reason "
                                                "codes.")),
            },
        )
        score.__doc__ = "The verdict on one event."
        scores = create_model("Scores", __base__=RootModel[list[score]])  # type: ignore[valid-type]
        scores.__doc__ = "The verdicts of a batch, in the order of the request."
        return cls(
            columns=columns,
            event=event,
            events=batch_model(
                "EventBatch", "Several events scored in one request (events at the same instant "
                "count for each other, as offline).", columns.events_source, event, max_batch,
                f"1 to {max_batch} events (BLUEPRINT_SERVING_MAX_BATCH).",
            ),
            label=label,
            labels=batch_model(
                "LabelBatch", "Labels known since the serving snapshot (it brings them too once "
                "published).", columns.label_source, label, max_batch,
                f"1 to {max_batch} labels.",
            ),
            score=score,
            scores=scores,
            top_reasons=top_reasons,
        )

    def batch_events(self, batch: BaseModel) -> list[BaseModel]:
        return getattr(batch, self.columns.events_source)

    def batch_labels(self, batch: BaseModel) -> list[BaseModel]:
        return getattr(batch, self.columns.label_source)

    def answers(self, model: ScoringModel, rows: Sequence[Mapping[str, Any]]) -> list[BaseModel]:
        """The answers to events, from their feature mart rows: the champion's score, alert and
        reason codes, in one ``score_and_explain`` call."""
        scores, explanations = model.score_and_explain(pd.DataFrame(list(rows)), self.top_reasons)
        return [
            self.score(**{
                self.columns.row_field: row[self.columns.row_id],
                self.columns.score: float(score),
                "alert": bool(alert),
                "model_version": model.version,
                "reasons": [
                    Reason(feature=r.feature, value=_finite(r.value), contribution=r.contribution)
                    for r in reasons
                ],
            })
            for row, score, alert, reasons in zip(
                rows, scores, model.alerts(scores), explanations, strict=True
            )
        ]


def _finite(value: float) -> float | None:
    return value if value == value else None  # NaN (a missing feature) is null in JSON
