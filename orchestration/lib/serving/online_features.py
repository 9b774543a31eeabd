"""Online features: the row the feature mart would hold for an event, at request time, for any
use case whose features are declared (``features.declared``).

The store keeps the staged history (the events scored and their labels, as the staging models
hold them) in a :class:`~orchestration.lib.serving.history.HistoryBackend`, starting from a
serving snapshot, and adds every event it scores and every label it is given. Features come from
dbt's compiled SQL, rendered from the declaration and run unchanged in in-memory DuckDB databases
whose relations carry the names the SQL uses (``"<use case>"."main"."stg_<events>"``...): the
relations a model reads are views over per-request Arrow tables, the model is a view whose body
is its compiled SQL. The chain runs in two stages:

1. each day-clock group's model (what was known about an entity at the start of a day) is
   computed for every entity of its key at once, the first time a day is asked for, and kept.
   An entity-day's row only reads the entity's earlier days and labels known before the day, so
   it stays valid all day; a late label or a late event invalidates the rows it changes, which
   are computed again.
2. the feature mart runs per request over the event's entities' recent events (the event-clock
   groups' keys) and those cached entity-day rows.

Each stage hands the SQL only the history that can count (the declaration's horizons,
``ResolvedFeatures.history_starts``), so a request costs the same however long the store has
run. The only Python mirror of dbt is the staging of one incoming row (``staging.RowStaging``,
from the source contracts in the declaration); the store refuses a snapshot whose staged columns
or model chain differ from what it knows how to run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
)
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.serving.feature_sql import DayTable, build_stages
from orchestration.lib.serving.history import (
    HistoryBackend,
    InProcessHistory,
    rows_table,
    table_rows,
)
from orchestration.lib.serving.snapshot import SnapshotError, current_snapshot
from orchestration.lib.serving.staging import (
    RowConflictError,
    RowStaging,
    StagingError,
    UnprovenLabelError,
)
from orchestration.settings import pseudonymization_key

PROBE_ID_PREFIX = "~serving-probe~"
"""Id of the placeholder event that makes the SQL emit an entity-day row before the day's first
real event; placeholders only exist in stage 1's input, never in the history."""

HistoryFactory = Callable[[pa.Schema, str, str, Sequence[str]], HistoryBackend]
"""Makes a history backend: (events' schema, row id column, event time column, key columns)."""


class OnlineFeatureStore:
    """Staged history plus dbt's compiled feature SQL; thread-safe."""

    def __init__(
        self,
        definitions: FeatureDefinitions,
        events: pa.Table,
        labels: pa.Table,
        key: bytes,
        history: HistoryFactory = InProcessHistory,
    ) -> None:
        """Start from staged rows (normally via :meth:`from_snapshot`); ``history`` makes the
        backend that keeps them."""
        features = definitions.features
        if not features.staging:
            raise SnapshotError(f"{features.mart}: the declaration stages no online request")
        events_name, labels_name = features.staged_inputs
        try:
            self._staging = {
                events_name: RowStaging(features.staging["events"], events.schema.names),
                labels_name: RowStaging(features.staging["labels"], labels.schema.names),
            }
        except StagingError as error:
            raise SnapshotError(f"online staging: {error}") from None
        self.definitions = definitions
        self.definitions_hash = definitions.hash
        self.snapshot_version: str | None = None
        self.snapshot_last_day: date | None = None
        self._key = key
        self._events_name, self._labels_name = events_name, labels_name
        self._row_id, self._event_time = features.row_id, features.event_time
        self._partition_date = features.partition_date
        (self._known_at, label_time), = features.staging["labels"]["dates"].items()
        self._label_time = label_time
        self._positions = {
            name: {column: i for i, column in enumerate(staging.columns)}
            for name, staging in self._staging.items()
        }
        # labels: the first of an event's kept, by its time then its other staged columns
        label_staging = self._staging[labels_name]
        self._label_order = [self._positions[labels_name][label_time]] + [
            self._positions[labels_name][c] for c in sorted(label_staging.columns)
            if c not in (self._row_id, label_time, self._known_at)
            and not label_staging.is_lineage(c)
        ]
        self._starts = features.history_starts()
        self._event_keys = sorted({g["key"] for g in features.event_groups})
        self._lock = threading.Lock()
        self._history = history(
            events.schema, self._row_id, self._event_time, sorted(self._starts)
        )
        self._events_schema = events.schema
        self._current_day: date | None = None
        """The latest day asked for: its entity-day rows are computed for every entity."""

        self._days, self._stage_features, self._select_features = build_stages(
            definitions, {events_name: events.schema, labels_name: labels.schema},
            sorted(self._starts),
        )
        self._history.extend_events(events)
        for row in table_rows(labels):
            self._add_label(row)

    @classmethod
    def from_snapshot(
        cls,
        snapshot_dir: Path,
        key: bytes | None = None,
        carry_over: OnlineFeatureStore | None = None,
        history: HistoryFactory = InProcessHistory,
    ) -> OnlineFeatureStore:
        """Load the current serving snapshot under ``snapshot_dir`` (or that version folder).

        ``key``: the pseudonymization key (default: the pipeline's, from settings); it must be
        the one the warehouse was built with. ``carry_over``: a store being replaced; its
        events and labels after the snapshot's last day are kept (the new snapshot does not
        have them yet).
        """
        snapshot = current_snapshot(snapshot_dir)
        key = key if key is not None else pseudonymization_key(create=False)
        if key_fingerprint(key) != snapshot.manifest["pseudonymization_key_fingerprint"]:
            raise SnapshotError(
                f"{snapshot.path} was built with another pseudonymization key: pseudonyms "
                "would not match"
            )
        definitions = snapshot.definitions
        if definitions.hash != snapshot.manifest["feature_definitions_hash"]:
            raise SnapshotError(f"{snapshot.path}: feature definitions do not match their hash")
        events_name, labels_name = definitions.features.staged_inputs
        store = cls(
            definitions,
            pq.read_table(snapshot.table_path(events_name)),
            pq.read_table(snapshot.table_path(labels_name)),
            key,
            history,
        )
        store.snapshot_version = snapshot.version
        store.snapshot_last_day = snapshot.last_day
        if carry_over is not None:
            store._carry_over(carry_over, after=snapshot.last_day)
        return store

    def stage_label(self, label: Mapping[str, Any]) -> dict[str, Any]:
        """A label (the label source's contract columns) as staged: what a label log keeps
        (pseudonyms, never personal data) and :meth:`add_staged_labels` takes back.

        Raises `UnprovenLabelError` (a ``ValueError``) when the label proves nothing of an event
        the service knows: an unknown id, a column both carry that differs (a card that is not
        the payment's), a label time before its event's. Anyone could otherwise plant labels
        (a backdated report raises a terminal's risk at once); the label source's offline feed
        stays the source of labels for events the service does not know."""
        staging = self._staging[self._labels_name]
        row = staging.stage(label, self._key)
        with self._lock:
            self._check_proves(row)
        return dict(zip(staging.columns, row, strict=True))

    def _check_proves(self, row: tuple) -> None:
        labels = self._staging[self._labels_name]
        fields = labels.field_names
        row_id = self._label_value(row, self._row_id)
        event = self._history.event(row_id)
        if event is None:
            raise UnprovenLabelError(
                f"{fields[self._row_id]}: no event with this id is known to the service (labels "
                "of older events come with the label source's files)"
            )
        positions = self._positions[self._events_name]
        for column in labels.columns:
            if column == self._row_id or column not in positions or labels.is_lineage(column):
                continue
            if column in (self._known_at, self._partition_date):
                continue
            if self._label_value(row, column) != event[positions[column]]:
                raise UnprovenLabelError(f"{fields.get(column, column)}: not its event's")
        if self._label_value(row, self._label_time) < event[positions[self._event_time]]:
            raise UnprovenLabelError(
                f"{fields[self._label_time]}: before the time of its event"
            )

    def knows(self, row_id: str) -> bool:
        """Whether the history holds an event with this id."""
        with self._lock:
            return self._history.event(row_id) is not None

    @property
    def n_events(self) -> int:
        return self._history.n_events

    @property
    def n_labels(self) -> int:
        return self._history.n_labels

    def features(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The feature mart's row of a new event, which joins the history.

        ``event``: the events' contract columns, under their request names. The same row id
        again (a retry) adds nothing and gets the same row (unless what came before it changed
        meanwhile: a late label, an event of the same entity at the very same instant); with
        different content it raises `RowConflictError`.
        """
        return self.features_batch([event])[0]

    def features_batch(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`features` of many events at once (one SQL execution), in the given order.

        Events of one batch join the history together, so same-instant events of an entity
        count for each other, as they do offline.
        """
        return [features for _, features in self.staged_features(events)]

    def staged_features(
        self, events: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """:meth:`features_batch`, each feature row with its event as staged (pseudonyms, no
        personal data): what a prediction log keeps and :meth:`add_staged_events` takes back."""
        staging = self._staging[self._events_name]
        staged = [staging.stage(event, self._key) for event in events]
        with self._lock:
            ids = [self._event_value(row, self._row_id) for row in staged]
            # every event is checked before any joins the history: a conflict adds nothing
            new: dict[str, tuple] = {}
            for row_id, row in zip(ids, staged, strict=True):
                if new.get(row_id, row) != row:
                    raise RowConflictError(f"{self._row_id} {row_id} sent twice")
                if row_id not in new and not self._is_known(row):
                    new[row_id] = row
            for row in new.values():
                self._insert(row)
            features = self._features_of(ids)
        return [(dict(zip(staging.columns, row, strict=True)), feature_row)
                for row, feature_row in zip(staged, features, strict=True)]

    def add_labels(self, labels: Iterable[Mapping[str, Any]]) -> int:
        """Add labels (the label source's contract columns) as they arrive.

        A label counts for an event only if known before the event's day (the SQL says so); an
        event labelled twice keeps its first label. Returns how many labels changed. Entity-day
        rows the labels change are computed again now, not during a request.
        """
        staging = self._staging[self._labels_name]
        return self._add_staged_labels([staging.stage(label, self._key) for label in labels])

    def add_staged_labels(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """:meth:`add_labels` of labels staged before (pseudonyms, no personal data)."""
        staging = self._staging[self._labels_name]
        return self._add_staged_labels([staging.restage(row) for row in rows])

    def _add_staged_labels(self, staged: list[tuple]) -> int:
        with self._lock:
            changed = sum(self._add_label(row) for row in staged)
            if self._current_day is not None:
                self._compute_day_rows(self._current_day, None)
            return changed

    def add_staged_events(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add events staged before (as the prediction log keeps them) to the history without
        computing their features: how a restarted service gets back the events it scored since
        its snapshot. Known ones are skipped (raises `RowConflictError` for a known id with
        other content); returns how many were added."""
        staging = self._staging[self._events_name]
        staged = [staging.restage(row) for row in rows]
        with self._lock:
            added = 0
            for row in staged:  # one by one: a retry logged twice is known the second time
                if not self._is_known(row):
                    self._insert(row)
                    added += 1
            return added

    def prepare_day(self, day: date) -> None:
        """Compute the entity-day rows of ``day`` for every entity now, so that the day's first
        request does not (call it shortly before midnight, or at start-up)."""
        with self._lock:
            if self._current_day is None or day > self._current_day:
                self._start_day(day)

    # -- history -------------------------------------------------------------------------------

    def _event_value(self, row: tuple, column: str) -> Any:
        return row[self._positions[self._events_name][column]]

    def _label_value(self, row: tuple, column: str) -> Any:
        return row[self._positions[self._labels_name][column]]

    def _is_known(self, row: tuple) -> bool:
        """Whether the history has this event; raises if it has the id with other content."""
        row_id = self._event_value(row, self._row_id)
        known = self._history.event(row_id)
        if known is None:
            return False
        staging = self._staging[self._events_name]
        if any(a != b for column, a, b in zip(staging.columns, known, row, strict=True)
               if not staging.is_lineage(column)):
            raise RowConflictError(f"{self._row_id} {row_id} is known with different content")
        return True

    def _insert(self, row: tuple) -> None:
        """Add a staged event the history does not have."""
        self._history.add_event(row)
        self._forget_day_rows(row)

    def _forget_day_rows(self, event: tuple, after: date | None = None) -> None:
        """An event counts for its entities' days after its own (never on its day): forget the
        rows it changes (those after ``after``, its day by default)."""
        after = after or self._event_value(event, self._partition_date)
        for table in self._days:
            table.forget(self._event_value(event, table.key), after)

    def _add_label(self, row: tuple) -> bool:
        row_id = self._label_value(row, self._row_id)
        known = self._history.label(row_id)
        if known is not None and self._label_key(known) <= self._label_key(row):
            return False
        self._history.set_label(row_id, row)
        event = self._history.event(row_id)
        if event is not None:
            self._forget_day_rows(event, after=self._label_value(row, self._known_at))
        return True

    def _label_key(self, row: tuple) -> list[tuple[bool, Any]]:
        """The order labels of one event are kept by (the first wins), missing values last."""
        return [(row[i] is None, row[i] if row[i] is not None else "") for i in self._label_order]

    def _carry_over(self, previous: OnlineFeatureStore, after: date) -> None:
        with previous._lock:
            events = [r for r in previous._history.events()
                      if previous._event_value(r, self._partition_date) > after]
            labels = [r for r in previous._history.labels()
                      if previous._label_value(r, self._known_at) > after]
        with self._lock:
            for row in events:
                if not self._is_known(row):
                    self._insert(row)
            for row in labels:
                self._add_label(row)

    # -- the two SQL stages --------------------------------------------------------------------

    def _features_of(self, row_ids: list[str]) -> list[dict[str, Any]]:
        targets = [self._history.event(i) for i in row_ids]
        days = {self._event_value(t, self._partition_date) for t in targets}
        latest = max(days)
        if self._current_day is None or latest > self._current_day:
            self._start_day(latest)
        wanted = [
            sorted({(self._event_value(t, table.key), self._event_value(t, self._partition_date))
                    for t in targets})
            for table in self._days
        ]
        for day in sorted(days):
            self._compute_day_rows(day, [
                [e for e, d in pairs if d == day and day not in table.rows.get(e, {})]
                for table, pairs in zip(self._days, wanted, strict=True)
            ])

        history: dict[str, None] = dict.fromkeys(row_ids)  # whatever groups are declared
        for row in targets:
            when = self._event_value(row, self._event_time)
            for key in self._event_keys:
                entity = self._event_value(row, key)
                history.update(dict.fromkeys(
                    self._history.between(key, entity, self._starts[key](when), when)
                ))
        inputs: dict[str, Any] = {self._events_name: self._history.take(history)}
        for table, pairs in zip(self._days, wanted, strict=True):
            inputs[table.model.name] = [table.rows[e][d] for e, d in pairs]
        columns, rows = self._stage_features.query(inputs, self._select_features, [row_ids])
        id_column = columns.index(self._row_id)
        by_id = {row[id_column]: dict(zip(columns, row, strict=True)) for row in rows}
        return [by_id[i] for i in row_ids]

    def _start_day(self, day: date) -> None:
        """Compute the day's entity-day rows for every entity; forget those of older days but the
        day before (a late event of an older day gets its rows computed again)."""
        for table in self._days:
            for days in table.rows.values():
                for old in [d for d in days if d < day - timedelta(days=1)]:
                    del days[old]
        self._current_day = day
        self._compute_day_rows(day, None)

    def _compute_day_rows(self, day: date, entities: list[list[str]] | None) -> None:
        """Stage 1 for one day: for each day-clock model, these entities (None: every entity of
        its key without a row for the day)."""
        for i, table in enumerate(self._days):
            if entities is None:
                wanted = [e for e in self._history.keys(table.key)
                          if day not in table.rows.get(e, {})]
            else:
                wanted = entities[i]
            self._compute_day_table(table, day, wanted)

    def _compute_day_table(self, table: DayTable, day: date, entities: Iterable[str]) -> None:
        """Each entity's events of the days before that can count, their labels, and a
        placeholder event on the day so that the SQL emits the entity-day row. One day per run:
        a placeholder on another day would count as an event in that day's windows."""
        start = datetime.combine(day, time.min)
        history: dict[str, None] = {}
        probes = []
        reach = self._starts[table.key]
        for entity in entities:
            earlier = self._history.between(
                table.key, entity, reach(start), start - timedelta.resolution
            )
            history.update(dict.fromkeys(earlier))
            probes.append(self._probe(table.key, entity, start))
        if not probes:
            return
        labels = [self._history.label(i) for i in history]
        columns, rows = table.stage.query(
            {
                self._events_name: pa.concat_tables(
                    [self._history.take(history), rows_table(probes, self._events_schema)]
                ),
                self._labels_name: [label for label in labels if label is not None],
            },
            table.select,
            [day],
        )
        key_column = columns.index(table.key)
        for row in rows:
            table.rows.setdefault(row[key_column], {})[day] = row

    def _probe(self, key: str, entity: str, start: datetime) -> tuple:
        values = dict.fromkeys(self._staging[self._events_name].columns)
        values.update({
            self._row_id: f"{PROBE_ID_PREFIX}{entity}",
            self._event_time: start,
            self._partition_date: start.date(),
            key: entity,
        })
        return tuple(values.values())
