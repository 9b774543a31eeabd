"""The online feature store on the tiny world: exact offline rows, retries, cold starts, reports."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.features.feature_definitions import FeatureDefinitions
from orchestration.lib.monitoring.traffic import SKEW_TOLERANCE
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.served import ServedColumns
from orchestration.lib.serving.snapshot import ServingSnapshot, SnapshotError
from orchestration.lib.serving.staging import RowConflictError, UnprovenLabelError
from orchestration.lib.serving.state import NotReady, ServingState
from orchestration.settings import PSEUDONYMIZATION_KEY_ENV, get_settings
from tests.features.raw_world import DbtRun, World
from tests.serving.serving_world import mismatches, offline_features, publish, requests

NEW_CARD = "4000000000000002"


@pytest.fixture
def snapshot(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tiny_key_hex: str, tmp_path: Path
) -> ServingSnapshot:
    return publish(tiny_build, tiny_definitions, tmp_path / "serving", tiny_key_hex)


@pytest.fixture
def store(snapshot: ServingSnapshot, tiny_key_hex: str) -> OnlineFeatureStore:
    return OnlineFeatureStore.from_snapshot(snapshot.path.parent, key=tiny_key_hex.encode())


def payment(
    transaction_id: str, when: datetime, card: str, terminal: str, amount: float = 50.0
) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "timestamp": when,
        "card_number": card,
        "terminal_id": terminal,
        "amount": amount,
    }


def next_day(store: OnlineFeatureStore, days: int = 1, hour: int = 10) -> datetime:
    """A time ``days`` days after the snapshot's last day."""
    assert store.snapshot_last_day is not None
    midnight = datetime.combine(store.snapshot_last_day, datetime.min.time())
    return midnight + timedelta(days=days, hours=hour)


def test_serving_store_recomputes_every_offline_row_exactly(
    tiny_build: DbtRun,
    tiny_definitions: FeatureDefinitions,
    tiny_world: World,
    tiny_key_hex: str,
    tmp_path: Path,
) -> None:
    """With the whole tiny world in the snapshot, every payment sent again (a retry) gets its
    offline row: exact window edges, reports on the payment's day, a payment reported twice."""
    snapshot = publish(
        tiny_build, tiny_definitions, tmp_path / "serving", tiny_key_hex, lookback_days=400
    )
    store = OnlineFeatureStore.from_snapshot(snapshot.path, key=tiny_key_hex.encode())
    offline = offline_features(tiny_build)
    payments = requests(tiny_world.transactions)
    assert len(payments) == len(offline) == store.n_events

    batch = store.features_batch(payments)
    singles = [store.features(p) for p in payments[::7]]
    assert mismatches(batch + singles, offline) == []
    assert store.n_events == len(offline)


def test_serving_retry_is_idempotent_and_conflicts_are_refused(
    store: OnlineFeatureStore, tiny_world: World
) -> None:
    card = tiny_world.transactions["card_number"].iloc[0]
    terminal = tiny_world.transactions["terminal_id"].iloc[0]
    before = store.n_events
    first = payment("online-1", next_day(store), card, terminal, amount=40.0)

    features = store.features(first)
    assert store.features(first) == features
    assert store.features_batch([first, first]) == [features, features]
    assert store.n_events == before + 1

    later = store.features(
        payment("online-2", next_day(store, hour=11), card, terminal, amount=60.0)
    )
    assert later["card_nb_tx_1day"] == features["card_nb_tx_1day"] + 1  # counted once

    with pytest.raises(RowConflictError):
        store.features({**first, "amount": 41.0})
    fresh = payment("online-3", next_day(store, hour=12), card, terminal)
    with pytest.raises(RowConflictError):
        store.features_batch([fresh, {**first, "terminal_id": "999999"}])
    assert store.n_events == before + 2  # nothing of the refused batch was added


def test_serving_cold_start_card_and_terminal_get_features(
    store: OnlineFeatureStore, tiny_world: World
) -> None:
    known_card = tiny_world.transactions["card_number"].iloc[0]
    terminal = tiny_world.transactions["terminal_id"].iloc[-1]
    known = store.features(payment("known", next_day(store), known_card, terminal))
    new_card = store.features(payment("new-card", next_day(store), NEW_CARD, terminal, 73.5))

    for w in (1, 7, 30):
        assert new_card[f"card_nb_tx_{w}day"] == 1
        assert new_card[f"card_avg_amount_{w}day"] == 73.5
        for kind in ("nb_tx", "risk"):  # the terminal's history does not depend on the card
            assert new_card[f"terminal_{kind}_{w}day"] == known[f"terminal_{kind}_{w}day"]
    assert known["terminal_nb_tx_30day"] > 0

    new_terminal = store.features(payment("new-terminal", next_day(store), NEW_CARD, "987654"))
    for w in (1, 7, 30):
        assert new_terminal[f"terminal_nb_tx_{w}day"] == 0
        assert new_terminal[f"terminal_risk_{w}day"] == 0.0
        assert new_terminal[f"card_nb_tx_{w}day"] == 2


def test_serving_reports_count_from_the_day_after_they_are_filed(
    snapshot: ServingSnapshot, tiny_world: World, tiny_key_hex: str
) -> None:
    """A report filed on day D counts for payments after D only; a late report of an earlier
    day counts at once (the cached terminal-day rows are computed again)."""
    key = tiny_key_hex.encode()
    with_reports = OnlineFeatureStore.from_snapshot(snapshot.path, key=key)
    without = OnlineFeatureStore.from_snapshot(snapshot.path, key=key)
    tx, last_day = tiny_world.transactions, with_reports.snapshot_last_day
    assert last_day is not None
    unreported = tx[
        ~tx["transaction_id"].isin(tiny_world.fraud_reports["transaction_id"])
        & (tx["tx_datetime"].dt.date > last_day - timedelta(days=13))  # in the 7 and 30-day
        & (tx["tx_datetime"].dt.date < last_day - timedelta(days=7))  # windows of tomorrow
    ]
    terminal = unreported["terminal_id"].mode().iloc[0]
    first, second = unreported[unreported["terminal_id"] == terminal].iloc[:2].itertuples()

    def score_both(name: str, when: datetime) -> tuple[dict, dict]:
        request = payment(name, when, NEW_CARD, terminal)
        return with_reports.features(request), without.features(request)

    def frauds(row: dict, w: int) -> float:
        return row[f"terminal_risk_{w}day"] * row[f"terminal_nb_tx_{w}day"]

    reported, plain = score_both("a", next_day(with_reports, hour=8))
    assert reported == plain

    filed_tomorrow = {
        "transaction_id": first.transaction_id,
        "card_number": first.card_number,
        "reported_at": next_day(with_reports, hour=9),
    }
    assert with_reports.add_labels([filed_tomorrow]) == 1
    filed_again = {**filed_tomorrow, "reported_at": next_day(with_reports, days=2)}
    assert with_reports.add_labels([filed_again]) == 0  # the first report stays
    reported, plain = score_both("b", next_day(with_reports, hour=11))
    assert reported == plain
    reported, plain = score_both("c", next_day(with_reports, days=2))
    for w in (7, 30):
        assert frauds(reported, w) == pytest.approx(frauds(plain, w) + 1, abs=SKEW_TOLERANCE)

    filed_late = {
        "transaction_id": second.transaction_id,
        "card_number": second.card_number,
        "reported_at": next_day(with_reports, days=0, hour=22),  # delivered late
    }
    assert with_reports.add_labels([filed_late]) == 1
    reported, plain = score_both("d", next_day(with_reports, days=2, hour=12))
    for w in (7, 30):
        assert frauds(reported, w) == pytest.approx(frauds(plain, w) + 2, abs=SKEW_TOLERANCE)


def test_serving_same_instant_payments_of_a_card_count_for_each_other_in_a_batch(
    store: OnlineFeatureStore,
) -> None:
    when = next_day(store)
    rows = store.features_batch(
        [payment("p-1", when, NEW_CARD, "100", 10.0), payment("p-2", when, NEW_CARD, "101", 30.0)]
    )
    for row in rows:  # as offline: payments of a card at the same instant are peers
        assert row["card_nb_tx_1day"] == 2
        assert row["card_avg_amount_1day"] == 20.0


def test_serving_new_snapshot_carries_over_what_it_lacks(
    store: OnlineFeatureStore, snapshot: ServingSnapshot, tiny_world: World, tiny_key_hex: str
) -> None:
    card = tiny_world.transactions["card_number"].iloc[3]
    store.features(payment("online-1", next_day(store), card, "100"))
    some_payment = tiny_world.transactions.iloc[-1]
    store.add_labels(
        [
            {
                "transaction_id": some_payment["transaction_id"],
                "card_number": some_payment["card_number"],
                "reported_at": next_day(store, hour=12),
            }
        ]
    )

    replacement = OnlineFeatureStore.from_snapshot(
        snapshot.path, key=tiny_key_hex.encode(), carry_over=store
    )
    assert replacement.n_events == store.n_events
    assert replacement.n_labels == store.n_labels
    request = payment("online-2", next_day(store, days=2), card, "100")
    assert replacement.features(request) == store.features(request)


def test_serving_store_refuses_a_chain_or_columns_it_does_not_know(
    snapshot: ServingSnapshot, tiny_key_hex: str
) -> None:
    transactions = pq.read_table(snapshot.table_path("stg_transactions"))
    reports = pq.read_table(snapshot.table_path("stg_fraud_reports"))
    definitions = snapshot.definitions
    key = tiny_key_hex.encode()

    extra = transactions.append_column("merchant", pa.nulls(transactions.num_rows, pa.string()))
    with pytest.raises(SnapshotError, match="online staging"):
        OnlineFeatureStore(definitions, extra, reports, key)

    reordered = dataclasses.replace(definitions, models=definitions.models[::-1])
    with pytest.raises(SnapshotError, match="feature models"):
        OnlineFeatureStore(reordered, transactions, reports, key)


def test_serving_prepared_day_gives_the_same_rows(
    store: OnlineFeatureStore, snapshot: ServingSnapshot, tiny_world: World, tiny_key_hex: str
) -> None:
    unprepared = OnlineFeatureStore.from_snapshot(snapshot.path, key=tiny_key_hex.encode())
    when = next_day(store)
    store.prepare_day(when.date())
    card, terminal = tiny_world.transactions[["card_number", "terminal_id"]].iloc[1]
    request = payment("prepared", when, card, terminal)
    assert store.features(request) == unprepared.features(request)


def test_history_columns_gather_any_ids_in_the_order_asked_across_compactions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Arrow columns the SQL reads the history from (``HistoryColumns``): rows from the
    snapshot, rows added since (still tuples) and rows merged in by a compaction, gathered by id
    in any order, are the rows that were added."""
    from orchestration.lib.serving.history import HistoryColumns, table_rows

    monkeypatch.setattr(HistoryColumns, "COMPACT_ROWS", 5)
    schema = pa.schema([("transaction_id", pa.string()), ("tx_datetime", pa.timestamp("us")),
                        ("amount", pa.float64())])
    start = datetime(2018, 4, 1, 8)

    def row(i: int) -> tuple:
        return (f"t{i}", start + timedelta(minutes=i), None if i % 7 == 0 else i * 1.5)

    columns = HistoryColumns(schema)
    snapshot = [row(i) for i in range(6)]
    columns.extend(pa.Table.from_pylist(
        [dict(zip(schema.names, r, strict=True)) for r in snapshot], schema=schema
    ), [r[0] for r in snapshot])
    rows = dict(zip((r[0] for r in snapshot), snapshot, strict=True))
    orders = (["t3", "t0", "t5"], [], ["t5", "t4", "t3", "t2", "t1", "t0"])
    for i in range(6, 20):  # compacts after t10 and t15: t16 to t19 stay recent
        rows[f"t{i}"] = row(i)
        columns.append(f"t{i}", row(i))
        ids = [f"t{i}", "t2", f"t{i - 1}", "t0", f"t{i // 2}"]
        for asked in (ids, *orders):
            table = columns.take(asked)
            assert table.schema == schema
            assert table_rows(table) == [rows[a] for a in asked]
    assert len(columns._recent) == 4


def test_a_declaration_without_event_clock_groups_still_scores_the_event(
    snapshot: ServingSnapshot, tiny_world: World, tiny_key_hex: str
) -> None:
    """The event scored is always handed to the SQL, whatever groups are declared: with no
    event-clock group it used to be left out, and its row was missing (a 500)."""
    definitions = snapshot.definitions
    without = dataclasses.replace(
        definitions, features=dataclasses.replace(definitions.features, event_groups=())
    )
    store = OnlineFeatureStore(
        without,
        pq.read_table(snapshot.table_path("stg_transactions")),
        pq.read_table(snapshot.table_path("stg_fraud_reports")),
        tiny_key_hex.encode(),
    )
    assert store.snapshot_last_day is None
    terminal = tiny_world.transactions["terminal_id"].iloc[0]
    when = datetime.combine(tiny_world.transactions["tx_datetime"].max().date(),
                            datetime.min.time()) + timedelta(days=1, hours=10)
    row = store.features(payment("alone", when, NEW_CARD, terminal))
    assert row["transaction_id"] == "alone" and row["card_nb_tx_1day"] == 1


def test_labels_with_lineage_columns_keep_the_first_without_comparing_the_lineage(
    snapshot: ServingSnapshot, tiny_world: World, tiny_key_hex: str
) -> None:
    """A staged label table with a lineage column (a file name offline, none online): the
    first-label rule ignores it (comparing a name with None used to raise: a 500)."""
    reports = pq.read_table(snapshot.table_path("stg_fraud_reports"))
    assert reports.num_rows > 0
    reports = reports.append_column(
        "_source_file", pa.array(["raw/fraud_reports/x.csv"] * reports.num_rows)
    )
    store = OnlineFeatureStore(
        snapshot.definitions, pq.read_table(snapshot.table_path("stg_transactions")), reports,
        tiny_key_hex.encode(),
    )
    known = reports.to_pylist()[0]
    card = tiny_world.transactions.set_index("transaction_id").loc[
        known["transaction_id"], "card_number"
    ]
    again = {"transaction_id": known["transaction_id"], "card_number": card,
             "reported_at": known["reported_at"]}  # the same report, delivered again online
    assert store.add_labels([again]) == 0
    later = {**again, "reported_at": known["reported_at"] + timedelta(days=1)}
    assert store.add_labels([later]) == 0  # the first report stays
    earlier = {**again, "reported_at": known["reported_at"] - timedelta(hours=1)}
    assert store.add_labels([earlier]) == 1


def test_a_label_that_proves_nothing_of_a_known_event_is_refused(
    store: OnlineFeatureStore, tiny_world: World
) -> None:
    """Issue 16: /reports took a report for an unknown id dated 9999, and one for a known
    payment with card 0000000000000000 dated year 1 (the earliest report wins: a backdated fake
    raised a terminal's risk at once). A label must name an event the service knows, carry
    what that event carries, and come after it."""
    known = tiny_world.transactions.iloc[-1]
    report = {"transaction_id": known.transaction_id, "card_number": known.card_number,
              "reported_at": known.tx_datetime.to_pydatetime() + timedelta(hours=1)}
    assert store.stage_label(report)["transaction_id"] == known.transaction_id
    other_card = tiny_world.transactions.loc[
        tiny_world.transactions["card_number"] != known.card_number, "card_number"
    ].iloc[0]
    refusals = {
        "transaction_id: no event with this id is known": {**report, "transaction_id": "t-none"},
        "card_number: not its event's": {**report, "card_number": other_card},
        "reported_at: before the time of its event": {
            **report, "reported_at": known.tx_datetime.to_pydatetime() - timedelta(seconds=1)
        },
    }
    labels_before = store.n_labels
    for says, label in refusals.items():
        with pytest.raises(UnprovenLabelError, match=says) as refused:
            store.stage_label(label)
        assert other_card not in str(refused.value) and known.card_number not in str(refused.value)
    assert store.n_labels == labels_before


def test_a_diverged_state_is_rebuilt_and_a_dead_follower_is_unready(
    tiny_build: DbtRun, tiny_definitions: FeatureDefinitions, tiny_key_hex: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16: a payment that joined the online state but was never logged (its request
    failed after) changed other payments' features and vanished on restart. The state stops
    serving at once and the follower rebuilds it, as a restart would: without that payment."""
    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(PSEUDONYMIZATION_KEY_ENV, tiny_key_hex)
    settings = get_settings("fraud")
    publish(tiny_build, tiny_definitions, settings.snapshot_dir, tiny_key_hex)
    state = ServingState(settings, ServedColumns.declared(settings.usecase),
                         tiny_key_hex.encode())
    state.follow_once()
    store = state.store
    assert store is not None
    store.features(payment("unlogged-1", next_day(store), NEW_CARD, "100"))
    in_flight = state.in_flight()
    in_flight.__enter__()  # another request, between its check and its log row on disk
    state.diverged("a prediction could not be logged")
    ready, body = state.readiness()
    assert not ready and body["reason"].startswith("rebuilding the online state")
    with pytest.raises(NotReady, match="rebuilding"), state.in_flight():
        pass  # nothing new starts while the state is rebuilt (labels neither)
    follower = threading.Thread(target=state.follow_once)
    follower.start()
    follower.join(timeout=1.0)
    assert follower.is_alive()  # the rebuild waits for the request under way to be logged
    in_flight.__exit__(None, None, None)
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert state.rebuilding is None and state.store is not store
    assert state.store.n_events == store.n_events - 1  # the unlogged payment is not in it

    # issue 16: a dead follower (no new champion or snapshot ever again) left the service ready
    state.follower_alive = lambda: False
    ready, body = state.readiness()
    assert not ready and "the follower thread stopped" in body["reason"]
