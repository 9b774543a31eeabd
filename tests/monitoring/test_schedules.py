"""The monitoring and retraining schedules ask for what the day allows."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from tests.registry.models import promote_tiny_champion
from tests.support import usecase_definition, usecase_scope

daily_monitoring_schedule = usecase_definition("fraud", "schedule", "daily_monitoring_schedule")
weekly_retraining_schedule = usecase_definition("fraud", "schedule", "weekly_retraining_schedule")


def _reports_loaded_through(instance: dg.DagsterInstance, day: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=usecase_scope().key("raw_fraud_reports"), partition=day)
    )


def _requests(instance, when: datetime) -> list[dg.RunRequest] | dg.SkipReason:
    # a context left open keeps the instance as Dagster's current one after the test
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        result = daily_monitoring_schedule(context)
    return result if isinstance(result, dg.SkipReason) else list(result)


def test_yesterdays_drift_and_the_matured_days_performance(blueprint_home):
    promote_tiny_champion()
    with dg.instance_for_test() as instance:
        _reports_loaded_through(instance, "2018-05-10")
        requests = _requests(instance, datetime(2018, 5, 11, 4, 30))
    drift, performance = requests
    assert drift.partition_key == "2018-05-10"
    assert {k.to_user_string() for k in drift.asset_selection} == {
        "fraud/raw_predictions", "fraud/scored_traffic", "fraud/data_drift_report",
        "fraud/prediction_drift_report",
    }
    assert performance.partition_key == "2018-05-03"  # 7 days of report delay
    assert [k.to_user_string() for k in performance.asset_selection] == ["fraud/performance_report"]


def test_no_performance_report_while_the_reports_are_not_loaded(blueprint_home):
    promote_tiny_champion()
    with dg.instance_for_test() as instance:
        _reports_loaded_through(instance, "2018-05-08")  # the nightly ingestion is behind
        requests = _requests(instance, datetime(2018, 5, 11, 4, 30))
    assert [r.partition_key for r in requests] == ["2018-05-10"]


def test_the_weekly_retraining_says_why_it_runs(blueprint_home):
    with dg.instance_for_test() as instance:
        _reports_loaded_through(instance, "2018-05-12")
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2018, 5, 13, 5, 0)
        ) as context:
            request = weekly_retraining_schedule(context)
    assert request.tags["blueprint/trigger"] == "weekly_retraining_schedule"
    assert request.run_key == "weekly-2018-05-13"
