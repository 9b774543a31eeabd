"""Whether a process that wrote down its id is still the same process: a pid alone is not
enough, since the system reuses pids (a dead run's pid may now be anyone's)."""

from __future__ import annotations

import os

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
