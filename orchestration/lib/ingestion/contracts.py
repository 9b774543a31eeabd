"""Schema contracts of the landing sources: one declaration per source, no code per source.

A contract says how a source names and encodes its files, which columns it delivers, their
types, nullability and value rules, and which column identifies a row.
`orchestration.lib.ingestion.ingest` enforces any contract generically. A use case declares its
sources (``sources:``); `orchestration.lib.ingestion.declared` turns each into a contract, so
adding a source is an edit of the declaration. Bump `version` whenever a contract changes: the
version is part of every raw snapshot's input fingerprint, so a new version re-ingests every
partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from orchestration.lib.core.sources import MAX_STRING_LENGTH

ColumnType = Literal["string", "double", "timestamp", "date"]
"""Contract types; in the raw zone: string, float64, timestamp[us] (naive), date32."""

TIMESTAMP_FORMAT = "YYYY-MM-DD HH:MM:SS"
DATE_FORMAT = "YYYY-MM-DD"


class Rule(StrEnum):
    """Value rules a column may declare, checked after its type parse succeeded."""

    DIGITS = "digits"
    """Only ASCII digits."""
    PAN = "pan"
    """A card number: exactly 16 ASCII digits passing the Luhn check."""
    FINITE = "finite"
    """A double that is neither NaN nor infinite."""
    NON_NEGATIVE = "non_negative"
    """A double >= 0."""
    ON_PARTITION_DATE = "on_partition_date"
    """A timestamp or date falling on the file's business date."""
    NOT_AFTER_PARTITION_DATE = "not_after_partition_date"
    """A timestamp or date on or before the file's business date."""


@dataclass(frozen=True)
class Column:
    """One column (CSV) or key (JSON lines) of a source."""

    name: str
    type: ColumnType = "string"
    nullable: bool = False
    """When False an empty value (empty CSV field, missing or null JSON value) is quarantined."""
    pii: bool = False
    """Personal data: quarantine reasons name the rule only, never the value."""
    rules: tuple[Rule, ...] = ()
    minimum: float | None = None
    """A double's lowest allowed value (inclusive)."""
    maximum: float | None = None
    """A double's highest allowed value (inclusive)."""
    pattern: str | None = None
    """A string's shape: a regular expression the whole value matches."""
    max_length: int = MAX_STRING_LENGTH
    """A string's longest value, in characters."""


@dataclass(frozen=True)
class SourceContract:
    """Everything ingestion needs to know about one source."""

    name: str
    """Source name: the landing folder, the raw folder and the file-name prefix."""
    version: int
    file_format: Literal["csv", "jsonl"]
    gzip: bool
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Columns identifying a row: of a key's rows, the last valid one delivered is kept (a
    correction); identical repeats are duplicates."""
    type_change_share: float = 0.5
    """A file where more than this share of a typed column's values fail the type parse is a
    schema change (the source changed the column's type), not a batch of malformed rows."""
    type_change_min_rows: int = 10
    """Files with fewer rows are too small to tell a type change from malformed rows: their
    failing rows are quarantined instead."""

    def __post_init__(self) -> None:
        names = self.column_names
        if len(set(names)) != len(names):
            raise ValueError(f"contract {self.name!r}: duplicate column names {names}")
        unknown = [k for k in self.key if k not in names]
        if not self.key or unknown:
            raise ValueError(f"contract {self.name!r}: key {self.key} is not a set of columns")
        if not 0 < self.type_change_share <= 1:
            raise ValueError(f"contract {self.name!r}: type_change_share must be in (0, 1]")
        for column in self.columns:
            numeric_rules = {Rule.FINITE, Rule.NON_NEGATIVE}
            date_rules = {Rule.ON_PARTITION_DATE, Rule.NOT_AFTER_PARTITION_DATE}
            string_rules = {Rule.DIGITS, Rule.PAN}
            allowed = {
                "string": string_rules,
                "double": numeric_rules,
                "timestamp": date_rules,
                "date": date_rules,
            }[column.type]
            if not set(column.rules) <= allowed:
                raise ValueError(
                    f"contract {self.name!r}: rules {column.rules} do not apply to "
                    f"{column.type} column {column.name!r}"
                )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def extension(self) -> str:
        """File extension without the leading dot, e.g. ``csv.gz``."""
        return self.file_format + (".gz" if self.gzip else "")
