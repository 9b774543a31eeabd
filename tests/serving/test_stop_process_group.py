"""Stopping what Blueprint started works even when the process ignores SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from orchestration.lib.serving.process import stop_process_group

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)"
)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period():
    process = subprocess.Popen(
        [sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    stop_process_group(process.pid, timeout_s=1.0)
    assert process.wait(timeout=10) == -9  # SIGKILL, not a clean exit
    assert time.monotonic() - started >= 1.0  # SIGTERM got its chance first
    assert not _alive(process.pid)


def test_a_group_that_honours_sigterm_stops_without_waiting_for_the_timeout():
    honours = IGNORES_SIGTERM.replace("signal.SIG_IGN", "signal.SIG_DFL")
    process = subprocess.Popen(
        [sys.executable, "-c", honours], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    stop_process_group(process.pid, timeout_s=30.0)
    assert time.monotonic() - started < 10  # it did not wait out the 30 s for SIGKILL
    assert not _alive(process.pid)
