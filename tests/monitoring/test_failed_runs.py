"""A failed run is never silent: the run-failure sensor writes it to logs/failed_runs.jsonl."""

from __future__ import annotations

import json

import dagster as dg

from orchestration.defs.monitoring.automation import FAILED_RUNS_FILE
from orchestration.settings import get_settings
from tests.support import usecase_definition

failed_run_sensor = usecase_definition("fraud", "sensor", "failed_run_sensor")


@dg.op
def broken_step():
    raise RuntimeError("the nightly input is missing")


@dg.job(tags={"blueprint/trigger": "test"})
def broken_job():
    broken_step()


def test_a_failed_run_is_written_to_the_failed_runs_log(blueprint_home):
    with dg.instance_for_test() as instance:
        result = broken_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(
            e for e in instance.all_logs(result.run_id)
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=failed_run_sensor.name, dagster_instance=instance, dagster_run=run,
            dagster_event=failure.dagster_event, context=dg.build_sensor_context(instance),
        ).for_run_failure()
        failed_run_sensor(context)

    log = get_settings().logs_dir / FAILED_RUNS_FILE
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["run_id"] == result.run_id
    assert records[0]["job_name"] == "broken_job"
    assert records[0]["tags"]["blueprint/trigger"] == "test"
    assert "broken_step" in records[0]["message"]
