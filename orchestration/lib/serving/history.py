"""Where the online feature store keeps the staged history its features are computed from: the
events scored (by row id, and by each entity key in time order) and their labels.

:class:`HistoryBackend` is the small interface the store needs; :class:`InProcessHistory` is its
one backend here (dicts in the service's memory, the events also as Arrow columns for handing the
SQL many rows at once). A shared backend (Redis, issue "Real-time at scale") implements the same
interface; the store's cache of entity-day rows and its invalidation stay per process for now,
so several workers sharing a history also need that cache shared or invalidated across them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np
import pyarrow as pa


class HistoryBackend(Protocol):
    """The staged events and labels of an online store, found by row id and by entity key."""

    def event(self, row_id: str) -> tuple | None:
        """The staged event ``row_id`` (a row in the events' schema), if known."""

    def add_event(self, row: tuple) -> None:
        """Add an event (a row in the events' schema) the history does not have."""

    def extend_events(self, table: pa.Table) -> None:
        """Add many events at once (a snapshot's)."""

    def between(self, key_column: str, key: str, start: datetime, end: datetime) -> list[str]:
        """Ids of the events of ``key`` from ``start`` to ``end`` included, in time order."""

    def keys(self, key_column: str) -> list[str]:
        """Every key of ``key_column`` the history has events of."""

    def take(self, row_ids: Iterable[str]) -> pa.Table:
        """The staged events ``row_ids``, in that order, as an Arrow table."""

    def events(self) -> list[tuple]:
        """Every staged event."""

    def label(self, row_id: str) -> tuple | None:
        """The staged label of event ``row_id``, if known."""

    def set_label(self, row_id: str, row: tuple) -> None:
        """Keep ``row`` as the label of event ``row_id`` (replacing any)."""

    def labels(self) -> list[tuple]:
        """Every staged label."""

    @property
    def n_events(self) -> int: ...

    @property
    def n_labels(self) -> int: ...


class KeyHistory:
    """The events of one key, in time order."""

    __slots__ = ("times", "ids")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.ids: list[str] = []

    def add(self, when: datetime, row_id: str) -> None:
        at = bisect_right(self.times, when)
        self.times.insert(at, when)
        self.ids.insert(at, row_id)

    def between(self, start: datetime, end: datetime) -> list[str]:
        return self.ids[bisect_left(self.times, start) : bisect_right(self.times, end)]


class HistoryColumns:
    """Staged rows kept as Arrow columns, gathered by id: what the SQL stages read.

    Handing DuckDB an entity's history as Python tuples means building Arrow arrays from Python
    objects on every request; a gather from columns built once is a copy in C. The rows added
    since the last compaction stay tuples (converted when gathered) until :data:`COMPACT_ROWS`
    of them are merged into the columns at once.
    """

    COMPACT_ROWS = 4096

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._columns = schema.empty_table()
        self._recent: list[tuple] = []
        self._position: dict[str, int] = {}
        """Each id's row: in the columns below their length, in ``_recent`` from it."""

    def extend(self, table: pa.Table, ids: Sequence[str]) -> None:
        """Add the rows of ``table`` (ids the columns do not have yet)."""
        self._compact()
        start = self._columns.num_rows
        self._position.update(zip(ids, range(start, start + len(ids)), strict=True))
        self._columns = pa.concat_tables([self._columns, table.select(self.schema.names)])
        self._columns = self._columns.combine_chunks()

    def append(self, row_id: str, row: tuple) -> None:
        self._position[row_id] = self._columns.num_rows + len(self._recent)
        self._recent.append(row)
        if len(self._recent) >= self.COMPACT_ROWS:
            self._compact()

    def take(self, ids: Iterable[str]) -> pa.Table:
        """The rows of ``ids``, in that order."""
        positions = np.fromiter(map(self._position.__getitem__, ids), dtype=np.int64)
        stored = self._columns.num_rows
        recent = positions >= stored
        if not recent.any():
            return self._columns.take(positions)
        parts = pa.concat_tables([
            self._columns.take(positions[~recent]),
            rows_table([self._recent[p - stored] for p in positions[recent]], self.schema),
        ])
        # back into the order asked: the stored rows came first, then the recent ones
        order = np.concatenate([np.flatnonzero(~recent), np.flatnonzero(recent)])
        return parts.take(np.argsort(order, kind="stable"))

    def _compact(self) -> None:
        if self._recent:
            self._columns = pa.concat_tables(
                [self._columns, rows_table(self._recent, self.schema)]
            ).combine_chunks()
            self._recent = []


class InProcessHistory:
    """:class:`HistoryBackend` in this process's memory (one service worker's own history).

    ``row_id``, ``event_time`` and ``key_columns`` name the events' columns it finds them by.
    """

    def __init__(
        self, events_schema: pa.Schema, row_id: str, event_time: str, key_columns: Sequence[str]
    ) -> None:
        names = events_schema.names
        self._id, self._time = names.index(row_id), names.index(event_time)
        self._keys = {column: names.index(column) for column in key_columns}
        self._events: dict[str, tuple] = {}
        self._columns = HistoryColumns(events_schema)
        self._by_key: dict[str, dict[str, KeyHistory]] = {c: {} for c in key_columns}
        self._labels: dict[str, tuple] = {}

    def event(self, row_id: str) -> tuple | None:
        return self._events.get(row_id)

    def add_event(self, row: tuple) -> None:
        self._columns.append(row[self._id], row)
        self._index(row)

    def extend_events(self, table: pa.Table) -> None:
        rows = table_rows(table)
        self._columns.extend(table, [row[self._id] for row in rows])
        for row in rows:
            self._index(row)

    def _index(self, row: tuple) -> None:
        row_id, when = row[self._id], row[self._time]
        self._events[row_id] = row
        for column, position in self._keys.items():
            self._by_key[column].setdefault(row[position], KeyHistory()).add(when, row_id)

    def between(self, key_column: str, key: str, start: datetime, end: datetime) -> list[str]:
        history = self._by_key[key_column].get(key)
        return [] if history is None else history.between(start, end)

    def keys(self, key_column: str) -> list[str]:
        return list(self._by_key[key_column])

    def take(self, row_ids: Iterable[str]) -> pa.Table:
        return self._columns.take(row_ids)

    def events(self) -> list[tuple]:
        return list(self._events.values())

    def label(self, row_id: str) -> tuple | None:
        return self._labels.get(row_id)

    def set_label(self, row_id: str, row: tuple) -> None:
        self._labels[row_id] = row

    def labels(self) -> list[tuple]:
        return list(self._labels.values())

    @property
    def n_events(self) -> int:
        return len(self._events)

    @property
    def n_labels(self) -> int:
        return len(self._labels)


def table_rows(table: pa.Table) -> list[tuple]:
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def rows_table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )
