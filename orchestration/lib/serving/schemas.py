"""The bodies an online service takes, built from the declaration: a request to score carries the
events' source contract (its columns under their request names), a label the label source's.
Each column's type and rules become the field's type and checks (a card number: digits of the
right length passing Luhn; a timestamp: local, without a time zone; an amount: finite, >= 0),
its description the field's in the OpenAPI page. Unknown fields are refused and an error never
echoes the input (it may hold personal data).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)

from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid

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
        return Annotated[float, Field(ge=0 if "non_negative" in rules else None,
                                      allow_inf_nan="finite" not in rules)]
    if "pan" in rules:
        return Annotated[Digits, Field(min_length=PAN_LENGTH, max_length=PAN_LENGTH),
                         AfterValidator(_luhn)]
    if "digits" in rules:
        return Annotated[Digits, Field(min_length=1)]
    return Annotated[str, Field(min_length=1)]


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
