"""Atomic file replacement: readers see the old version or the new one, never a partial file.

A new version is written to a hidden temporary file in the target's folder (same file system,
so the final rename is atomic), flushed to disk, then renamed over the target. The temporary
name starts with a dot and ends in ``.tmp``, so globs such as ``*/data.parquet`` or ``*.parquet``
never pick it up. Temporary files left by a killed writer are removed by the next write of the
same target.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TMP_SUFFIX = ".tmp"
_active_temp_files: set[Path] = set()
_active_lock = threading.Lock()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _writer_pid(temp_name: str, prefix: str) -> int | None:
    """The pid encoded in a temporary file name, or None if the name is not ours."""
    middle = temp_name[len(prefix) : -len(_TMP_SUFFIX)]
    pid, _, _token = middle.partition(".")
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Delete temporary files of ``target`` whose writer is gone; return what was removed.

    A temporary file belongs to a dead writer when its process no longer exists, or when it
    was left by this process outside any write in progress (an earlier write that failed).
    """
    prefix = _temp_prefix(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    with _active_lock:
        active = set(_active_temp_files)
    for entry in os.scandir(target.parent):
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP_SUFFIX)):
            continue
        pid = _writer_pid(entry.name, prefix)
        path = Path(entry.path)
        if pid is None or path in active:
            continue
        if pid == os.getpid() or not process_alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def fsync_path(path: Path) -> None:
    """Make a file's content durable, or, for a directory, a rename inside it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``target``.

    The caller writes the whole new version to the yielded path (by any means: a Parquet
    writer, ``Path.write_bytes``...). When the block exits normally the file is fsynced and
    renamed over ``target``; when it raises, the temporary file is removed and ``target`` is
    left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    temp = target.parent / f"{_temp_prefix(target)}{os.getpid()}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
    with _active_lock:
        _active_temp_files.add(temp)
    try:
        yield temp
        fsync_path(temp)
        os.replace(temp, target)
        fsync_path(target.parent)
    finally:
        temp.unlink(missing_ok=True)
        with _active_lock:
            _active_temp_files.discard(temp)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data``."""
    with atomic_output(target) as temp:
        temp.write_bytes(data)


def append_line(target: Path, line: str) -> None:
    """Append one line to a log file durably (O_APPEND: concurrent writers never interleave
    within a line shorter than the pipe buffer)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def create_secret_once(target: Path, text: str) -> bool:
    """Write ``text`` to ``target`` readable by its owner only (mode 600 from its creation: never
    readable by anyone else, even for an instant), unless ``target`` exists: a secret another
    process created first is never replaced. Complete or absent, never partial. Returns
    whether this call created it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{_temp_prefix(target)}{os.getpid()}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.link(temp, target)  # fails if the target exists: the first secret stays
        fsync_path(target.parent)
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
