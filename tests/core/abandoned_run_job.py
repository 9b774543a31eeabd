"""A job whose one step holds the ``warehouse`` pool until it is killed: run by
``test_abandoned_runs.py`` in a process of its own, as ``blueprint materialize`` runs a job,
then killed with ``kill -9`` mid-step."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import dagster as dg

from blueprint_cli import runs


@dg.op(pool="warehouse")
def hold_the_warehouse() -> None:
    Path(sys.argv[1]).write_text("inside the step")  # the marker: the kill lands mid-step
    time.sleep(600)


@dg.op(pool="warehouse")
def use_the_warehouse() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def holding_job() -> None:
    hold_the_warehouse()


@dg.job(executor_def=dg.in_process_executor)
def next_job() -> None:
    use_the_warehouse()


if __name__ == "__main__":
    job = next_job if sys.argv[2] == "next" else holding_job
    result = runs._execute(dg.reconstructable(job), dg.DagsterInstance.get())
    sys.exit(0 if result.success else 1)
