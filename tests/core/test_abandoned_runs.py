"""A run whose command was killed does not block the warehouse for good (issue 16: after a
``kill -9`` of ``blueprint materialize`` mid-dbt, every later run logged "Step blocked by limit
for pool warehouse", still blocked 5 minutes later)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from blueprint_cli import runs
from orchestration.lib.core.instance import ensure_instance
from orchestration.settings import PROJECT_ROOT

JOB = [sys.executable, "-m", "tests.core.abandoned_run_job"]
BOUND_S = 120
"""What the next command may take, start included (it takes seconds)."""


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster"
    ensure_instance(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _start(marker, which: str, env) -> subprocess.Popen:
    return subprocess.Popen([*JOB, str(marker), which], cwd=PROJECT_ROOT, env=env,
                            start_new_session=True)


def _wait_for(path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_a_run_killed_mid_step_is_ended_and_its_pool_slot_freed(dagster_home, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(PROJECT_ROOT)}
    marker = tmp_path / "holding"
    holder = _start(marker, "hold", env)
    _wait_for(marker, BOUND_S)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()

    with dg.DagsterInstance.get() as instance:
        (stuck,) = instance.get_run_records(dg.RunsFilter(statuses=list(runs.IN_PROGRESS)))
        pool = instance.event_log_storage.get_concurrency_info("warehouse")
        assert pool.claimed_slots, "the dead run holds the warehouse's slot"

    # the next command ends the dead run and gets the slot
    following = _start(tmp_path / "unused", "next", env)
    assert following.wait(timeout=BOUND_S) == 0

    with dg.DagsterInstance.get() as instance:
        dead = instance.get_run_by_id(stuck.dagster_run.run_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots
        failure = instance.get_records_for_run(
            dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert "is gone" in failure[0].event_log_entry.dagster_event.message


def test_a_live_commands_run_is_left_alone(dagster_home, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(PROJECT_ROOT)}
    marker = tmp_path / "holding"
    holder = _start(marker, "hold", env)
    try:
        _wait_for(marker, BOUND_S)
        with dg.DagsterInstance.get() as instance:
            assert runs.end_abandoned_runs(instance) == []
            (running,) = instance.get_run_records(dg.RunsFilter(statuses=list(runs.IN_PROGRESS)))
            assert running.dagster_run.tags[runs.OWNER_PID_TAG] == str(holder.pid)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
