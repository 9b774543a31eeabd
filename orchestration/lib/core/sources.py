"""A source system's contract in the declaration: its files, its columns (types, rules, personal
data and their pseudonyms) and its key; and how online staging stages its rows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from orchestration.lib.core.schema import Identifier, Strict

MAX_STRING_LENGTH = 256
"""A string column's longest value unless it declares another."""

ColumnType = Literal["string", "double", "timestamp", "date"]
ColumnRule = Literal["digits", "pan", "finite", "non_negative", "on_partition_date",
                     "not_after_partition_date"]


class SourceColumn(Strict):
    """One column (CSV) or key (JSON lines) a source delivers."""

    name: Identifier
    type: ColumnType = "string"
    nullable: bool = False
    pii: bool = False
    """Personal data: kept in the raw zone only, and searched for everywhere outside it."""
    rules: list[ColumnRule] = []
    min: float | None = None
    """A number's lowest allowed value (inclusive; a double column)."""
    max: float | None = None
    """A number's highest allowed value (inclusive; a double column). The GX suites' bounds on
    the column are these numbers (a test holds them together)."""
    pattern: str | None = None
    """The shape every value of a string column has, as a regular expression the whole value
    matches: its characters and length (an id's, say: ``[A-Za-z0-9_-]{1,64}``)."""
    max_length: int = Field(default=MAX_STRING_LENGTH, ge=1)
    """The longest value a string column takes, in characters: nothing is unbounded."""
    description: str | None = None
    """What the column holds, for a reader of the contract (and of an online service's API)."""
    pseudonym: Identifier | None = None
    """For personal data: the staged column that holds its keyed pseudonym instead (staging
    drops the value itself); online staging does the same."""

    @model_validator(mode="after")
    def _pseudonym_of_personal_data(self) -> SourceColumn:
        if self.pseudonym is not None and not self.pii:
            raise ValueError(f"column {self.name!r}: only personal data (pii) has a pseudonym")
        return self

    @model_validator(mode="after")
    def _bounds_of_its_type(self) -> SourceColumn:
        if (self.min is not None or self.max is not None) and self.type != "double":
            raise ValueError(f"column {self.name!r}: min and max apply to a double column")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is above max {self.max}")
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError(f"column {self.name!r}: a pattern applies to a string column")
            try:
                re.compile(self.pattern, re.ASCII)
                # ingestion matches with Arrow's RE2: a pattern it cannot run is refused here
                pc.match_substring_regex(pa.array([""]), f"^(?:{self.pattern})$")
            except (re.error, pa.ArrowInvalid) as error:
                raise ValueError(
                    f"column {self.name!r}: pattern {self.pattern!r}: {error}"
                ) from None
        return self

    @property
    def has_shape(self) -> bool:
        """Whether a string's characters and length are declared (a pattern, or a rule that
        fixes them): what an id needs."""
        return self.pattern is not None or "pan" in self.rules


class Source(Strict):
    """A source system's contract (``docs/DATA_CONTRACTS.md``): how its files are named and
    encoded, the columns they hold, and the key identifying a row."""

    version: int = Field(ge=1)
    """Bump on any change: every partition is then ingested again."""
    format: Literal["csv", "jsonl"]
    gzip: bool = False
    key: list[Identifier] = Field(min_length=1)
    columns: list[SourceColumn] = Field(min_length=1)
    type_change_share: float = Field(default=0.5, gt=0, le=1)
    type_change_min_rows: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Source:
        names = [column.name for column in self.columns]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"columns listed twice: {repeated}")
        unknown = [name for name in self.key if name not in names]
        if unknown:
            raise ValueError(f"key {unknown} is not among the columns")
        allowed = {
            "string": {"digits", "pan"},
            "double": {"finite", "non_negative"},
            "timestamp": {"on_partition_date", "not_after_partition_date"},
            "date": {"on_partition_date", "not_after_partition_date"},
        }
        for column in self.columns:
            wrong = sorted(set(column.rules) - allowed[column.type])
            if wrong:
                raise ValueError(f"rules {wrong} do not apply to {column.type} column "
                                 f"{column.name!r}")
        shapeless = [c.name for c in self.columns
                     if c.name in self.key and c.type == "string" and not c.has_shape]
        if shapeless:
            raise ValueError(f"key {shapeless}: an id declares its shape (a pattern of its "
                             f"characters and length, or the pan rule)")
        return self

    @property
    def pii_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.pii]


def row_staging(
    source: Source, derived_dates: Mapping[str, str], rename: Mapping[str, str]
) -> dict[str, Any]:
    """How online staging stages a row of ``source`` as its dbt staging model does: the contract's
    columns (personal data replaced by its pseudonym, or dropped), plus the day of a timestamp
    column for each derived date column; request fields renamed by ``rename``."""
    return {
        "columns": [
            {"name": c.name, "type": c.type, "rules": list(c.rules), "pii": c.pii,
             "pseudonym": c.pseudonym, "field": rename.get(c.name, c.name),
             "nullable": c.nullable, "description": c.description,
             "min": c.min, "max": c.max, "pattern": c.pattern, "max_length": c.max_length}
            for c in source.columns
        ],
        "dates": dict(derived_dates),
    }
