"""partition_status: what a sensor sees, cheaply, without ingesting."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from landing_builders import DAY, TRANSACTIONS, transaction_rows

from orchestration.lib.ingestion.landing import input_fingerprint, partition_status


def test_status_per_business_date(zones):
    day2, day3 = DAY + timedelta(days=1), DAY + timedelta(days=2)
    zones.deliver_transactions(transaction_rows(DAY, 5))
    zones.deliver_transactions(transaction_rows(day2, 5), day=day2)
    broken = zones.deliver_transactions(transaction_rows(day3, 5), day=day3)
    broken.write_bytes(broken.read_bytes()[:20])
    (zones.landing / "transactions" / "notes.txt").write_text("not a delivery")
    zones.ingest(TRANSACTIONS)

    statuses = partition_status(TRANSACTIONS, zones.landing, zones.raw)

    assert list(statuses) == [DAY, day2, day3]
    assert (statuses[DAY].ready, statuses[DAY].stale) == (True, False)
    assert (statuses[day2].ready, statuses[day2].stale) == (True, True)
    assert (statuses[day3].ready, statuses[day3].stale) == (False, True)
    assert statuses[day2].snapshot_fingerprint is None
    assert statuses[DAY].files == (f"transactions_{DAY}__d20180402T020000.csv.gz",)


def test_fingerprint_depends_on_names_and_content_not_order():
    files = [("a.csv.gz", "1" * 64), ("b.csv.gz", "2" * 64)]
    assert input_fingerprint(TRANSACTIONS, files) == input_fingerprint(TRANSACTIONS, files[::-1])
    assert input_fingerprint(TRANSACTIONS, files) != input_fingerprint(
        TRANSACTIONS, [("a.csv.gz", "1" * 64), ("b.csv.gz", "3" * 64)]
    )
    assert input_fingerprint(TRANSACTIONS, files[:1]) != input_fingerprint(TRANSACTIONS, files)


def test_unchanged_files_are_not_read_again(zones, monkeypatch):
    for offset in range(5):
        day = DAY + timedelta(days=offset)
        zones.deliver_transactions(transaction_rows(day, 50), day=day)
    partition_status(TRANSACTIONS, zones.landing, zones.raw)
    reads = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: reads.append(self) or real_read_bytes(self)
    )

    partition_status(TRANSACTIONS, zones.landing, zones.raw)
    assert reads == []

    changed = zones.deliver_transactions(transaction_rows(DAY, 60))  # same name, new content
    statuses = partition_status(TRANSACTIONS, zones.landing, zones.raw)
    assert reads == [changed]
    assert statuses[DAY].stale
