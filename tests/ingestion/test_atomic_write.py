"""Atomic replacement: a crash mid-write keeps the previous version; temp files stay unglobbed."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap

import duckdb
import pyarrow.parquet as pq
import pytest
from landing_builders import DAY, TRANSACTIONS, transaction_rows

from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.ingestion import ingest, landing
from orchestration.settings import PROJECT_ROOT


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "part" / "data.parquet"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["data.parquet"]


def test_failed_write_leaves_the_previous_version_and_no_temp_file(tmp_path):
    target = tmp_path / "data.parquet"
    target.write_bytes(b"previous")

    with pytest.raises(RuntimeError), atomic_output(target) as temp:
        temp.write_bytes(b"half of the new")
        raise RuntimeError("crash")

    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["data.parquet"]


def test_killed_writer_leaves_previous_version_and_next_write_cleans_up(tmp_path):
    partition = tmp_path / "transactions" / "date=2018-04-01"
    target = partition / "data.parquet"
    atomic_write_bytes(target, b"previous version")
    writer = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from orchestration.lib.core.atomic import atomic_output
        with atomic_output(Path({str(target)!r})) as temp:
            with open(temp, "wb") as out:
                out.write(b"part of the new vers")
                out.flush()
            print("writing", flush=True)
            time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "writing"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    leftovers = [p for p in partition.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".data.parquet.")
    assert target.read_bytes() == b"previous version"
    assert list(tmp_path.glob("*/*/data.parquet")) == [target]
    assert list(tmp_path.glob("*/*/*.parquet")) == [target]

    atomic_write_bytes(target, b"next version")
    assert list(partition.iterdir()) == [target] and target.read_bytes() == b"next version"


def test_crash_while_writing_a_new_snapshot_keeps_the_previous_one(zones, monkeypatch):
    zones.deliver_transactions(transaction_rows(DAY, 10))
    first = zones.ingest(TRANSACTIONS)
    before = first.path.read_bytes()
    zones.deliver_transactions(transaction_rows(DAY, 5, first_id=50), hour=20)
    real_write_table = pq.write_table

    def write_half_then_crash(table, where, **kwargs):
        if ".data.parquet." not in str(where):
            return real_write_table(table, where, **kwargs)
        buffer = io.BytesIO()
        real_write_table(table, buffer, **kwargs)
        with open(where, "wb") as out:
            out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError("disk went away")

    monkeypatch.setattr(ingest.pq, "write_table", write_half_then_crash)
    with pytest.raises(OSError, match="disk went away"):
        zones.ingest(TRANSACTIONS)

    assert first.path.read_bytes() == before
    assert pq.read_table(first.path).num_rows == 10
    glob = str(zones.raw / "*" / "*" / "data.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}')").fetchall() == [(10,)]
    assert sorted(p.name for p in first.path.parent.iterdir()) == ["data.parquet"]
    status = landing.partition_status(TRANSACTIONS, zones.landing, zones.raw)[DAY]
    assert status.stale

    monkeypatch.undo()
    assert zones.ingest(TRANSACTIONS).rows_written == 15
