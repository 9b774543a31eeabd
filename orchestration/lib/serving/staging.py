"""A request staged as the use case's dbt staging models stage a delivered row, from the
declaration: the source contract's columns typed and checked, personal data replaced by its keyed
pseudonym (or dropped), the day of a timestamp for each derived date column.

:class:`RowStaging` is built from the resolved declaration's ``staging`` (one for the events
scored, one for their labels) and the staged model's columns (the serving snapshot's): a staged
column it cannot produce is an error at start-up, except lineage columns (``_source_file``...),
which an online row does not have.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from orchestration.lib.core.sources import MAX_STRING_LENGTH
from orchestration.lib.features.pseudonymize import pseudonymize


class RowConflictError(ValueError):
    """An event id the store knows arrived again with different content."""


class StagingError(Exception):
    """The staged model's columns are not what the declaration stages."""


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


def _typed(name: str, column: Mapping[str, Any], value: Any) -> Any:
    """``value`` as the contract ``column``'s type, checked against what a single row can break:
    its rules and its declared bounds."""
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
    if column.get("pattern") and re.fullmatch(column["pattern"], text) is None:
        raise ValueError(f"{name} is not of the shape {column['pattern']}")  # no echo: it
        # may look like a card number
    return text


def staged_columns(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns staging keeps of a source's row (a staging spec of the resolved
    declaration), without the dates it derives: personal data replaced by its pseudonym, or
    dropped."""
    return tuple(
        c["pseudonym"] if c["pii"] else c["name"]
        for c in spec["columns"] if c["pseudonym"] or not c["pii"]
    )


class RowStaging:
    """Stages one source's rows as its staging model does, in the staged model's column order."""

    def __init__(self, spec: Mapping[str, Any], table_columns: Sequence[str]) -> None:
        self._columns = list(spec["columns"])
        self._dates = dict(spec["dates"])
        self.columns = tuple(table_columns)
        produced = [*staged_columns(spec), *self._dates]
        self._lineage = [c for c in self.columns if c.startswith("_") and c not in produced]
        missing = sorted(set(self.columns) - set(produced) - set(self._lineage))
        extra = sorted(set(produced) - set(self.columns))
        if missing or extra:
            raise StagingError(
                f"the staged table has columns {list(self.columns)}; the declaration stages "
                f"{produced} (missing {missing}, not staged {extra}): the source contract and "
                "its dbt staging model disagree"
            )
        self._types: dict[str, Mapping[str, Any]] = {c["name"]: c for c in self._columns}
        self._types.update(
            {c["pseudonym"]: {"type": "string", "nullable": c.get("nullable", False)}
             for c in self._columns if c["pii"]}
        )
        self._types.update({d: {"type": "date"} for d in self._dates})
        self.fields = [c["field"] for c in self._columns]
        """What a request of this source carries."""

    def stage(self, values: Mapping[str, Any], key: bytes) -> tuple:
        """A request's row (the contract's columns under their request fields) as staged."""
        out: dict[str, Any] = {}
        for column in self._columns:
            value = values.get(column["field"])
            if column["pii"]:
                if column["pseudonym"]:
                    if value is None:
                        raise ValueError(f"{column['field']} is missing")
                    out[column["pseudonym"]] = pseudonymize(str(value), key)
                continue
            out[column["name"]] = _typed(column["field"], column, value)
        return self._finish(out)

    def restage(self, row: Mapping[str, Any]) -> tuple:
        """A row staged before (as the prediction log keeps it: pseudonyms, no personal data)
        as staged again, typed."""
        out = {}
        for name in self.columns:
            if name not in self._lineage and name not in self._dates:
                out[name] = _typed(name, self._types[name], row.get(name))
        return self._finish(out)

    def _finish(self, out: dict[str, Any]) -> tuple:
        for derived, source in self._dates.items():
            out[derived] = out[source].date()
        for lineage in self._lineage:
            out[lineage] = None  # lineage of the raw zone; an online row has no file
        return tuple(out[name] for name in self.columns)

    def is_lineage(self, column: str) -> bool:
        return column in self._lineage
