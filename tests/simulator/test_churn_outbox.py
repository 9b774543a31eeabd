"""The churn world's usage faults as the manifest records them, and holding days back."""

from __future__ import annotations

import gzip
import zlib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from churn_files import (
    NAME,
    csv_rows,
    delivered_at,
    faults_json,
    hashes,
    landing_files,
    read_csv,
    usage_row_problem,
    world_json,
)

from simulator.churn import ChurnConfig, deliver, held_days, simulate

KINDS = {"malformed_row", "duplicate_delivery", "late_delivery", "truncated_gzip"}


def _usage(home: Path) -> Path:
    return home / "landing" / "usage"


def _entries(home: Path, kind: str) -> list[dict]:
    return [e for e in faults_json(home) if e["kind"] == kind]


def test_every_kind_of_fault_is_injected_and_counted(churn_faulty_world):
    manifest = faults_json(churn_faulty_world)
    assert {e["kind"] for e in manifest} == KINDS
    counts = world_json(churn_faulty_world)["summary"]["n_faults_by_kind"]
    assert counts == {kind: len(_entries(churn_faulty_world, kind)) for kind in KINDS}
    days = [e["date"] for e in manifest if e["kind"] != "malformed_row"]
    assert len(days) == len(set(days)), "two file faults on one day"


def test_the_manifest_lists_exactly_the_broken_usage_rows(churn_faulty_world):
    truncated = {e["file"] for e in _entries(churn_faulty_world, "truncated_gzip")}
    expected = {
        "unparseable_amount": "minutes",
        "missing_field": "field_count",
        "bad_timestamp": "started_at",
    }
    recorded = {
        (e["file"], e["line"]): (expected[e["reason"]], e["session_id"])
        for e in _entries(churn_faulty_world, "malformed_row")
    }
    found = {}
    for name, match in landing_files(churn_faulty_world, "usage").items():
        if name in truncated:
            continue
        rows = csv_rows(gzip.decompress((_usage(churn_faulty_world) / name).read_bytes()))
        business_date = date.fromisoformat(match["date"])
        for line, fields in enumerate(rows[1:], start=2):
            problem = usage_row_problem(fields, business_date)
            if problem:
                found[(name, line)] = (problem, fields[0])
    assert found == recorded and len(found) > 0


def test_a_truncated_usage_file_fails_and_its_redelivery_is_intact(churn_faulty_world):
    files = landing_files(churn_faulty_world, "usage")
    for entry in _entries(churn_faulty_world, "truncated_gzip"):
        with pytest.raises((EOFError, gzip.BadGzipFile, zlib.error)):
            gzip.decompress((_usage(churn_faulty_world) / entry["file"]).read_bytes())
        first, again = files[entry["file"]], files[entry["redelivered_as"]]
        assert first["date"] == again["date"] == entry["date"]
        assert delivered_at(again) == delivered_at(first) + timedelta(days=1)
        assert len(read_csv(_usage(churn_faulty_world) / entry["redelivered_as"])) > 0


def test_duplicate_and_late_usage_deliveries(churn_faulty_world):
    files = landing_files(churn_faulty_world, "usage")
    for entry in _entries(churn_faulty_world, "duplicate_delivery"):
        first, second = (_usage(churn_faulty_world) / name for name in entry["files"])
        assert first.read_bytes() == second.read_bytes()
        assert delivered_at(files[second.name]) > delivered_at(files[first.name])
    for entry in _entries(churn_faulty_world, "late_delivery"):
        assert [n for n, m in files.items() if m["date"] == entry["date"]] == [entry["file"]]
        business = datetime.combine(date.fromisoformat(entry["date"]), datetime.min.time())
        assert delivered_at(files[entry["file"]]) == business + timedelta(days=4, hours=1)
        assert entry["delivered_at"] == str(business + timedelta(days=4, hours=1))


def test_the_other_sources_are_not_faulty(churn_faulty_world, churn_faulty_config):
    for source in ("accounts", "billing", "tickets", "cancellations"):
        files = landing_files(churn_faulty_world, source)
        assert len(files) == churn_faulty_config.n_days, source


def _held(tmp_path: Path, config: ChurnConfig, hold_from: date) -> Path:
    home = tmp_path / f"held_from_{hold_from}"
    simulate(home, config, hold_from=hold_from)
    return home


def test_holding_changes_no_byte_and_deliver_replays_day_by_day(
    tmp_path, churn_faulty_config, churn_faulty_world
):
    config = churn_faulty_config
    full = hashes(churn_faulty_world / "landing")
    hold_from = config.day(config.n_days - 20)
    home = _held(tmp_path, config, hold_from)
    landing, outbox = hashes(home / "landing"), hashes(home / "simulator" / "churn" / "outbox")
    assert landing and outbox and not set(landing) & set(outbox)
    assert landing | outbox == full
    cut = datetime.combine(hold_from + timedelta(days=1), datetime.min.time())
    assert all(_delivered(name) < cut for name in landing)
    assert all(_delivered(name) >= cut for name in outbox)
    for name in ("truth.parquet", "faults.json"):
        assert (home / "simulator" / "churn" / name).read_bytes() == (
            churn_faulty_world / "simulator" / "churn" / name
        ).read_bytes()
    summary = world_json(home)["summary"]
    assert summary["held_from_date"] == hold_from.isoformat()
    days = held_days(home)
    assert summary["held_days"] == [d.isoformat() for d in days]
    assert days[0] == hold_from and days[-1] >= config.day(config.n_days - 1)
    for day in days:
        landed = deliver(home, day)
        moments = [delivered_at(NAME.match(path.name)) for path in landed]
        assert moments == sorted(moments)
        assert all((moment - timedelta(days=1)).date() == day for moment in moments)
        assert deliver(home, day) == []
        assert held_days(home) == [d for d in days if d > day]
    assert hashes(home / "landing") == full
    assert hashes(home / "simulator" / "churn" / "outbox") == {}


def _delivered(relative_name: str) -> datetime:
    return delivered_at(NAME.match(relative_name.split("/")[1]))


def test_delivering_needs_a_churn_world_that_holds_days_back(tmp_path, churn_world):
    for call in (lambda home: deliver(home, date(2018, 5, 1)), held_days):
        with pytest.raises(FileNotFoundError, match="no simulated world"):
            call(tmp_path)
        with pytest.raises(FileNotFoundError, match="without holding"):
            call(churn_world)


@pytest.mark.parametrize("offset", [-1, 0, 12])
def test_a_hold_outside_the_world_is_rejected_before_writing(tmp_path, offset):
    config = ChurnConfig(n_accounts=20, n_days=12)
    with pytest.raises(ValueError, match="hold_from"):
        simulate(tmp_path, config, hold_from=config.day(offset))
    assert list(tmp_path.iterdir()) == []
