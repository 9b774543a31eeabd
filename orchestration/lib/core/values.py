"""A value of a source contract's column, typed and checked against what one value can break:
its type, its rules and its declared bounds. The online service stages requests with it, and a
declaration's example request is checked with it when the declaration loads, so the example is
always one the service takes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from orchestration.lib.core.sources import MAX_STRING_LENGTH
from orchestration.lib.quality.personal_data import generic_personal_data

YEARS = (1900, 2199)
"""Years a timestamp may have: feature windows reach back from it, and a year-1 one would
overflow (a client's error, answered 4xx, not a crash)."""


def _timestamp(value: datetime | str) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        raise ValueError(f"timestamp {value!r} has a time zone; the contract's are local, naive")
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise ValueError(f"timestamp {value!r} is outside the years {YEARS[0]}-{YEARS[1]}")
    return datetime(*when.timetuple()[:6], when.microsecond)  # a plain datetime, not a subclass


def _date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def typed_value(name: str, column: Mapping[str, Any], value: Any, checked: bool = True) -> Any:
    """``value`` as the contract ``column``'s type, checked against what a single row can break:
    its rules and its declared bounds. ``checked=False`` only types it: a row accepted before
    (a log replayed at a restart) is never refused later by a contract tightened since."""
    if not checked:
        column = {k: column[k] for k in ("type", "nullable") if k in column}
    if value is None:
        if column.get("nullable", False):
            return None
        raise ValueError(f"{name} is missing")
    kind, rules = column["type"], column.get("rules", ())
    if kind == "timestamp":
        try:
            return _timestamp(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    if kind == "date":
        return _date(value)
    if kind == "double":
        number = float(value)
        if "finite" in rules and not math.isfinite(number):
            raise ValueError(f"{name} {value!r} is not finite")
        if "non_negative" in rules and not number >= 0:
            raise ValueError(f"{name} {value!r} is negative")
        if column.get("min") is not None and not number >= column["min"]:
            raise ValueError(f"{name} {value!r} is below {column['min']:g}")
        if column.get("max") is not None and not number <= column["max"]:
            raise ValueError(f"{name} {value!r} is above {column['max']:g}")
        return number
    text = str(value)
    if "digits" in rules and not text.isdigit():
        raise ValueError(f"{name} {value!r} is not digits")
    if len(text) > column.get("max_length", MAX_STRING_LENGTH):
        raise ValueError(f"{name} is longer than {column.get('max_length', MAX_STRING_LENGTH)} "
                         "characters")
    if column.get("pattern") and re.fullmatch(column["pattern"], text, re.ASCII) is None:
        raise ValueError(f"{name} is not of the shape {column['pattern']}")  # no echo: it
        # may look like a card number
    if checked and not column.get("pii") and (kind := generic_personal_data(text)) is not None:
        raise ValueError(f"{name} looks like personal data ({kind}): this field never holds it")
    return text
