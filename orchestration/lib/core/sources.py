"""A source system's contract in the declaration: its files, its columns (types, rules, personal
data and their pseudonyms) and its key; and how online staging stages its rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from orchestration.lib.core.schema import Identifier, Strict

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
             "nullable": c.nullable, "description": c.description}
            for c in source.columns
        ],
        "dates": dict(derived_dates),
    }
