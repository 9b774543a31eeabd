"""A failed ingestion run is retried (issue 16: the landing sensor's run key was the plan's, so
a plan whose run failed, a transient failure included, was never started again), a bounded
number of times, never in a loop every 30 s."""

from __future__ import annotations

from datetime import date

import dagster as dg

from orchestration.defs.ingestion import automation
from orchestration.defs.ingestion.automation import PLAN_TAG, next_attempt
from orchestration.lib.ingestion.planning import IngestionPlan

PLAN = IngestionPlan(stale={"transactions": [date(2018, 4, 2)]}, waiting={},
                     fingerprint="f00d")
REASON = "landing_file_sensor"


@dg.op
def failing_ingestion():
    raise OSError("the disk was full")


@dg.job
def data_job():
    failing_ingestion()


def _fail(instance: dg.DagsterInstance) -> None:
    result = data_job.execute_in_process(
        instance=instance, raise_on_error=False,
        tags={PLAN_TAG: PLAN.fingerprint, "blueprint/trigger": REASON},
    )
    assert not result.success


def test_a_failed_plan_is_retried_after_a_pause_and_at_most_three_times(monkeypatch):
    with dg.instance_for_test() as instance:
        first = next_attempt(instance, PLAN, REASON)
        assert isinstance(first, dg.RunRequest) and first.tags[PLAN_TAG] == "f00d"
        _fail(instance)
        waiting = next_attempt(instance, PLAN, REASON)
        assert isinstance(waiting, dg.SkipReason) and "retrying after" in waiting.skip_message

        monkeypatch.setattr(automation, "RETRY_AFTER_S", 0)
        second = next_attempt(instance, PLAN, REASON)
        assert isinstance(second, dg.RunRequest)
        assert second.run_key == f"{REASON}-f00d-attempt2" != first.run_key
        _fail(instance)
        third = next_attempt(instance, PLAN, REASON)
        assert isinstance(third, dg.RunRequest) and third.run_key.endswith("-attempt3")
        _fail(instance)
        given_up = next_attempt(instance, PLAN, REASON)
        assert isinstance(given_up, dg.SkipReason)
        assert "failed 3 times" in given_up.skip_message


def test_a_plan_whose_run_is_under_way_is_not_started_again():
    with dg.instance_for_test() as instance:
        request = next_attempt(instance, PLAN, REASON)
        instance.create_run_for_job(data_job, tags=request.tags)  # started, not failed
        again = next_attempt(instance, PLAN, REASON)
        assert isinstance(again, dg.RunRequest) and again.run_key == request.run_key
