"""Injected source faults are real, recorded exactly, and nothing else is broken."""

from __future__ import annotations

import gzip
import zlib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sim_files import (
    csv_rows,
    delivered_at,
    faults_json,
    landing_files,
    read_transactions,
    transaction_row_problem,
    truth,
    world_json,
)

from simulator import WorldConfig, simulate

KINDS = {"malformed_row", "duplicate_delivery", "late_delivery", "truncated_gzip"}


def _folder(home: Path) -> Path:
    return home / "landing" / "transactions"


def _entries(home: Path, kind: str) -> list[dict]:
    return [e for e in faults_json(home) if e["kind"] == kind]


def test_every_kind_is_injected_and_counted(faulty_world):
    manifest = faults_json(faulty_world)
    assert {e["kind"] for e in manifest} == KINDS
    counts = world_json(faulty_world)["summary"]["n_faults_by_kind"]
    assert counts == {kind: len(_entries(faulty_world, kind)) for kind in KINDS}


def test_different_kinds_never_hit_the_same_day(faulty_world):
    kinds_by_day: dict[str, set[str]] = {}
    for entry in faults_json(faulty_world):
        kinds_by_day.setdefault(entry["date"], set()).add(entry["kind"])
    assert all(len(kinds) == 1 for kinds in kinds_by_day.values())


def test_malformed_rows_are_malformed_where_the_manifest_says(faulty_world):
    record_ids = set(truth(faulty_world)["transaction_id"])
    for entry in _entries(faulty_world, "malformed_row"):
        data = gzip.decompress((_folder(faulty_world) / entry["file"]).read_bytes()).decode()
        fields = csv_rows(data)[entry["line"] - 1]
        problem = transaction_row_problem(fields, date.fromisoformat(entry["date"]))
        expected = {
            "unparseable_amount": "amount",
            "missing_field": "field_count",
            "bad_timestamp": "tx_datetime",
        }[entry["reason"]]
        assert problem == expected, entry
        assert fields[0] == entry["transaction_id"]
        assert entry["transaction_id"] not in record_ids, "an invalid row counted as valid"


def test_all_other_rows_of_readable_files_are_valid(faulty_world):
    """The manifest lists every broken row: the rest of each readable file is clean."""
    truncated = {e["file"] for e in _entries(faulty_world, "truncated_gzip")}
    recorded = {(e["file"], e["line"]) for e in _entries(faulty_world, "malformed_row")}
    found, ids = set(), []
    for name, match in landing_files(faulty_world, "transactions").items():
        if name in truncated:
            continue
        rows = csv_rows(gzip.decompress((_folder(faulty_world) / name).read_bytes()).decode())
        business_date = date.fromisoformat(match["date"])
        for line, fields in enumerate(rows[1:], start=2):
            if transaction_row_problem(fields, business_date):
                found.add((name, line))
            else:
                ids.append(fields[0])
    assert found == recorded
    record = truth(faulty_world)
    duplicated = sum(
        (record["tx_datetime"].dt.date.astype(str) == e["date"]).sum()
        for e in _entries(faulty_world, "duplicate_delivery")
    )
    assert len(ids) == len(record) + duplicated
    assert set(ids) == set(record["transaction_id"])


def test_truncated_file_fails_and_its_redelivery_is_intact(faulty_world):
    for entry in _entries(faulty_world, "truncated_gzip"):
        broken = _folder(faulty_world) / entry["file"]
        with pytest.raises((EOFError, gzip.BadGzipFile, zlib.error)):
            gzip.decompress(broken.read_bytes())
        files = landing_files(faulty_world, "transactions")
        first, again = files[entry["file"]], files[entry["redelivered_as"]]
        assert first["date"] == again["date"] == entry["date"]
        assert delivered_at(again) == delivered_at(first) + timedelta(days=1)
        redelivered = read_transactions(_folder(faulty_world) / entry["redelivered_as"])
        record = truth(faulty_world)
        assert (
            len(redelivered) == (record["tx_datetime"].dt.date.astype(str) == entry["date"]).sum()
        )


def test_duplicate_delivery_is_byte_identical(faulty_world):
    for entry in _entries(faulty_world, "duplicate_delivery"):
        first, second = (_folder(faulty_world) / name for name in entry["files"])
        assert first.read_bytes() == second.read_bytes()
        files = landing_files(faulty_world, "transactions")
        assert delivered_at(files[second.name]) > delivered_at(files[first.name])


def test_late_delivery_arrives_after_later_days(faulty_world):
    files = landing_files(faulty_world, "transactions")
    for entry in _entries(faulty_world, "late_delivery"):
        same_day = [name for name, match in files.items() if match["date"] == entry["date"]]
        assert same_day == [entry["file"]]
        business = datetime.combine(date.fromisoformat(entry["date"]), datetime.min.time())
        assert delivered_at(files[entry["file"]]) == business + timedelta(days=4, hours=1)
        assert entry["delivered_at"] == str(business + timedelta(days=4, hours=1))
        later_days = [delivered_at(m) for m in files.values() if m["date"] > entry["date"]]
        assert sum(moment < delivered_at(files[entry["file"]]) for moment in later_days) >= 2
        read_transactions(_folder(faulty_world) / entry["file"])


def test_a_ten_day_world_gets_every_kind(tmp_path):
    config = WorldConfig(n_customers=50, n_terminals=100, n_days=10, faults=True)
    summary = simulate(config, tmp_path, progress=False)["summary"]
    assert all(count >= 1 for count in summary["n_faults_by_kind"].values())
    assert {e["kind"] for e in faults_json(tmp_path)} == KINDS
