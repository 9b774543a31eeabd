"""What every part of a use case's declaration is built from: the strict model base, identifiers,
durations (``7d``, ``12h``, ``30m``) and the error that names the file and the field."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*$")


class UseCaseError(ValueError):
    """A declaration that cannot be loaded: the message names the file and the field."""


def parse_duration(value: Any) -> timedelta:
    """``7d``, ``12h``, ``30m`` or combinations (``1d12h``); a bare integer is days."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int):
        return timedelta(days=value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration: write it as 7d, 12h, 30m or 1d12h")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def whole_days(duration: timedelta, field: str) -> int:
    """A duration in whole days, for what is counted in daily partitions."""
    if duration % timedelta(days=1):
        raise UseCaseError(f"{field} is {duration}: it must be a whole number of days here")
    return duration.days


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A name SQL and Python take unquoted: a table, a column, a field."""
Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
