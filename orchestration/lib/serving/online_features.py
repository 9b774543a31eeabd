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

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
)
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.serving.feature_sql import (
    NO_HISTORY,
    HistoryColumns,
    KeyHistory,
    SqlStage,
    duckdb_columns,
    feature_models,
    rows_table,
    table_rows,
)
from orchestration.lib.serving.snapshot import SnapshotError, current_snapshot
from orchestration.lib.serving.staging import (
    FRAUD_REPORTS,
    STAGED_COLUMNS,
    TRANSACTIONS,
    TransactionConflictError,
    restage_fraud_report,
    restage_transaction,
    stage_fraud_report,
    stage_transaction,
)
from orchestration.settings import pseudonymization_key

PROBE_ID_PREFIX = "~serving-probe~"
"""Id of the placeholder payment that makes the SQL emit a terminal-day row before the day's
first real payment; placeholders only exist in stage 1's input, never in the history."""
































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
        terminal_days, output = feature_models(definitions)
        self._terminal_days_model = terminal_days.name
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
        starts = definitions.features.history_starts()
        self._card_start, self._terminal_start = starts["card_key"], starts["terminal_id"]
        self._lock = threading.Lock()

        self._transactions: dict[str, tuple] = {}
        self._history = HistoryColumns(transactions.schema)
        """The same payments as Arrow columns, for handing the SQL many rows at once."""
        self._reports: dict[str, tuple] = {}
        self._cards: dict[str, KeyHistory] = {}
        self._terminals: dict[str, KeyHistory] = {}
        self._terminal_days: dict[str, dict[date, tuple]] = {}
        """Stage 1's rows by terminal and day: valid until a late report or payment."""
        self._current_day: date | None = None
        """The latest day asked for: its terminal-day rows are computed for every terminal."""

        self._stage_terminal_days = SqlStage(
            [
                (definitions.input(name), table.schema, duckdb_columns(table.schema))
                for name, table in inputs.items()
            ],
            [terminal_days],
        )
        days_schema, days_columns = self._stage_terminal_days.describe(terminal_days.relation.sql)
        self._terminal_days_columns = days_schema.names
        transactions_table = (definitions.input(TRANSACTIONS), transactions.schema)
        self._stage_features = SqlStage(
            [
                (*transactions_table, duckdb_columns(transactions.schema)),
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
        for row in table_rows(transactions):
            self._index(row)
        for row in table_rows(fraud_reports):
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
        self._cards.setdefault(card, KeyHistory()).add(when, transaction_id)
        self._terminals.setdefault(terminal, KeyHistory()).add(when, transaction_id)
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
                self._terminal_days_model: [self._terminal_days[t][d] for t, d in sorted(wanted)],
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
            payments = self._terminals.get(terminal, NO_HISTORY)
            earlier = payments.between(self._terminal_start(start), start - timedelta.resolution)
            history.update(dict.fromkeys(earlier))
            probes.append(self._probe(terminal, start))
        if not probes:
            return
        columns, rows = self._stage_terminal_days.query(
            {
                TRANSACTIONS: pa.concat_tables(
                    [self._history.take(history), rows_table(probes, self._history.schema)]
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






