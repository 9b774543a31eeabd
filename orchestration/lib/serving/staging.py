"""A request staged as the use case's dbt staging models stage a delivered row, from the
declaration: the source contract's columns typed and checked, personal data replaced by its keyed
pseudonym (or dropped), the day of a timestamp for each derived date column.

:class:`RowStaging` is built from the resolved declaration's ``staging`` (one for the events
scored, one for their labels) and the staged model's columns (the serving snapshot's): a staged
column it cannot produce is an error at start-up, except lineage columns (``_source_file``...),
which an online row does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestration.lib.core.values import typed_value
from orchestration.lib.features.pseudonymize import pseudonymize


class RowConflictError(ValueError):
    """An event id the store knows arrived again with different content."""


class UnprovenLabelError(ValueError):
    """A label that proves nothing of an event the service knows."""


class StagingError(Exception):
    """The staged model's columns are not what the declaration stages."""


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
        self.field_names = {(c["pseudonym"] if c["pii"] else c["name"]): c["field"]
                            for c in self._columns if c["pseudonym"] or not c["pii"]}
        """Each staged column's request field (a pseudonym's: its personal data's field)."""

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
            out[column["name"]] = typed_value(column["field"], column, value)
        return self._finish(out)

    def restage(self, row: Mapping[str, Any]) -> tuple:
        """A row staged before (as the prediction log keeps it: pseudonyms, no personal data)
        as staged again, typed."""
        out = {}
        for name in self.columns:
            if name not in self._lineage and name not in self._dates:
                out[name] = typed_value(name, self._types[name], row.get(name), checked=False)
        return self._finish(out)

    def _finish(self, out: dict[str, Any]) -> tuple:
        for derived, source in self._dates.items():
            out[derived] = out[source].date()
        for lineage in self._lineage:
            out[lineage] = None  # lineage of the raw zone; an online row has no file
        return tuple(out[name] for name in self.columns)


    def is_lineage(self, column: str) -> bool:
        return column in self._lineage
