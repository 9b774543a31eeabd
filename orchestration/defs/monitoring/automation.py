"""The closed loop: retrain on drift or decay, retrain weekly anyway, and never fail silently.

``retraining_sensor`` reads the reports' headline numbers (``reports/index.json``) and launches
``training_job`` when a threshold was breached and the newest mature training window holds
enough days after the first breach (:mod:`orchestration.lib.monitoring.retraining`); the run's tags
say which threshold fired and by how much. The gate in that job still decides: a promoted
challenger reaches the running service through the registry. ``weekly_retraining_schedule``
retrains every Sunday whatever the drift. ``failed_run_sensor`` writes every failed run to
``logs/failed_runs.jsonl`` (and its tick to the Dagster UI).
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.defs.monitoring.assets import max_report_date
from orchestration.defs.partitions import daily_partitions, newest_partition
from orchestration.defs.training.automation import training_job
from orchestration.lib.core.atomic import append_line
from orchestration.lib.monitoring import reports as monitoring
from orchestration.lib.monitoring.retraining import (
    Decision,
    Thresholds,
    decide,
    find_breaches,
    newest_training_window,
)
from orchestration.lib.registry import registry
from orchestration.lib.training.validation import protocol_from
from orchestration.settings import Settings, get_settings

RETRAIN_KEY_TAG = "blueprint/retrain_key"
FAILED_RUNS_FILE = "failed_runs.jsonl"


def thresholds_from(settings: Settings) -> Thresholds:
    monitoring_fields = settings.usecase.monitoring
    return Thresholds(
        drift_share=monitoring_fields.drift_share_threshold,
        ap_drop=monitoring_fields.decay.drop,
        prediction_drift=monitoring_fields.retrain_on_prediction_drift,
        min_post_drift_days=monitoring_fields.min_post_drift_days,
    )


def retraining_decision(instance: dg.DagsterInstance, settings: Settings) -> Decision:
    """What the retraining sensor decides now (also what ``blueprint replay`` asks)."""
    champion = registry.champion(settings)
    if champion is None:
        return Decision(False, "no champion yet: the first training is not drift-triggered")
    facts = registry.model_facts(champion.version, settings)
    newest_report = max_report_date(instance)
    last_day = newest_partition(instance, "raw_transactions")
    if newest_report is None or last_day is None:
        return Decision(False, "no data loaded")
    thresholds = thresholds_from(settings)
    breaches = find_breaches(
        (
            (entry.day, entry.kind, entry.numbers)
            for entry in monitoring.read_index(settings.reports_dir)
        ),
        after=facts.training_data.test.end,
        champion_version=champion.version,
        champion_test_ap=facts.test_metrics.get(registry.TEST_AVERAGE_PRECISION),
        thresholds=thresholds,
    )
    window = newest_training_window(protocol_from(settings.usecase), newest_report, last_day)
    return decide(
        breaches, champion_version=champion.version, window=window, thresholds=thresholds
    )


def retraining_request(
    instance: dg.DagsterInstance, decision: Decision
) -> dg.RunRequest | dg.SkipReason:
    """The run ``decision`` asks for, unless one was launched for it already."""
    if not decision.fire:
        return dg.SkipReason(decision.reason)
    assert decision.key is not None
    launched = instance.get_run_records(
        dg.RunsFilter(tags={RETRAIN_KEY_TAG: decision.key}), limit=1
    )
    if launched:
        return dg.SkipReason(
            f"retraining {decision.key} already launched (run {launched[0].dagster_run.run_id})"
        )
    return dg.RunRequest(run_key=f"retrain-{decision.key}", tags=decision.tags())


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches training_job when the monitoring reports breach a drift or decay threshold "
        "and the newest mature training window holds enough days since the first breach."
    ),
)
def retraining_sensor(context: dg.SensorEvaluationContext):
    return retraining_request(
        context.instance, retraining_decision(context.instance, get_settings())
    )


@dg.schedule(
    job=training_job,
    cron_schedule="0 5 * * 0",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrains every Sunday at 05:00 even without drift; the promotion gate decides.",
)
def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date()
    return dg.RunRequest(
        run_key=f"weekly-{day.isoformat()}",
        tags={"blueprint/trigger": "weekly_retraining_schedule"},
    )


def record_failed_run(settings: Settings, run: dg.DagsterRun, message: str) -> dict:
    """Append a failed run to ``logs/failed_runs.jsonl`` (one JSON object per line)."""
    record = {
        "recorded_at": datetime.now(UTC).isoformat(),
        "run_id": run.run_id,
        "job_name": run.job_name,
        "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")},
        "message": message,
    }
    append_line(settings.logs_dir / FAILED_RUNS_FILE, json.dumps(record))
    return record


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes every failed run to logs/failed_runs.jsonl so a broken run is seen.",
)
def failed_run_sensor(context: dg.RunFailureSensorContext):
    message = context.failure_event.message or "the run failed"
    record_failed_run(get_settings(), context.dagster_run, message)
    context.log.error(f"run {context.dagster_run.run_id} ({context.dagster_run.job_name}) failed")


monitoring_sensors = [retraining_sensor, failed_run_sensor]


monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.assets(
        "raw_predictions", "scored_traffic", "data_drift_report", "prediction_drift_report",
        "performance_report",
    ),
    partitions_def=daily_partitions,
    description=(
        "Ingest the service's closed prediction logs, compare the served features with the "
        "offline ones and write a day's drift reports; or a matured day's performance report."
    ),
)


@dg.schedule(
    job=monitoring_job,
    cron_schedule="30 4 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "At 04:30, after the nightly ingestion: yesterday's traffic, skew check and drift "
        "reports, and the performance report of the day whose labels just matured."
    ),
)
def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    settings = get_settings()
    yesterday = context.scheduled_execution_time.date() - timedelta(days=1)
    matured = yesterday - settings.usecase.label.maturity
    start = daily_partitions.start.date()
    newest_report = max_report_date(context.instance)
    requests = []
    if yesterday >= start:
        requests.append(dg.RunRequest(
            run_key=f"drift-{yesterday.isoformat()}", partition_key=yesterday.isoformat(),
            asset_selection=[dg.AssetKey(k) for k in (
                "raw_predictions", "scored_traffic", "data_drift_report",
                "prediction_drift_report",
            )],
        ))
    labels_known = newest_report is not None and newest_report >= yesterday
    if matured >= start and labels_known:  # the reports of the days since are all loaded
        requests.append(dg.RunRequest(
            run_key=f"performance-{matured.isoformat()}", partition_key=matured.isoformat(),
            asset_selection=[dg.AssetKey("performance_report")],
        ))
    return requests or dg.SkipReason(
        f"{yesterday} is before the first partition, or its fraud reports are not loaded"
    )


monitoring_jobs = [monitoring_job]
monitoring_schedules = [weekly_retraining_schedule, daily_monitoring_schedule]
