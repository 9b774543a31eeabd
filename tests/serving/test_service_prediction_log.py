"""The prediction log without a server: group commit, rotation, crash recovery, readers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestration.lib.serving import prediction_log
from orchestration.lib.serving.prediction_log import (
    CLOSED_DIR,
    OPEN_DIR,
    PredictionLog,
    close_abandoned_logs,
    read_all_logs,
    read_closed_logs,
)


def row(n: int) -> dict:
    return {
        "request_id": f"r{n}",
        "logged_at": datetime(2018, 8, 1, 12, tzinfo=UTC),
        "transaction_id": f"t{n}",
        "tx_datetime": datetime(2018, 8, 1, 13, 45, n % 60),
        "card_key": "k" * 64,
        "terminal_id": "3178",
        "amount": 57.3,
        "model_version": "v1",
        "features": {"amount": 57.3, "card_nb_tx_1day": n},
        "fraud_probability": 0.25,
        "alert": False,
    }


COLUMNS = tuple(row(0))
"""The fields of a row, as a use case's served columns declare them (fraud's here)."""


def files(log_dir: Path, folder: str) -> list[Path]:
    return sorted((log_dir / folder).glob("*.jsonl"))


def test_prediction_log_commits_concurrent_requests_in_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = []
    real_fsync = os.fsync

    def counted_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(prediction_log.os, "fsync", counted_fsync)
    log = PredictionLog(tmp_path, rotate_rows=10_000, rotate_seconds=3600, columns=COLUMNS).start()
    writers = [
        threading.Thread(target=lambda i=i: [log.write([row(i * 100 + k)]) for k in range(25)])
        for i in range(16)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    committed = len(fsyncs)
    log.close()

    frame = read_closed_logs(tmp_path)
    assert len(frame) == 16 * 25 and frame["transaction_id"].is_unique
    assert committed < 16 * 25  # rows of concurrent requests shared a write and an fsync
    assert files(tmp_path, OPEN_DIR) == []


def test_prediction_log_rotates_by_rows_and_by_age(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, rotate_rows=3, rotate_seconds=3600, columns=COLUMNS).start()
    for n in range(7):
        log.write([row(n)])
    assert len(files(tmp_path, CLOSED_DIR)) == 2 and len(files(tmp_path, OPEN_DIR)) == 1
    assert len(read_closed_logs(tmp_path)) == 6
    assert len(read_all_logs(tmp_path)) == 7
    log.close()
    assert len(read_closed_logs(tmp_path)) == 7 and files(tmp_path, OPEN_DIR) == []

    aged = PredictionLog(
        tmp_path / "aged", rotate_rows=1000, rotate_seconds=0.2, columns=COLUMNS
    ).start()
    aged.write([row(0)])
    deadline = datetime.now(UTC).timestamp() + 10
    while not files(tmp_path / "aged", CLOSED_DIR) and datetime.now(UTC).timestamp() < deadline:
        threading.Event().wait(0.05)
    assert len(files(tmp_path / "aged", CLOSED_DIR)) == 1  # closed while idle
    aged.close()


def test_prediction_log_closes_a_crashed_writers_file_keeping_complete_lines(
    tmp_path: Path,
) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / OPEN_DIR).mkdir(parents=True)
    crashed = tmp_path / OPEN_DIR / f"predictions-20180801T120000000000Z-{pid}-000001.jsonl"
    log = PredictionLog(tmp_path, rotate_rows=100, rotate_seconds=3600, columns=COLUMNS)
    complete = b"".join(prediction_log._line(row(n), log.columns) for n in range(3))
    crashed.write_bytes(complete + b'{"request_id": "r3", "transac')
    alive = tmp_path / OPEN_DIR / f"predictions-20180801T120000000000Z-{os.getppid()}-000001.jsonl"
    alive.write_bytes(complete)

    log.start()
    log.write([row(10)])
    log.close()

    frame = read_closed_logs(tmp_path, times=("tx_datetime",))
    assert sorted(frame["transaction_id"]) == ["t0", "t1", "t10", "t2"]
    assert not crashed.exists()
    assert alive.exists()  # another live process's file is left alone
    assert close_abandoned_logs(tmp_path) == []
    assert frame["features.card_nb_tx_1day"].tolist()[:3] == [0, 1, 2]
    assert str(frame["logged_at"].dt.tz) == "UTC"
    assert frame["tx_datetime"].dt.tz is None and frame["tx_datetime"].min().hour == 13
