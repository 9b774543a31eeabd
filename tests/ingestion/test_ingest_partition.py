"""Landing -> raw ingestion of one partition: typing, lineage, quarantine, duplicates, reruns."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from landing_builders import (
    CUSTOMERS,
    DAY,
    FRAUD_REPORTS,
    NOW,
    TRANSACTION_HEADER,
    TRANSACTIONS,
    Zones,
    csv_text,
    customer_records,
    make_pan,
    transaction_rows,
)

from orchestration.lib.ingestion import ingest, parsing
from orchestration.lib.ingestion.ingest import PartitionNotReadyError, ingest_partition
from orchestration.lib.ingestion.landing import (
    FINGERPRINT_KEY,
    partition_status,
    quarantine_records_path,
    raw_quarantine_rows_path,
    raw_snapshot_path,
)
from orchestration.lib.ingestion.parsing import SchemaChangeError
from orchestration.lib.ingestion.raw_tables import (
    QUARANTINE_RECORDS_SCHEMA,
    RAW_QUARANTINE_ROWS_SCHEMA,
)


def records_of(zones: Zones, contract=TRANSACTIONS, day: date = DAY) -> pa.Table:
    return pq.read_table(quarantine_records_path(contract, zones.quarantine, day))


def raw_rows_of(zones: Zones, contract=TRANSACTIONS, day: date = DAY) -> pa.Table:
    return pq.read_table(raw_quarantine_rows_path(contract, zones.raw / "quarantine", day))


def assert_accounted(result) -> None:
    assert result.rows_in == result.rows_written + result.quarantined_rows + result.duplicates


def test_valid_file_becomes_a_typed_snapshot_with_lineage(zones):
    rows = transaction_rows(DAY, 30)
    landing_path = zones.deliver_transactions(rows)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_in, result.rows_written, result.quarantined_rows) == (30, 30, 0)
    assert result.written and result.duplicates == 0 and result.quarantined_files == 0
    assert result.path == zones.raw / "transactions" / "date=2018-04-01" / "data.parquet"
    snapshot = pq.read_table(result.path)
    assert snapshot.schema.remove_metadata() == pa.schema(
        [
            ("transaction_id", pa.string()),
            ("tx_datetime", pa.timestamp("us")),
            ("card_number", pa.string()),
            ("terminal_id", pa.string()),
            ("amount", pa.float64()),
            ("_source_file", pa.string()),
            ("_source_sha256", pa.string()),
            ("_source_line", pa.int64()),
            ("_ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    first = snapshot.slice(0, 1).to_pylist()[0]
    assert first == {
        "transaction_id": rows[0][0],
        "tx_datetime": datetime.fromisoformat(rows[0][1]),
        "card_number": rows[0][2],
        "terminal_id": rows[0][3],
        "amount": float(rows[0][4]),
        "_source_file": landing_path.name,
        "_source_sha256": hashlib.sha256(landing_path.read_bytes()).hexdigest(),
        "_source_line": 2,
        "_ingested_at": NOW.replace(tzinfo=UTC),
    }
    assert snapshot.column("_source_line").to_pylist() == list(range(2, 32))
    assert snapshot.column("transaction_id").to_pylist() == [r[0] for r in rows]
    metadata = pq.read_metadata(result.path).metadata
    assert metadata[FINGERPRINT_KEY].decode() == result.fingerprint
    status = partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY]
    assert status.fingerprint == result.fingerprint and not status.stale and status.ready


def test_clean_partition_still_writes_empty_quarantine_files(zones):
    zones.deliver_transactions(transaction_rows(DAY, 5))
    zones.ingest(TRANSACTIONS)

    records, raw_rows = records_of(zones), raw_rows_of(zones)
    assert records.num_rows == 0 and records.schema == QUARANTINE_RECORDS_SCHEMA
    assert raw_rows.num_rows == 0 and raw_rows.schema == RAW_QUARANTINE_ROWS_SCHEMA


MALFORMED = {
    "unparseable amount": (4, "12,5O", "amount: not a number ('12,5O')"),
    "amount as words": (4, "fifty", "amount: not a number ('fifty')"),
    "negative amount": (4, "-3.50", "amount: negative ('-3.50')"),
    "infinite amount": (4, "inf", "amount: not finite ('inf')"),
    "unparseable timestamp": (
        1,
        "01/04/2018 10:00",
        "tx_datetime: not a timestamp YYYY-MM-DD HH:MM:SS ('01/04/2018 10:00')",
    ),
    "impossible timestamp": (
        1,
        "2018-04-31 25:61:00",
        "tx_datetime: not a timestamp YYYY-MM-DD HH:MM:SS ('2018-04-31 25:61:00')",
    ),
    "timestamp on another day": (
        1,
        "2018-04-02 00:00:01",
        "tx_datetime: not on business date 2018-04-01 ('2018-04-02 00:00:01')",
    ),
    "PAN failing Luhn": (2, "4000000000000003", "card_number: fails Luhn check"),
    "PAN too short": (2, "400000000000002", "card_number: not 16 digits"),
    "empty id": (0, "", "transaction_id: empty"),
    "terminal not digits": (3, "T-12", "terminal_id: not digits ('T-12')"),
    # the declared bounds (issue 16: such rows were ingested, then halted the GX check or
    # planted a card number)
    "amount above the declared maximum": (4, "1.7e308", "amount: above 100000 ('1.7e308')"),
    "terminal id shaped like a card number": (
        3, "4000000000000002", "terminal_id: not of the shape [0-9]{1,12} ('<digits removed>')"
    ),
    "id with a space": (0, "t-1 2", "transaction_id: not of the shape [A-Za-z0-9_-]{1,64} "
                                    "('t-1 2')"),
    "id longer than any string": (0, "t" * 300, "transaction_id: longer than 256 characters"),
    "id holding a card number": (0, "tx-4111111111111111",
                                 "transaction_id: looks like personal data"),
    "id holding a phone number": (0, "555-010-4477", "transaction_id: looks like personal data"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_row_is_quarantined_with_reason_and_line(zones, kind):
    column, value, reason = MALFORMED[kind]
    rows = transaction_rows(DAY, 20)
    rows[5][column] = value
    zones.deliver_transactions(rows)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_written, result.quarantined_rows) == (19, 1)
    assert_accounted(result)
    record = records_of(zones).to_pylist()
    assert [(r["line_number"], r["reason"]) for r in record] == [(7, reason)]
    assert record[0]["partition_date"] == DAY
    assert record[0]["source_file"] == result.files[0]
    raw_row = raw_rows_of(zones).to_pylist()[0]
    assert raw_row["raw_line"] == csv_text(TRANSACTION_HEADER, [rows[5]]).splitlines()[1]
    assert raw_row["row_sha256"] == hashlib.sha256(raw_row["raw_line"].encode()).hexdigest()
    assert rows[5][0] not in pq.read_table(result.path).column("transaction_id").to_pylist()
    assert sum(result.quarantine_reasons.values()) == 1


def test_row_with_a_missing_field_is_quarantined_and_the_rest_kept(zones):
    rows = transaction_rows(DAY, 20)
    rows[3] = rows[3][:4]
    rows[9] = [*rows[9], "extra"]
    zones.deliver_transactions(rows)

    result = zones.ingest(TRANSACTIONS)

    records = records_of(zones).to_pylist()
    assert [(r["line_number"], r["reason"]) for r in records] == [
        (5, "missing field"),
        (11, "extra field"),
    ]
    assert raw_rows_of(zones).column("raw_line").to_pylist() == [
        ",".join(rows[3]),
        ",".join(rows[9]),
    ]
    assert result.rows_written == 18 and result.quarantine_reasons == {
        "missing field": 1,
        "extra field": 1,
    }
    assert pq.read_table(result.path).column("_source_line").to_pylist() == [
        n for n in range(2, 22) if n not in (5, 11)
    ]


def test_unbalanced_quote_keeps_one_record_per_line(zones):
    rows = transaction_rows(DAY, 12)
    text = csv_text(TRANSACTION_HEADER, rows).splitlines(keepends=True)
    text[4] = text[4].replace(",", ',"', 1)  # opens a quote that never closes
    zones.deliver("transactions", DAY, "csv.gz", gzip.compress("".join(text).encode()))

    result = zones.ingest(TRANSACTIONS)

    assert result.rows_written == 11 and result.quarantined_rows == 1
    assert records_of(zones).column("line_number").to_pylist() == [5]
    assert raw_rows_of(zones).column("raw_line").to_pylist() == [text[4].rstrip("\n")]
    assert pq.read_table(result.path).column("_source_line").to_pylist() == [
        n for n in range(2, 14) if n != 5
    ]


def test_empty_line_and_stray_carriage_return_keep_line_numbers(zones):
    lines = csv_text(TRANSACTION_HEADER, transaction_rows(DAY, 10)).split("\n")
    lines[3] = lines[3].replace(",", "\r,", 1)
    lines.insert(6, "")
    zones.deliver("transactions", DAY, "csv.gz", gzip.compress("\n".join(lines).encode()))

    result = zones.ingest(TRANSACTIONS)

    assert [(r["line_number"], r["reason"]) for r in records_of(zones).to_pylist()] == [
        (4, "unparseable CSV line"),
        (7, "empty line"),
    ]
    assert pq.read_table(result.path).column("_source_line").to_pylist() == [
        2,
        3,
        5,
        6,
        8,
        9,
        10,
        11,
        12,
    ]


def test_reasons_never_contain_a_card_number(zones):
    rows = transaction_rows(DAY, 30)
    pans = [rows[i][2] for i in range(30)]
    rows[1][2] = rows[1][2][:-1] + str((int(rows[1][2][-1]) + 1) % 10)  # Luhn fails
    rows[2][2] = rows[2][2] + "9"  # 17 digits
    rows[3][1], rows[3][2] = rows[3][2], rows[3][1]  # PAN in the timestamp column
    rows[4][4] = rows[4][2] + "x"  # PAN-like text in the amount column
    rows[5][3] = "4111 1111 1111 1111"  # spaced PAN in the terminal column
    zones.deliver_transactions(rows)

    zones.ingest(TRANSACTIONS)

    reasons = records_of(zones).column("reason").to_pylist()
    assert len(reasons) == 5
    pans += [rows[1][2], rows[2][2], "4111111111111111"]
    for reason in reasons:
        assert not any(pan in reason for pan in pans), reason
        assert not re.search(r"(?:\d[ -]?){12,}\d", reason), reason


def test_duplicate_delivery_adds_nothing(zones):
    rows = transaction_rows(DAY, 20)
    rows[7][4] = "oops"
    rows[8] = rows[8][:4]  # no usable key: de-duplicated on the line's text
    rows[9][0] = ""
    first = zones.deliver_transactions(rows, hour=2)
    zones.deliver_transactions(rows, hour=5)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_in, result.rows_written, result.duplicates) == (40, 17, 20)
    assert result.quarantined_rows == 3
    assert_accounted(result)
    snapshot = pq.read_table(result.path)
    assert set(snapshot.column("_source_file").to_pylist()) == {first.name}
    assert records_of(zones).column("source_file").to_pylist() == [first.name] * 3


def test_a_corrected_redelivery_wins_and_the_superseded_row_is_recorded(zones):
    """A later delivery of a key with other content is a correction: it wins, and the row it
    supersedes is quarantined with the reason (it was first-delivery-wins, the correction
    dropped with a count only: issue 16). Identical repeats stay duplicates; new keys are added."""
    early = transaction_rows(DAY, 10)
    late = [list(r) for r in early[:3]] + transaction_rows(DAY, 2, first_id=100)
    late[0][4] = "999.99"  # a corrected amount for an already delivered key
    zones.deliver_transactions(late, hour=9)  # written first, but delivered later
    zones.deliver_transactions(early, hour=2)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_written, result.duplicates, result.quarantined_rows) == (12, 2, 1)
    assert_accounted(result)
    snapshot = {r["transaction_id"]: r for r in pq.read_table(result.path).to_pylist()}
    assert snapshot["t-0"]["amount"] == 999.99
    assert snapshot["t-0"]["_source_file"].endswith("T090000.csv.gz")
    assert {"t-100", "t-101"} <= set(snapshot)
    (record,) = records_of(zones).to_pylist()
    assert record["source_file"].endswith("T020000.csv.gz") and record["line_number"] == 2
    assert record["reason"] == "transaction_id: superseded by a later delivery of its key"
    assert result.quarantine_reasons == {
        "transaction_id: superseded by a later delivery of its key": 1
    }


def test_a_stale_file_delivered_again_after_a_correction_does_not_undo_it(zones):
    """Deliveries X, then a correction Y, then X again (an old file re-sent): the third is a
    byte-identical repeat of a delivery already superseded, a duplicate; the correction stays
    (the review asked which wins: the newest content, not the newest copy of old content)."""
    original = transaction_rows(DAY, 3)
    corrected = [list(r) for r in original]
    corrected[0][4] = "999.99"
    zones.deliver_transactions(original, hour=2)
    zones.deliver_transactions(corrected, hour=5)
    zones.deliver_transactions(original, hour=9)

    result = zones.ingest(TRANSACTIONS)

    assert_accounted(result)
    snapshot = {r["transaction_id"]: r for r in pq.read_table(result.path).to_pylist()}
    assert snapshot["t-0"]["amount"] == 999.99 and len(snapshot) == 3
    assert result.quarantine_reasons == {
        "transaction_id: superseded by a later delivery of its key": 1
    }


def test_a_valid_redelivery_of_a_key_first_delivered_invalid_is_kept(zones):
    """A fraud-reports file whose last line was cut, then delivered again intact: the intact
    report is kept and the cut line quarantined with its reason (de-duplication ignored
    validity: the report was lost, with no quarantine record; issue 16)."""
    rows = [[f"t-{i}", make_pan(i), f"2018-04-01 0{i}:00:00"] for i in range(3)]
    cut = [list(r) for r in rows]
    cut[-1][2] = "2018-04-01 02:0"  # the line cut mid-value: the key is there, the time not
    zones.deliver_fraud_reports(cut, hour=2)
    zones.deliver_fraud_reports(rows, hour=8)

    result = zones.ingest(FRAUD_REPORTS)

    assert (result.rows_written, result.duplicates, result.quarantined_rows) == (3, 2, 1)
    assert_accounted(result)
    snapshot = pq.read_table(raw_snapshot_path(FRAUD_REPORTS, zones.raw, DAY)).to_pylist()
    assert sorted(r["transaction_id"] for r in snapshot) == ["t-0", "t-1", "t-2"]
    (record,) = records_of(zones, FRAUD_REPORTS).to_pylist()
    assert record["reason"].startswith("reported_at: not a timestamp")
    assert record["source_file"].endswith("T020000.csv")


def test_an_invalid_redelivery_of_a_key_already_delivered_valid_is_quarantined(zones):
    """The other way round: the valid row stays, the broken re-delivery is recorded, not
    counted away as a duplicate."""
    rows = transaction_rows(DAY, 5)
    broken = [list(r) for r in rows]
    broken[1][4] = "1.7e308"
    zones.deliver_transactions(rows, hour=2)
    zones.deliver_transactions(broken, hour=6)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_written, result.duplicates, result.quarantined_rows) == (5, 4, 1)
    assert result.quarantine_reasons == {"amount: above 100000": 1}
    snapshot = {r["transaction_id"]: r for r in pq.read_table(result.path).to_pylist()}
    assert snapshot["t-1"]["amount"] == float(rows[1][4])


def test_truncated_gzip_is_quarantined_whole_and_the_redelivery_used(zones):
    rows = transaction_rows(DAY, 40)
    broken = zones.deliver_transactions(rows, hour=2)
    intact_bytes = broken.read_bytes()
    broken.write_bytes(intact_bytes[: len(intact_bytes) // 2])
    intact = zones.deliver_transactions(rows, hour=6)

    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_in, result.rows_written, result.quarantined_files) == (40, 40, 1)
    assert result.duplicates == 0 and result.quarantined_rows == 0
    assert set(pq.read_table(result.path).column("_source_file").to_pylist()) == {intact.name}
    (record,) = records_of(zones).to_pylist()
    assert record["source_file"] == broken.name and record["line_number"] is None
    assert record["reason"].startswith("unreadable file: ")
    assert record["row_sha256"] == hashlib.sha256(broken.read_bytes()).hexdigest()
    kept = raw_quarantine_rows_path(TRANSACTIONS, zones.raw / "quarantine", DAY).parent
    assert (kept / broken.name).read_bytes() == broken.read_bytes()
    assert result.quarantine_reasons == {"unreadable file": 1}


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        (lambda payload: payload[: len(payload) // 2], "EOFError"),
        (lambda payload: b"this is not gzip at all", "incorrect header check"),
        (lambda payload: payload[:20] + b"\xff" * 40 + payload[60:], "error"),
        (lambda payload: b"", "empty"),
        (lambda payload: gzip.compress(b"transaction_id,\xff\xfe\n"), "not UTF-8"),
    ],
    ids=["truncated", "not gzip", "corrupt deflate", "empty", "not UTF-8"],
)
def test_every_kind_of_unreadable_file_is_quarantined_whole(zones, damage, detail):
    broken = zones.deliver_transactions(transaction_rows(DAY, 40), hour=2)
    broken.write_bytes(damage(broken.read_bytes()))
    zones.deliver_transactions(transaction_rows(DAY, 40), hour=6)

    assert partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY].unreadable_files == (
        broken.name,
    )
    result = zones.ingest(TRANSACTIONS)

    assert (result.rows_in, result.rows_written, result.quarantined_files) == (40, 40, 1)
    (reason,) = records_of(zones).column("reason").to_pylist()
    assert reason.startswith(f"unreadable file: {broken.name}: ") and detail in reason


def test_partition_with_only_a_truncated_file_is_not_ready(zones):
    broken = zones.deliver_transactions(transaction_rows(DAY, 40))
    broken.write_bytes(broken.read_bytes()[:-30])

    status = partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY]
    assert not status.ready and status.stale and status.unreadable_files == (broken.name,)
    with pytest.raises(PartitionNotReadyError, match=rf"2018-04-01.*{re.escape(broken.name)}"):
        zones.ingest(TRANSACTIONS)
    assert not zones.raw.exists() and not zones.quarantine.exists()


def test_partition_without_landing_files_is_not_ready(zones):
    with pytest.raises(PartitionNotReadyError, match="2018-04-01"):
        zones.ingest(TRANSACTIONS)


def test_reingesting_an_unchanged_partition_changes_nothing(zones):
    rows = transaction_rows(DAY, 20)
    rows[2][4] = "bad"
    zones.deliver_transactions(rows)
    first = zones.ingest(TRANSACTIONS)
    paths = [
        first.path,
        quarantine_records_path(TRANSACTIONS, zones.quarantine, DAY),
        raw_quarantine_rows_path(TRANSACTIONS, zones.raw / "quarantine", DAY),
    ]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths]

    again = ingest_partition(
        TRANSACTIONS, "2018-04-01", zones.landing, zones.raw, zones.quarantine, now=datetime.now()
    )

    assert not again.written
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths] == before
    assert replace(again, written=True) == first


def test_late_delivery_rewrites_the_snapshot(zones):
    zones.deliver_transactions(transaction_rows(DAY, 10))
    first = zones.ingest(TRANSACTIONS)
    zones.deliver_transactions(transaction_rows(DAY, 5, first_id=50), hour=20)

    assert partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY].stale
    second = zones.ingest(TRANSACTIONS)

    assert second.written and second.fingerprint != first.fingerprint
    assert second.rows_written == 15 and pq.read_table(second.path).num_rows == 15
    assert not partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY].stale


def test_contract_version_is_part_of_the_fingerprint(zones):
    zones.deliver_transactions(transaction_rows(DAY, 3))
    first = zones.ingest(TRANSACTIONS)
    bumped = replace(TRANSACTIONS, version=TRANSACTIONS.version + 1)
    assert partition_status(bumped, zones.landing, zones.raw)[DAY].stale
    assert zones.ingest(bumped).fingerprint != first.fingerprint
    assert not partition_status(bumped, zones.landing, zones.raw)[DAY].stale
    assert partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY].stale


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ([*TRANSACTION_HEADER, "merchant"], ["merchant"]),
        (TRANSACTION_HEADER[:-1], ["amount"]),
        ([*TRANSACTION_HEADER[:-1], "amt"], ["amt", "amount"]),
    ],
    ids=["gained", "lost", "renamed"],
)
def test_changed_header_is_a_schema_change_and_writes_nothing(zones, header, named):
    zones.deliver_transactions(transaction_rows(DAY, 10))
    first = zones.ingest(TRANSACTIONS)
    before = first.path.read_bytes()
    records_before = records_of(zones)
    rows = [r + ["m-1"] * (len(header) - len(r)) for r in transaction_rows(DAY, 10, 100)]
    changed = zones.deliver_transactions([r[: len(header)] for r in rows], hour=8, header=header)

    with pytest.raises(SchemaChangeError) as raised:
        zones.ingest(TRANSACTIONS)

    message = str(raised.value)
    assert changed.name in message and all(f"'{column}'" in message for column in named)
    assert first.path.read_bytes() == before
    assert records_of(zones).equals(records_before)


def test_amount_turned_text_is_a_type_change_not_malformed_rows(zones):
    zones.deliver_transactions(transaction_rows(DAY, 20))
    first = zones.ingest(TRANSACTIONS)
    before = first.path.read_bytes()
    rows = transaction_rows(DAY, 20, first_id=100)
    for row in rows[:11]:
        row[4] = "fifty"
    changed = zones.deliver_transactions(rows, hour=8)

    with pytest.raises(SchemaChangeError, match=rf"{re.escape(changed.name)}.*'amount'"):
        zones.ingest(TRANSACTIONS)
    assert first.path.read_bytes() == before

    tolerant = replace(TRANSACTIONS, type_change_share=0.6)
    result = zones.ingest(tolerant)
    assert result.quarantine_reasons == {"amount: not a number": 11}


def test_empty_fraud_report_day_gives_an_empty_typed_snapshot(zones):
    zones.deliver_fraud_reports([])

    result = zones.ingest(FRAUD_REPORTS)

    assert (result.rows_in, result.rows_written) == (0, 0)
    snapshot = pq.read_table(raw_snapshot_path(FRAUD_REPORTS, zones.raw, DAY))
    assert snapshot.num_rows == 0
    assert snapshot.schema.field("reported_at").type == pa.timestamp("us")


def test_fraud_reports_are_checked_against_the_report_day(zones):
    rows = [[f"t-{i}", make_pan(i), f"2018-04-01 0{i}:00:00"] for i in range(3)] + [
        ["t-9", make_pan(9), "2018-03-30 10:00:00"]
    ]
    zones.deliver_fraud_reports(rows)

    result = zones.ingest(FRAUD_REPORTS)

    assert result.rows_written == 3
    assert result.quarantine_reasons == {"reported_at: not on business date 2018-04-01": 1}


def test_customer_snapshot_from_json_lines(zones):
    records = customer_records(DAY, 12)
    records[3]["signup_date"] = "2018-04-02"
    records[4]["date_of_birth"] = "1980-02-30"
    records[5]["email"] = None
    zones.deliver_customers(records)

    result = zones.ingest(CUSTOMERS)

    assert result.rows_written == 9
    reasons = {r["line_number"]: r["reason"] for r in records_of(zones, CUSTOMERS).to_pylist()}
    assert reasons == {
        4: "signup_date: after business date 2018-04-01 ('2018-04-02')",
        5: "date_of_birth: not a date YYYY-MM-DD",
        6: "email: empty",
    }
    snapshot = pq.read_table(result.path)
    assert snapshot.schema.field("signup_date").type == pa.date32()
    assert snapshot.column("date_of_birth").to_pylist()[0] == date(1980, 2, 29)
    assert snapshot.column("_source_line").to_pylist()[:3] == [1, 2, 3]


@pytest.mark.parametrize(("change", "named"), [("add", "loyalty_tier"), ("drop", "phone")])
def test_customer_record_with_unknown_or_missing_key_is_a_schema_change(zones, change, named):
    records = customer_records(DAY, 5)
    if change == "add":
        records[2]["loyalty_tier"] = "gold"
    else:
        del records[2]["phone"]
    path = zones.deliver_customers(records)

    with pytest.raises(SchemaChangeError, match=rf"{re.escape(path.name)}.*'{named}'"):
        zones.ingest(CUSTOMERS)
    assert not zones.raw.exists()


def test_a_days_landing_files_are_found_without_reading_the_other_days(zones):
    """A partition lists only its own day's deliveries, in delivery order, exactly as the whole
    listing has them; names of other days, other sources and partial uploads are skipped."""
    from datetime import timedelta

    from orchestration.lib.ingestion.landing import landing_files

    days = [DAY + timedelta(days=i) for i in range(3)]
    for day in days:
        zones.deliver_transactions(transaction_rows(day, 2), day=day, hour=5)
        zones.deliver_transactions(transaction_rows(day, 2), day=day, hour=2)
    folder = zones.landing / "transactions"
    (folder / f"transactions_{DAY.isoformat()}__d20180402T020000.csv.gz.part").write_bytes(b"x")
    (folder / f"transactions_{DAY.isoformat()}__broken.csv.gz").write_bytes(b"x")

    everything = landing_files(TRANSACTIONS, zones.landing)
    assert sorted(everything) == days
    for day in days:
        one = landing_files(TRANSACTIONS, zones.landing, day)
        assert list(one) == [day]
        assert [f.path for f in one[day]] == [f.path for f in everything[day]]
        assert [f.delivery_id[-6:] for f in one[day]] == ["020000", "050000"]
    assert landing_files(TRANSACTIONS, zones.landing, DAY + timedelta(days=9)) == {}


def _customer_lines(count: int = 6) -> list[str]:
    return [json.dumps(r) for r in customer_records(DAY, count)]


def _edited(edit) -> str:
    lines = _customer_lines()
    edit(lines)
    return "".join(line + "\n" for line in lines)


def _set(index: int, key: str, value) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        record = json.loads(lines[index])
        record[key] = value
        lines[index] = json.dumps(record)

    return edit


JSON_LINES_FILES = {
    "clean": _edited(lambda lines: None),
    "crlf line ends, escapes, non-ASCII": _edited(
        lambda lines: [
            _set(1, "name", "Zoë \"Q\" \\ Müller\t")(lines),
            lines.__setitem__(slice(None), [line + "\r" for line in lines]),
        ]
    ),
    "blank line": _edited(lambda lines: lines.insert(2, "")),
    "whitespace-only line": _edited(lambda lines: lines.insert(2, "  \t")),
    "two objects on a line": _edited(lambda lines: lines.__setitem__(1, lines[1] + lines[2])),
    "null value": _edited(_set(2, "email", None)),
    "number value": _edited(_set(2, "phone", 5551234)),
    "nested value": _edited(_set(2, "address", {"street": "Main"})),
    "repeated key": _edited(lambda lines: lines.__setitem__(2, lines[2][:-1] + ', "name": "B"}')),
    "not JSON": _edited(lambda lines: lines.__setitem__(3, lines[3][:-5])),
    "not an object": _edited(lambda lines: lines.__setitem__(3, "[1, 2]")),
    "missing key": _edited(
        lambda lines: lines.__setitem__(1, json.dumps(
            {k: v for k, v in json.loads(lines[1]).items() if k != "phone"}
        ))
    ),
}


@pytest.mark.parametrize("kind", list(JSON_LINES_FILES))
def test_arrow_json_reader_gives_what_the_line_by_line_path_gives(tmp_path, kind, monkeypatch):
    """JSON lines are read by Arrow's JSON reader when every line is one object of strings with
    the contract's keys, line by line otherwise: both paths must write the same snapshot and
    quarantine, or stop with the same error. Arrow must take the clean files."""
    text = JSON_LINES_FILES[kind]
    arrow = parsing._jsonl_columns_arrow(CUSTOMERS, text.encode(), parsing._split_lines(text))
    assert (arrow is not None) == (kind in ("clean", "crlf line ends, escapes, non-ASCII"))

    def outcome(home) -> object:
        other = Zones(home)
        other.deliver("customers", DAY, "jsonl.gz", gzip.compress(text.encode(), mtime=0))
        try:
            result = other.ingest(CUSTOMERS)
        except SchemaChangeError as error:
            return str(error)
        return (
            replace(result, path=None),
            pq.read_table(result.path),
            records_of(other, CUSTOMERS),
            raw_rows_of(other, CUSTOMERS),
        )

    fast = outcome(tmp_path / "fast")
    monkeypatch.setattr(parsing, "_jsonl_columns_arrow", lambda *args: None)
    slow = outcome(tmp_path / "slow")
    if isinstance(slow, str):
        assert fast == slow
        return
    assert fast[0] == slow[0]
    for ours, theirs in zip(fast[1:], slow[1:], strict=True):
        assert ours.equals(theirs, check_metadata=True)
    assert fast[0].rows_in == len(parsing._split_lines(text))


def test_partitions_ingested_in_parallel_match_one_at_a_time(tmp_path):
    """`ingest_partitions` with threads writes what `ingest_partition` writes day by day, yields
    in the order asked, and yields a partition's `IngestionError` in its place."""
    from datetime import timedelta

    days = [DAY + timedelta(days=i) for i in range(6)]
    missing = DAY + timedelta(days=30)

    def build(home) -> Zones:
        zones = Zones(home)
        for i, day in enumerate(days):
            rows = transaction_rows(day, 40 + i, first_id=1000 * i)
            rows[3][4] = "-1.00"  # one quarantined row a day
            zones.deliver_transactions(rows, day=day)
        return zones

    serial = build(tmp_path / "serial")
    expected = [serial.ingest(TRANSACTIONS, day) for day in days]
    parallel = build(tmp_path / "parallel")
    outcomes = list(
        ingest.ingest_partitions(
            TRANSACTIONS, [*days[:3], missing, *days[3:]], parallel.landing, parallel.raw,
            parallel.quarantine, now=NOW, workers=3,
        )
    )

    assert [day for day, _ in outcomes] == [*days[:3], missing, *days[3:]]
    error = outcomes.pop(3)[1]
    assert isinstance(error, PartitionNotReadyError) and missing.isoformat() in str(error)
    for (day, result), want in zip(outcomes, expected, strict=True):
        assert replace(result, path=None) == replace(want, path=None)
        assert result.quarantined_rows == 1
        assert pq.read_table(result.path).equals(pq.read_table(want.path), check_metadata=True)
        assert records_of(parallel, day=day).equals(records_of(serial, day=day))
