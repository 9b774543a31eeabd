"""The monitoring and retraining schedules ask for what the day allows."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from orchestration.defs.monitoring.automation import (
    daily_monitoring_schedule,
    weekly_retraining_schedule,
)


def _reports_loaded_through(instance: dg.DagsterInstance, day: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="raw_fraud_reports", partition=day)
    )


def _requests(instance, when: datetime) -> list[dg.RunRequest] | dg.SkipReason:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    result = daily_monitoring_schedule(context)
    return result if isinstance(result, dg.SkipReason) else list(result)


def test_yesterdays_drift_and_the_matured_days_performance(blueprint_home):
    with dg.instance_for_test() as instance:
        _reports_loaded_through(instance, "2018-05-10")
        requests = _requests(instance, datetime(2018, 5, 11, 4, 30))
    drift, performance = requests
    assert drift.partition_key == "2018-05-10"
    assert {k.to_user_string() for k in drift.asset_selection} == {
        "raw_predictions", "scored_traffic", "data_drift_report", "prediction_drift_report"
    }
    assert performance.partition_key == "2018-05-03"  # 7 days of report delay
    assert [k.to_user_string() for k in performance.asset_selection] == ["performance_report"]


def test_no_performance_report_while_the_reports_are_not_loaded(blueprint_home):
    with dg.instance_for_test() as instance:
        _reports_loaded_through(instance, "2018-05-08")  # the nightly ingestion is behind
        requests = _requests(instance, datetime(2018, 5, 11, 4, 30))
    assert [r.partition_key for r in requests] == ["2018-05-10"]


def test_the_weekly_retraining_says_why_it_runs(blueprint_home):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2018, 5, 13, 5, 0)
        )
        request = weekly_retraining_schedule(context)
    assert request.tags["blueprint/trigger"] == "weekly_retraining_schedule"
    assert request.run_key == "weekly-2018-05-13"
