"""The monitoring and retraining schedules ask for what the day allows."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from tests.registry.models import promote_tiny_champion
from tests.support import mark_loaded, usecase_definition, usecase_scope

daily_monitoring_schedule = usecase_definition("fraud", "schedule", "daily_monitoring_schedule")
weekly_retraining_schedule = usecase_definition("fraud", "schedule", "weekly_retraining_schedule")


def _reports_loaded_through(instance: dg.DagsterInstance, day: str) -> None:
    mark_loaded(instance, usecase_scope(), "fraud_reports", date.fromisoformat(day))


def _sources_loaded(instance: dg.DagsterInstance, first: date, last: date) -> None:
    """Every source of the use case loaded for the days ``first`` .. ``last``."""
    scope = usecase_scope()
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        for source in scope.usecase.sources:
            mark_loaded(instance, scope, source, day)


def _weekly(instance: dg.DagsterInstance, when: datetime) -> dg.RunRequest | dg.SkipReason:
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        return weekly_retraining_schedule(context)


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
        # fraud's protocol needs 63 days: its windows, folds and the labels' maturity
        _sources_loaded(instance, date(2018, 4, 1), date(2018, 6, 9))
        request = _weekly(instance, datetime(2018, 6, 10, 5, 0))
    assert request.tags["blueprint/trigger"] == "weekly_retraining_schedule"
    assert request.run_key == "weekly-2018-06-10"


def test_the_weekly_retraining_skips_a_world_too_short_for_the_protocol(blueprint_home):
    """The training run would fail (its rows start after the protocol's first day): the
    schedule says what the protocol needs instead of launching it."""
    with dg.instance_for_test() as instance:
        _sources_loaded(instance, date(2018, 4, 1), date(2018, 5, 12))
        request = _weekly(instance, datetime(2018, 5, 13, 5, 0))
    assert isinstance(request, dg.SkipReason), request
    assert "2018-04-01..2018-05-12" in request.skip_message
    assert "needs at least 63 days" in request.skip_message
    assert "2018-03-" in request.skip_message  # the first day training would read


def test_the_weekly_retraining_waits_for_labels(blueprint_home):
    with dg.instance_for_test() as instance:
        request = _weekly(instance, datetime(2018, 5, 13, 5, 0))
    assert isinstance(request, dg.SkipReason) and "no labels loaded" in request.skip_message
