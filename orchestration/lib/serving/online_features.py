"""Online features: the row ``transaction_features`` would hold for a payment, at request time.

The store keeps the staged history (``stg_transactions``, ``stg_fraud_reports``) in memory,
starting from a serving snapshot, and adds every payment it scores and every fraud report it is
given. Features come from dbt's compiled SQL, run unchanged in in-memory DuckDB databases whose
relations carry the names the SQL uses (``"warehouse"."main"."stg_transactions"``...): the
relations a model reads are views over per-request Arrow tables, the model is a view whose body
is its compiled SQL. The chain runs in two stages:

1. ``int_terminal_days_aggregated`` (what was known about a terminal at the start of a day) is
   computed for every terminal at once, the first time a day is asked for, and kept. A
   terminal-day's features only read the terminal's earlier days (the delay) and reports filed
   before the day, so the rows stay valid all day; a late report or a late payment invalidates
   the rows it changes, which are computed again.
2. ``transaction_features`` runs per request over the card's recent payments and those cached
   terminal-day rows.

Each stage hands the SQL only the history that can count (:func:`history_starts`), so a request
costs the same however long the store has run. The only Python mirror of dbt is the staging of
one incoming row (the casts of ``stg_transactions``/``stg_fraud_reports`` and the card
pseudonymization, shared with dbt through ``orchestration.lib.features.pseudonymize``); the store
refuses a snapshot whose staged columns or model chain differ from what it knows how to run.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.features.feature_definitions import (
    INPUT_MODELS,
    OUTPUT_MODEL,
    FeatureDefinitions,
    FeatureWindows,
    ModelSql,
    quote_identifier,
)
from orchestration.lib.features.pseudonymize import card_key, key_fingerprint
from orchestration.lib.serving.snapshot import SnapshotError, current_snapshot
from orchestration.settings import pseudonymization_key

TRANSACTIONS, FRAUD_REPORTS = INPUT_MODELS
TERMINAL_DAYS = "int_terminal_days_aggregated"
"""The model computed per terminal and day, ahead of requests."""
REQUEST_TABLE_PREFIX = "request__"
"""Per-request Arrow tables are registered as ``request__<model>``."""
PROBE_ID_PREFIX = "~serving-probe~"
"""Id of the placeholder payment that makes the SQL emit a terminal-day row before the day's
first real payment; placeholders only exist in stage 1's input, never in the history."""


class TransactionConflictError(ValueError):
    """A transaction id the store knows arrived again with different content."""


def history_starts(windows: FeatureWindows) -> dict[str, Callable[[datetime], datetime]]:
    """The keys features are partitioned by, each with the earliest time of a payment of the same
    key that can count for a payment at ``t``: the card windows, the terminal's delayed windows.

    Later payments never count, except those at ``t`` itself (same-instant payments of a card
    count for each other), so a payment's history is ``[start(t), t]`` for each key.
    """
    terminal_days = timedelta(days=windows.terminal_horizon_days)
    return {
        "card_key": lambda t: t - windows.card_horizon,
        "terminal_id": lambda t: datetime.combine(t.date(), time.min) - terminal_days,
    }


def _timestamp(value: datetime | str) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        raise ValueError(f"timestamp {value!r} has a time zone; the contract's are local, naive")
    return datetime(*when.timetuple()[:6], when.microsecond)  # a plain datetime, not a subclass


def stage_transaction(tx: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A raw payment ``{transaction_id, timestamp, card_number, terminal_id, amount}`` as the row
    ``stg_transactions`` holds for it (the card number replaced by its ``card_key``)."""
    return _staged_transaction(
        tx["transaction_id"],
        tx["timestamp"],
        card_key(str(tx["card_number"]), key),
        tx["terminal_id"],
        tx["amount"],
    )


def restage_transaction(row: Mapping[str, Any]) -> dict[str, Any]:
    """A payment staged before ``{transaction_id, tx_datetime, card_key, terminal_id, amount}``
    (as the prediction log keeps it: no card number) as the row ``stg_transactions`` holds."""
    return _staged_transaction(
        row["transaction_id"],
        row["tx_datetime"],
        str(row["card_key"]),
        row["terminal_id"],
        row["amount"],
    )


def _staged_transaction(
    transaction_id: Any, timestamp: datetime | str, card: str, terminal_id: Any, amount: Any
) -> dict[str, Any]:
    when = _timestamp(timestamp)
    value = float(amount)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"amount {amount!r} is not a finite amount >= 0")
    return {
        "transaction_id": str(transaction_id),
        "tx_datetime": when,
        "tx_date": when.date(),
        "card_key": card,
        "terminal_id": str(terminal_id),
        "amount": value,
        "_source_file": None,  # lineage of the raw zone; an online payment has no file
    }


def stage_fraud_report(report: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A raw fraud report ``{transaction_id, card_number, reported_at}`` as in
    ``stg_fraud_reports``."""
    return _staged_report(
        report["transaction_id"], card_key(str(report["card_number"]), key), report["reported_at"]
    )


def restage_fraud_report(row: Mapping[str, Any]) -> dict[str, Any]:
    """A fraud report staged before ``{transaction_id, card_key, reported_at}`` as in
    ``stg_fraud_reports``."""
    return _staged_report(row["transaction_id"], str(row["card_key"]), row["reported_at"])


def _staged_report(transaction_id: Any, card: str, reported_at: datetime | str) -> dict[str, Any]:
    when = _timestamp(reported_at)
    return {
        "transaction_id": str(transaction_id),
        "card_key": card,
        "reported_at": when,
        "report_date": when.date(),
    }


_EXAMPLE_TRANSACTION = {
    "transaction_id": "t",
    "timestamp": datetime.min,
    "card_number": "",
    "terminal_id": "",
    "amount": 0.0,
}
_EXAMPLE_REPORT = {"transaction_id": "t", "card_number": "", "reported_at": datetime.min}
STAGED_COLUMNS = {
    TRANSACTIONS: tuple(stage_transaction(_EXAMPLE_TRANSACTION, b"")),
    FRAUD_REPORTS: tuple(stage_fraud_report(_EXAMPLE_REPORT, b"")),
}
"""The columns online staging produces; a snapshot must have exactly these."""


def _feature_models(definitions: FeatureDefinitions) -> tuple[ModelSql, ModelSql]:
    """The two models of the chain, checked to read what the stages hand them."""
    names = [model.name for model in definitions.models]
    if names != [TERMINAL_DAYS, OUTPUT_MODEL]:
        raise SnapshotError(
            f"the feature models are {names}; online features know how to run "
            f"{[TERMINAL_DAYS, OUTPUT_MODEL]}: update orchestration.lib.serving.online_features"
        )
    terminal_days, output = definitions.models
    if not set(terminal_days.depends_on) <= set(INPUT_MODELS) or set(output.depends_on) != {
        TRANSACTIONS,
        TERMINAL_DAYS,
    }:
        raise SnapshotError(
            f"{TERMINAL_DAYS} reads {terminal_days.depends_on} and {OUTPUT_MODEL} reads "
            f"{output.depends_on}: update orchestration.lib.serving.online_features"
        )
    return terminal_days, output


class _KeyHistory:
    """The payments of one card or one terminal, in time order."""

    __slots__ = ("times", "ids")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.ids: list[str] = []

    def add(self, when: datetime, transaction_id: str) -> None:
        at = bisect_right(self.times, when)
        self.times.insert(at, when)
        self.ids.insert(at, transaction_id)

    def between(self, start: datetime, end: datetime) -> list[str]:
        return self.ids[bisect_left(self.times, start) : bisect_right(self.times, end)]


_NO_HISTORY = _KeyHistory()


class _Columns:
    """Staged rows kept as Arrow columns, gathered by id: what the SQL stages read.

    Handing DuckDB a card's or a terminal's history as Python tuples means building Arrow arrays
    from Python objects on every request (27 ms for the 28,000 rows a batch of 500 reads on the
    default world); a gather from columns built once is a copy in C (the batch's features: 98.6
    ms before, 83.9 ms after). The rows added since the
    last compaction stay tuples (converted when gathered) until :data:`COMPACT_ROWS` of them
    are merged into the columns at once.
    """

    COMPACT_ROWS = 4096

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._columns = schema.empty_table()
        self._recent: list[tuple] = []
        self._position: dict[str, int] = {}
        """Each id's row: in the columns below their length, in ``_recent`` from it."""

    def extend(self, table: pa.Table) -> None:
        """Add the rows of ``table`` (ids the columns do not have yet)."""
        self._compact()
        start = self._columns.num_rows
        ids = table.column("transaction_id").to_pylist()
        self._position.update(zip(ids, range(start, start + len(ids)), strict=True))
        self._columns = pa.concat_tables([self._columns, table.select(self.schema.names)])
        self._columns = self._columns.combine_chunks()

    def append(self, transaction_id: str, row: tuple) -> None:
        self._position[transaction_id] = self._columns.num_rows + len(self._recent)
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
            _table([self._recent[p - stored] for p in positions[recent]], self.schema),
        ])
        # back into the order asked: the stored rows came first, then the recent ones
        order = np.concatenate([np.flatnonzero(~recent), np.flatnonzero(recent)])
        return parts.take(np.argsort(order, kind="stable"))

    def _compact(self) -> None:
        if self._recent:
            self._columns = pa.concat_tables(
                [self._columns, _table(self._recent, self.schema)]
            ).combine_chunks()
            self._recent = []


class _SqlStage:
    """An in-memory DuckDB where compiled models run over per-request Arrow tables.

    ``tables``: the relations fed from Arrow, each with its columns and DuckDB types (the view
    over the Arrow table casts to them, so a model sees the types dbt's tables have);
    ``models``: the models run, as views of their compiled SQL, in dependency order.
    """

    def __init__(
        self,
        tables: Sequence[tuple[ModelSql, pa.Schema, Sequence[tuple[str, str]]]],
        models: Sequence[ModelSql],
    ) -> None:
        self._conn = duckdb.connect(config={"threads": 1})  # requests are tiny: threads only cost
        self._schemas = {model.name: schema for model, schema, _ in tables}
        relations = [model.relation for model, _, _ in tables] + [m.relation for m in models]
        attached = {row[0] for row in self._conn.sql("from duckdb_databases()").fetchall()}
        for database in sorted({r.database for r in relations} - attached):
            self._conn.execute(f"attach ':memory:' as {quote_identifier(database)}")
        for database, schema in sorted({(r.database, r.schema) for r in relations}):
            self._conn.execute(
                f"create schema if not exists {quote_identifier(database)}."
                f"{quote_identifier(schema)}"
            )
        for model, schema, columns in tables:
            request_table = REQUEST_TABLE_PREFIX + model.name
            self._conn.register(request_table, schema.empty_table())
            casts = ", ".join(
                f"cast({quote_identifier(c)} as {t}) as {quote_identifier(c)}" for c, t in columns
            )
            self._conn.execute(
                f"create view {model.relation.sql} as select {casts} from {request_table}"
            )
        for model in models:
            self._conn.execute(f"create view {model.relation.sql} as\n{model.compiled_sql}")

    def query(
        self, inputs: Mapping[str, list[tuple] | pa.Table], sql: str, params: Sequence[Any]
    ) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` with each table's rows (an Arrow table, or tuples in schema order);
        columns and rows."""
        for name, rows in inputs.items():
            table = rows if isinstance(rows, pa.Table) else _table(rows, self._schemas[name])
            self._conn.register(REQUEST_TABLE_PREFIX + name, table)
        cursor = self._conn.execute(sql, params)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def describe(self, relation: str) -> tuple[pa.Schema, list[tuple[str, str]]]:
        """Arrow schema and DuckDB column types of a relation."""
        schema = self._conn.sql(f"select * from {relation} limit 0").to_arrow_table().schema
        columns = self._conn.sql(f"describe {relation}").fetchall()
        return schema, [(row[0], row[1]) for row in columns]


class OnlineFeatureStore:
    """In-memory staged history plus dbt's compiled feature SQL; thread-safe."""

    def __init__(
        self,
        definitions: FeatureDefinitions,
        transactions: pa.Table,
        fraud_reports: pa.Table,
        key: bytes,
    ) -> None:
        """Start from staged rows (normally via :meth:`from_snapshot`)."""
        inputs = {TRANSACTIONS: transactions, FRAUD_REPORTS: fraud_reports}
        for name, table in inputs.items():
            if sorted(table.schema.names) != sorted(STAGED_COLUMNS[name]):
                raise SnapshotError(
                    f"{name} has columns {table.schema.names} but online staging produces "
                    f"{list(STAGED_COLUMNS[name])}: update "
                    "orchestration.lib.serving.online_features"
                )
        terminal_days, output = _feature_models(definitions)
        self.definitions = definitions
        self.definitions_hash = definitions.hash
        self.snapshot_version: str | None = None
        self.snapshot_last_day: date | None = None
        self._key = key
        self._columns = {name: table.schema.names for name, table in inputs.items()}
        self._positions = {
            name: {column: i for i, column in enumerate(columns)}
            for name, columns in self._columns.items()
        }
        starts = history_starts(definitions.windows)
        self._card_start, self._terminal_start = starts["card_key"], starts["terminal_id"]
        self._lock = threading.Lock()

        self._transactions: dict[str, tuple] = {}
        self._history = _Columns(transactions.schema)
        """The same payments as Arrow columns, for handing the SQL many rows at once."""
        self._reports: dict[str, tuple] = {}
        self._cards: dict[str, _KeyHistory] = {}
        self._terminals: dict[str, _KeyHistory] = {}
        self._terminal_days: dict[str, dict[date, tuple]] = {}
        """Stage 1's rows by terminal and day: valid until a late report or payment."""
        self._current_day: date | None = None
        """The latest day asked for: its terminal-day rows are computed for every terminal."""

        self._stage_terminal_days = _SqlStage(
            [
                (definitions.input(name), table.schema, _duckdb_columns(table.schema))
                for name, table in inputs.items()
            ],
            [terminal_days],
        )
        days_schema, days_columns = self._stage_terminal_days.describe(terminal_days.relation.sql)
        self._terminal_days_columns = days_schema.names
        transactions_table = (definitions.input(TRANSACTIONS), transactions.schema)
        self._stage_features = _SqlStage(
            [
                (*transactions_table, _duckdb_columns(transactions.schema)),
                (terminal_days, days_schema, days_columns),
            ],
            [output],
        )
        # the day's only payments in stage 1 are the placeholders: one row per terminal asked
        self._select_terminal_days = f"select * from {terminal_days.relation.sql} where tx_date = ?"
        self._select_features = (
            f"select * from {output.relation.sql} "
            "where list_contains(?::varchar[], transaction_id)"
        )
        self._history.extend(transactions)
        for row in _rows(transactions):
            self._index(row)
        for row in _rows(fraud_reports):
            self._add_report(row)

    @classmethod
    def from_snapshot(
        cls,
        snapshot_dir: Path,
        key: bytes | None = None,
        carry_over: OnlineFeatureStore | None = None,
    ) -> OnlineFeatureStore:
        """Load the current serving snapshot under ``snapshot_dir`` (or that version folder).

        ``key``: the pseudonymization key (default: the pipeline's, from settings); it must be
        the one the warehouse was built with. ``carry_over``: a store being replaced; its
        payments and reports after the snapshot's last day are kept (the new snapshot does not
        have them yet).
        """
        snapshot = current_snapshot(snapshot_dir)
        key = key if key is not None else pseudonymization_key()
        if key_fingerprint(key) != snapshot.manifest["pseudonymization_key_fingerprint"]:
            raise SnapshotError(
                f"{snapshot.path} was built with another pseudonymization key: card keys "
                "would not match"
            )
        definitions = snapshot.definitions
        if definitions.hash != snapshot.manifest["feature_definitions_hash"]:
            raise SnapshotError(f"{snapshot.path}: feature definitions do not match their hash")
        store = cls(
            definitions,
            pq.read_table(snapshot.table_path(TRANSACTIONS)),
            pq.read_table(snapshot.table_path(FRAUD_REPORTS)),
            key,
        )
        store.snapshot_version = snapshot.version
        store.snapshot_last_day = snapshot.last_day
        if carry_over is not None:
            store._carry_over(carry_over, after=snapshot.last_day)
        return store

    @property
    def n_transactions(self) -> int:
        return len(self._transactions)

    @property
    def n_fraud_reports(self) -> int:
        return len(self._reports)

    def features(self, tx: Mapping[str, Any]) -> dict[str, Any]:
        """The ``transaction_features`` row of a new payment, which joins the history.

        ``tx``: ``{transaction_id, timestamp, card_number, terminal_id, amount}``. The same
        ``transaction_id`` again (a retry) adds nothing and gets the same row (unless what came
        before it changed meanwhile: a late report, a payment of the card at the very same
        instant); with different content it raises `TransactionConflictError`.
        """
        return self.features_batch([tx])[0]

    def features_batch(self, txs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`features` of many payments at once (one SQL execution), in the given order.

        Payments of one batch join the history together, so same-instant payments of a card
        count for each other, as they do offline.
        """
        staged = [self._as_row(TRANSACTIONS, stage_transaction(tx, self._key)) for tx in txs]
        with self._lock:
            ids = [self._value(TRANSACTIONS, row, "transaction_id") for row in staged]
            # every payment is checked before any joins the history: a conflict adds nothing
            new: dict[str, tuple] = {}
            for transaction_id, row in zip(ids, staged, strict=True):
                if new.get(transaction_id, row) != row:
                    raise TransactionConflictError(f"transaction {transaction_id} sent twice")
                if transaction_id not in new and not self._is_known(row):
                    new[transaction_id] = row
            for row in new.values():
                self._insert(row)
            return self._features_of(ids)

    def add_reports(self, reports: Iterable[Mapping[str, Any]]) -> int:
        """Add fraud reports ``{transaction_id, card_number, reported_at}`` as they arrive.

        A report counts for a payment only if filed before the payment's day (the SQL says so);
        a payment reported twice keeps its first report. Returns how many reports changed.
        Terminal-day rows the reports change are computed again now, not during a request.
        """
        return self._add_staged_reports(
            [self._as_row(FRAUD_REPORTS, stage_fraud_report(r, self._key)) for r in reports]
        )

    def add_staged_reports(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """:meth:`add_reports` of reports staged before (see :func:`restage_fraud_report`)."""
        return self._add_staged_reports(
            [self._as_row(FRAUD_REPORTS, restage_fraud_report(row)) for row in rows]
        )

    def _add_staged_reports(self, staged: list[tuple]) -> int:
        with self._lock:
            changed = sum(self._add_report(row) for row in staged)
            if self._current_day is not None:
                day = self._current_day
                self._compute_terminal_days(day, self._without_terminal_day(day))
            return changed

    def add_staged_transactions(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Add payments staged before (see :func:`restage_transaction`) to the history without
        computing their features: how a restarted service gets back the payments it scored
        since its snapshot. Known ones are skipped (raises `TransactionConflictError` for a
        known id with other content); returns how many were added."""
        staged = [self._as_row(TRANSACTIONS, restage_transaction(row)) for row in rows]
        with self._lock:
            added = 0
            for row in staged:  # one by one: a retry logged twice is known the second time
                if not self._is_known(row):
                    self._insert(row)
                    added += 1
            return added

    def prepare_day(self, day: date) -> None:
        """Compute the terminal-day rows of ``day`` for every terminal now, so that the day's
        first request does not (call it shortly before midnight, or at start-up)."""
        with self._lock:
            if self._current_day is None or day > self._current_day:
                self._start_day(day)

    # -- history -------------------------------------------------------------------------------

    def _as_row(self, name: str, values: Mapping[str, Any]) -> tuple:
        return tuple(values[column] for column in self._columns[name])

    def _value(self, name: str, row: tuple, column: str) -> Any:
        return row[self._positions[name][column]]

    def _is_known(self, row: tuple) -> bool:
        """Whether the history has this payment; raises if it has the id with other content."""
        transaction_id = self._value(TRANSACTIONS, row, "transaction_id")
        known = self._transactions.get(transaction_id)
        if known is None:
            return False
        lineage = self._positions[TRANSACTIONS]["_source_file"]
        if any(a != b for i, (a, b) in enumerate(zip(known, row, strict=True)) if i != lineage):
            raise TransactionConflictError(
                f"transaction {transaction_id} is known with different content"
            )
        return True

    def _insert(self, row: tuple) -> None:
        """Add a staged payment the history does not have."""
        self._history.append(self._value(TRANSACTIONS, row, "transaction_id"), row)
        self._index(row)

    def _index(self, row: tuple) -> None:
        """Find a payment `_history` has by its id, card and terminal."""
        transaction_id = self._value(TRANSACTIONS, row, "transaction_id")
        self._transactions[transaction_id] = row
        when = self._value(TRANSACTIONS, row, "tx_datetime")
        card = self._value(TRANSACTIONS, row, "card_key")
        terminal = self._value(TRANSACTIONS, row, "terminal_id")
        self._cards.setdefault(card, _KeyHistory()).add(when, transaction_id)
        self._terminals.setdefault(terminal, _KeyHistory()).add(when, transaction_id)
        # a payment counts for its terminal from the days after it on (never on its own day)
        self._forget_terminal_days(terminal, after=when.date())

    def _add_report(self, row: tuple) -> bool:
        transaction_id = self._value(FRAUD_REPORTS, row, "transaction_id")
        known = self._reports.get(transaction_id)
        # stg_fraud_reports keeps the first report of a payment, by reported_at then card_key
        order = [self._positions[FRAUD_REPORTS][c] for c in ("reported_at", "card_key")]
        if known is not None and [known[i] for i in order] <= [row[i] for i in order]:
            return False
        self._reports[transaction_id] = row
        payment = self._transactions.get(transaction_id)
        if payment is not None:
            terminal = self._value(TRANSACTIONS, payment, "terminal_id")
            self._forget_terminal_days(
                terminal, after=self._value(FRAUD_REPORTS, row, "report_date")
            )
        return True

    def _forget_terminal_days(self, terminal: str, after: date) -> None:
        days = self._terminal_days.get(terminal)
        if days:
            for day in [d for d in days if d > after]:
                del days[day]

    def _carry_over(self, previous: OnlineFeatureStore, after: date) -> None:
        with previous._lock:
            rows = [
                r
                for r in previous._transactions.values()
                if self._value(TRANSACTIONS, r, "tx_date") > after
            ]
            reports = [
                r
                for r in previous._reports.values()
                if self._value(FRAUD_REPORTS, r, "report_date") > after
            ]
        with self._lock:
            for row in rows:
                if not self._is_known(row):
                    self._insert(row)
            for row in reports:
                self._add_report(row)

    # -- the two SQL stages --------------------------------------------------------------------

    def _features_of(self, transaction_ids: list[str]) -> list[dict[str, Any]]:
        targets = [self._transactions[i] for i in transaction_ids]
        wanted = {
            (self._value(TRANSACTIONS, t, "terminal_id"), self._value(TRANSACTIONS, t, "tx_date"))
            for t in targets
        }
        latest = max(day for _, day in wanted)
        if self._current_day is None or latest > self._current_day:
            self._start_day(latest)
        for day in sorted({day for _, day in wanted}):
            cached = self._terminal_days
            self._compute_terminal_days(
                day, [t for t, d in wanted if d == day and day not in cached.get(t, {})]
            )

        history: dict[str, None] = {}
        for row in targets:
            when = self._value(TRANSACTIONS, row, "tx_datetime")
            card = self._cards[self._value(TRANSACTIONS, row, "card_key")]
            history.update(dict.fromkeys(card.between(self._card_start(when), when)))
        columns, rows = self._stage_features.query(
            {
                TRANSACTIONS: self._history.take(history),
                TERMINAL_DAYS: [self._terminal_days[t][d] for t, d in sorted(wanted)],
            },
            self._select_features,
            [transaction_ids],
        )
        id_column = columns.index("transaction_id")
        by_id = {row[id_column]: dict(zip(columns, row, strict=True)) for row in rows}
        return [by_id[i] for i in transaction_ids]

    def _start_day(self, day: date) -> None:
        """Compute the day's terminal-day rows for every terminal; forget those of older days
        but the day before (a late payment of an older day gets its rows computed again)."""
        for days in self._terminal_days.values():
            for old in [d for d in days if d < day - timedelta(days=1)]:
                del days[old]
        self._current_day = day
        self._compute_terminal_days(day, self._without_terminal_day(day))

    def _without_terminal_day(self, day: date) -> list[str]:
        return [t for t in self._terminals if day not in self._terminal_days.get(t, {})]

    def _compute_terminal_days(self, day: date, terminals: Iterable[str]) -> None:
        """Stage 1 for one day and these terminals: each terminal's payments of the days before
        that can count, their reports, and a placeholder payment on the day so that the SQL
        emits the terminal-day row. One day per run: a placeholder on another day would count
        as a payment in that day's windows."""
        start = datetime.combine(day, time.min)
        history: dict[str, None] = {}
        probes = []
        for terminal in terminals:
            payments = self._terminals.get(terminal, _NO_HISTORY)
            earlier = payments.between(self._terminal_start(start), start - timedelta.resolution)
            history.update(dict.fromkeys(earlier))
            probes.append(self._probe(terminal, start))
        if not probes:
            return
        columns, rows = self._stage_terminal_days.query(
            {
                TRANSACTIONS: pa.concat_tables(
                    [self._history.take(history), _table(probes, self._history.schema)]
                ),
                FRAUD_REPORTS: [self._reports[i] for i in history if i in self._reports],
            },
            self._select_terminal_days,
            [day],
        )
        terminal_column = columns.index("terminal_id")
        for row in rows:
            self._terminal_days.setdefault(row[terminal_column], {})[day] = row

    def _probe(self, terminal: str, start: datetime) -> tuple:
        values = dict.fromkeys(self._columns[TRANSACTIONS])
        values.update(
            transaction_id=f"{PROBE_ID_PREFIX}{terminal}",
            tx_datetime=start,
            tx_date=start.date(),
            terminal_id=terminal,
        )
        return self._as_row(TRANSACTIONS, values)


def _duckdb_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """DuckDB's types for an Arrow schema (what reading the Arrow table gives)."""
    with duckdb.connect() as conn:
        conn.register("empty", schema.empty_table())
        return [(row[0], row[1]) for row in conn.sql("describe empty").fetchall()]


def _rows(table: pa.Table) -> list[tuple]:
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    if not rows:
        return schema.empty_table()
    columns = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )
