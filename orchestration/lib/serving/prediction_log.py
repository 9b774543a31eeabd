"""The scoring service's logs: one JSON line per scored event (or label sent), durable before
the response is sent.

Every event the service scores is a row (:attr:`ServedColumns.prediction_columns`): who asked
(``request_id``, ``logged_at``), what was scored (the staged event: pseudonyms, never personal
data), by which model (``model_version``), on which feature values (``features``, an object) and
with what result (the declared score, ``alert``). A retried request is a second request and gets
a second row. The labels the service is sent are logged the same way, in their own folder.

Layout under ``log_dir``::

    open/predictions-<started, UTC>-<pid>-<sequence>.jsonl      being written by a service
    closed/predictions-<started, UTC>-<pid>-<sequence>.jsonl    complete: ingestible

Group commit: request threads hand their rows to one writer thread and wait; the writer takes
every row waiting, writes them with one ``write`` and one ``fsync``, then releases their
requests. A file is closed after ``rotate_rows`` rows, after ``rotate_seconds``, and at clean
shutdown: fsynced, then renamed into ``closed/`` (atomic). A file left in ``open/`` by a process
that died is closed by :func:`close_abandoned_logs` at the next start, keeping its complete lines
only (a torn last line was never acknowledged).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd

from orchestration.lib.core.atomic import atomic_write_bytes, fsync_path, process_alive

OPEN_DIR, CLOSED_DIR = "open", "closed"
FILE_PREFIX, FILE_SUFFIX = "predictions-", ".jsonl"
COMMIT_TIMEOUT_S = 30.0
"""How long a request waits for its batch to be on disk before it fails (the disk is stuck)."""


class PredictionLogError(Exception):
    """Rows could not be made durable: the request must not be acknowledged."""


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class _Batch:
    """The rows of one request, waiting for their commit."""

    lines: bytes
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class PredictionLog:
    """Appends rows durably with group commit and rotates files; thread-safe.

    ``start()`` closes files abandoned by a dead process and starts the writer thread;
    ``close()`` commits what is waiting, closes the open file and stops the writer.
    """

    def __init__(
        self,
        log_dir: Path,
        rotate_rows: int,
        rotate_seconds: float,
        columns: Sequence[str],
    ) -> None:
        """``columns``: the fields of a row, in the order they are written (for example
        :attr:`~orchestration.lib.serving.served.ServedColumns.prediction_columns`)."""
        if rotate_rows < 1 or rotate_seconds <= 0:
            raise ValueError("rotate_rows must be >= 1 and rotate_seconds > 0")
        self.log_dir = Path(log_dir)
        self.rotate_rows = rotate_rows
        self.rotate_seconds = rotate_seconds
        self.columns = tuple(columns)
        self._pending: list[_Batch] = []
        self._wake = threading.Condition()
        self._closing = False
        self._rotate_requested = False
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._file_rows = 0
        self._file_opened = 0.0
        self._sequence = 0

    @property
    def open_dir(self) -> Path:
        return self.log_dir / OPEN_DIR

    @property
    def closed_dir(self) -> Path:
        return self.log_dir / CLOSED_DIR

    def start(self) -> PredictionLog:
        self.open_dir.mkdir(parents=True, exist_ok=True)
        self.closed_dir.mkdir(parents=True, exist_ok=True)
        close_abandoned_logs(self.log_dir)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` and return once they are on disk (raises `PredictionLogError`)."""
        if not rows:
            return
        lines = b"".join(_line(row, self.columns) for row in rows)  # serialized here, in parallel
        batch = _Batch(lines, len(rows))
        with self._wake:
            if self._closing or self._thread is None:
                raise PredictionLogError("the prediction log is not running")
            self._pending.append(batch)
            self._wake.notify()
        if not batch.done.wait(COMMIT_TIMEOUT_S):
            raise PredictionLogError(f"rows not committed after {COMMIT_TIMEOUT_S} s")
        if batch.error is not None:
            raise PredictionLogError(f"rows not committed: {batch.error}") from batch.error

    def rotate(self) -> None:
        """Close the open file into ``closed/`` now (after the rows waiting), so ingestion sees
        every row acknowledged so far; the next row starts a new file."""
        with self._wake:
            self._rotate_requested = True
            self._wake.notify()

    def close(self) -> None:
        """Commit the rows waiting, close the open file into ``closed/``, stop the writer."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing and not self._rotation_due():
                    self._wake.wait(self._until_rotation())
                batches, self._pending = self._pending, []
                closing = self._closing
                rotate, self._rotate_requested = self._rotate_requested, False
            if batches:
                self._commit(batches)
            if self._file is not None and (closing or rotate or self._rotation_due()):
                try:
                    self._close_file()
                except OSError:
                    # the rows are durable in open/; the next start closes the file
                    self._file = None
            if closing:
                return

    def _commit(self, batches: list[_Batch]) -> None:
        try:
            if self._file is None:
                self._open_file()
            assert self._file is not None
            self._file.write(b"".join(b.lines for b in batches))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file_rows += sum(b.rows for b in batches)
        except OSError as error:
            for batch in batches:
                batch.error = error
            self._abandon_file()
        for batch in batches:
            batch.done.set()

    def _rotation_due(self) -> bool:
        if self._rotate_requested:
            return True
        if self._file is None:
            return False
        age = time.monotonic() - self._file_opened
        return self._file_rows >= self.rotate_rows or age >= self.rotate_seconds

    def _until_rotation(self) -> float | None:
        if self._file is None:
            return None
        return max(0.0, self.rotate_seconds - (time.monotonic() - self._file_opened))

    def _open_file(self) -> None:
        self._sequence += 1
        started = datetime.now(UTC)
        name = f"{FILE_PREFIX}{started:%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{self._sequence:06d}"
        self._path = self.open_dir / f"{name}{FILE_SUFFIX}"
        self._file = open(self._path, "xb")  # noqa: SIM115 (kept open across commits)
        fsync_path(self.open_dir)
        self._file_rows = 0
        self._file_opened = time.monotonic()

    def _close_file(self) -> None:
        assert self._file is not None and self._path is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._path, self.closed_dir / self._path.name)
        fsync_path(self.closed_dir)
        fsync_path(self.open_dir)

    def _abandon_file(self) -> None:
        """After a failed write the file may end in a torn line: stop appending to it (it is
        closed, complete lines only, at the next start)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # closing a file whose write already failed: the error was reported
            self._file = None


def _line(row: Mapping[str, Any], columns: Sequence[str]) -> bytes:
    record = {column: row[column] for column in columns}
    return (json.dumps(record, default=_json_value, allow_nan=True) + "\n").encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be logged")


def _writer_pid(path: Path) -> int | None:
    parts = path.name.removesuffix(FILE_SUFFIX).split("-")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None




def _complete_lines(data: bytes) -> list[bytes]:
    """The lines of ``data`` that end with a newline and hold a JSON object."""
    lines = []
    for line in data.split(b"\n")[:-1]:  # what follows the last newline is torn
        try:
            if isinstance(json.loads(line), dict):
                lines.append(line + b"\n")
        except ValueError:
            continue  # a line torn by a crash in the middle of a write
    return lines


def close_abandoned_logs(log_dir: Path) -> list[Path]:
    """Close the files in ``open/`` whose writer process is gone, keeping their complete lines
    (an empty one is removed). Returns the files written to ``closed/``."""
    open_dir, closed_dir = Path(log_dir) / OPEN_DIR, Path(log_dir) / CLOSED_DIR
    if not open_dir.is_dir():
        return []
    closed_dir.mkdir(parents=True, exist_ok=True)
    closed = []
    for path in sorted(open_dir.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        pid = _writer_pid(path)
        if pid is not None and pid != os.getpid() and process_alive(pid):
            continue
        lines = _complete_lines(path.read_bytes())
        if lines:
            target = closed_dir / path.name
            atomic_write_bytes(target, b"".join(lines))
            closed.append(target)
        path.unlink()
        fsync_path(open_dir)
    return closed


def iter_records(log_dir: Path, include_open: bool = False) -> Iterator[dict[str, Any]]:
    """Every logged row as written, file by file in the order they were started (complete
    lines only); rows of ``open/`` files too with ``include_open``."""
    log_dir = Path(log_dir)
    folders = [log_dir / CLOSED_DIR] + ([log_dir / OPEN_DIR] if include_open else [])
    paths = [p for folder in folders if folder.is_dir()
             for p in folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")]
    for path in sorted(paths, key=lambda p: p.name):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # closed (renamed) meanwhile: read from closed/ in the next call
        for line in _complete_lines(data):
            yield json.loads(line)


def read_log_file(path: Path, times: Sequence[str] = ()) -> pd.DataFrame:
    """The complete rows of one log file, shaped as :func:`read_closed_logs` shapes them."""
    return _frame((json.loads(line) for line in _complete_lines(Path(path).read_bytes())), times)


def read_closed_logs(log_dir: Path, times: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of every closed log file (what ingestion may read), one column per field and
    one ``features.<name>`` column per feature (an object field is spread); ``logged_at``
    parsed in UTC, the local timestamps named in ``times`` (the event time) parsed too."""
    return _frame(iter_records(log_dir), times)


def read_all_logs(log_dir: Path, times: Sequence[str] = ()) -> pd.DataFrame:
    """Like :func:`read_closed_logs`, open files included (their complete lines)."""
    return _frame(iter_records(log_dir, include_open=True), times)


def _frame(records: Iterator[dict[str, Any]], times: Sequence[str]) -> pd.DataFrame:
    rows = list(records)
    if not rows:
        return pd.DataFrame(columns=["request_id", "logged_at"])
    frame = pd.json_normalize(rows, sep=".")
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    for column in times:
        frame[column] = pd.to_datetime(frame[column], format="ISO8601")
    return frame


ROTATION_REQUEST = "rotate-logs.request"
"""File (in the serving folder) whose content changes to ask running services to close their
open log files now: ``blueprint replay`` does, so that a day's traffic is ingestible at once."""


def request_rotation(serving_dir: Path) -> datetime:
    """Ask every running service to close its open log files; returns the moment asked."""
    asked = datetime.now(UTC)
    atomic_write_bytes(Path(serving_dir) / ROTATION_REQUEST, f"{asked.isoformat()}\n".encode())
    return asked


def rotation_token(serving_dir: Path) -> str | None:
    """The current rotation request (None if never asked); a service rotates when it changes."""
    try:
        return (Path(serving_dir) / ROTATION_REQUEST).read_text().strip() or None
    except FileNotFoundError:
        return None


def file_started(path: Path) -> datetime | None:
    """When a log file was opened, from its name."""
    parts = path.name.removeprefix(FILE_PREFIX).removesuffix(FILE_SUFFIX).split("-")
    try:
        return datetime.strptime(parts[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def wait_for_rotation(log_dirs: Sequence[Path], since: datetime, timeout_s: float) -> bool:
    """Wait until no file opened before ``since`` is left in the ``open/`` folders."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [
            path
            for log_dir in log_dirs
            for path in (Path(log_dir) / OPEN_DIR).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")
            if (started := file_started(path)) is None or started < since
        ]
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
