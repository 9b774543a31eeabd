"""Whether a process that wrote down its id is still the same process: a pid alone is not
enough, since the system reuses pids (a dead run's pid may now be anyone's)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def process_started(pid: int | None = None) -> float | None:
    """When the process ``pid`` (this one by default) started, in seconds since the epoch, as
    the system reports it; None when there is no such process."""
    try:
        return psutil.Process(os.getpid() if pid is None else pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # another user's: it exists, its start time is not ours to see
        return float("nan")


def same_process(pid: int, started: float) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (a zombie is gone; a
    process of another user whose start we cannot read counts as alive)."""
    now = process_started(pid)
    if now is None:
        return False
    return now != now or abs(now - started) < 0.01  # nan: not readable, assume alive


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` with its start time, so that a reader can tell it from a later process the
    system gave the same pid."""
    from orchestration.lib.core.atomic import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, f"{pid} {process_started(pid)!r}\n".encode())


def live_pid(path: Path) -> int | None:
    """The pid a pid file records if that process still runs; None (and the file removed) when
    it is gone or the pid now belongs to another process (a stale file is never trusted: a
    stop would signal whoever has the pid now)."""
    try:
        fields = path.read_text().split()
        pid = int(fields[0])
        started = float(fields[1])
    except (FileNotFoundError, ValueError, IndexError):
        path.unlink(missing_ok=True)  # missing, or not one this code wrote: not trusted
        return None
    if same_process(pid, started):
        return pid
    path.unlink(missing_ok=True)
    return None
