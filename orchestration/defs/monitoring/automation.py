"""The closed loop: retrain on drift or decay, retrain weekly anyway, and never fail silently.

``retraining_sensor`` reads the reports' headline numbers (``reports/index.json``) and launches
``training_job`` when a threshold was breached and the newest mature training window holds
enough days after the first breach (:mod:`orchestration.lib.monitoring.retraining`); the run's tags
say which threshold fired and by how much. The gate in that job still decides: a promoted
challenger reaches the running service through the registry. ``weekly_retraining_schedule``
retrains every Sunday whatever the drift, once the loaded days cover the validation protocol
(before, the run could only fail). ``failed_run_sensor`` writes every failed run to
``logs/failed_runs.jsonl`` (and its tick to the Dagster UI).
"""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from orchestration.defs.monitoring.assets import PERFORMANCE, max_report_date
from orchestration.defs.partitions import daily_partitions, loaded_days, newest_loaded
from orchestration.defs.scope import Scope
from orchestration.defs.training.automation import TRAINING_JOB
from orchestration.lib.core.atomic import append_line
from orchestration.lib.monitoring.report_index import read_index
from orchestration.lib.monitoring.retraining import (
    Decision,
    Thresholds,
    decide,
    find_breaches,
    newest_training_window,
)
from orchestration.lib.registry import registry
from orchestration.lib.training.validation import (
    days_needed,
    mature_test_start,
    protocol_from,
    training_span,
)
from orchestration.settings import Settings

RETRAIN_KEY_TAG = "blueprint/retrain_key"
FAILED_RUNS_FILE = "failed_runs.jsonl"


def thresholds_from(settings: Settings) -> Thresholds:
    monitoring_fields = settings.usecase.monitoring
    decay = monitoring_fields.decay
    return Thresholds(
        drift_share=monitoring_fields.drift_share_threshold,
        ap_drop=decay.drop,
        prediction_drift=monitoring_fields.retrain_on_prediction_drift,
        min_post_drift_days=monitoring_fields.min_post_drift_days,
        decay_metric=decay.metric,
        decay_higher_is_better=settings.usecase.metrics[decay.metric].higher_is_better,
    )


def newest_loaded_day(instance: dg.DagsterInstance, scope: Scope) -> date | None:
    """The newest day any of the use case's sources is loaded for."""
    days = [newest_loaded(instance, scope, source) for source in scope.usecase.sources]
    return max((day for day in days if day is not None), default=None)


def oldest_loaded_day(instance: dg.DagsterInstance, scope: Scope) -> date | None:
    """The oldest day any of the use case's sources is loaded for."""
    days = [loaded[0] for source in scope.usecase.sources
            if (loaded := loaded_days(instance, scope, source))]
    return min((day for day in days if day is not None), default=None)


def too_short_for_training(instance: dg.DagsterInstance, scope: Scope) -> str | None:
    """Why a training run now could only fail (the loaded days do not reach back to the first
    day the protocol reads), or None."""
    newest_report = max_report_date(instance, scope)
    if newest_report is None:
        return "no labels loaded yet: nothing to train on"
    oldest, newest = oldest_loaded_day(instance, scope), newest_loaded_day(instance, scope)
    assert oldest is not None and newest is not None  # the label source is loaded
    protocol = protocol_from(scope.usecase)
    first, end = training_span(protocol, mature_test_start(protocol, newest, newest_report))
    if oldest <= first:
        return None
    return (
        f"the loaded days {oldest}..{newest} are too few: training would read "
        f"{first}..{end - timedelta(days=1)} (the protocol needs at least "
        f"{days_needed(protocol)} days with the labels' maturity)"
    )


def retraining_decision(instance: dg.DagsterInstance, scope: Scope) -> Decision:
    """What the retraining sensor decides now (also what ``blueprint replay`` asks)."""
    settings = scope.settings()
    champion = registry.champion(settings)
    if champion is None:
        return Decision(False, "no champion yet: the first training is not drift-triggered")
    facts = registry.model_facts(champion.version, settings)
    newest_report = max_report_date(instance, scope)
    last_day = newest_loaded_day(instance, scope)
    if newest_report is None or last_day is None:
        return Decision(False, "no data loaded")
    thresholds = thresholds_from(settings)
    breaches = find_breaches(
        (
            (entry.day, entry.kind, entry.numbers)
            for entry in read_index(settings.reports_dir)
        ),
        after=facts.training_data.test.end,
        champion_version=champion.version,
        champion_test_ap=facts.test_metrics.get(scope.usecase.monitoring.decay.metric),
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


def monitoring_automation(
    scope: Scope,
) -> tuple[list, list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """The use case's retraining sensor, weekly retraining, failed-run sensor, and the daily
    monitoring job and schedule (of the prediction log's traffic or the batch scores')."""

    @dg.sensor(
        name="retraining_sensor",
        job_name=TRAINING_JOB,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Launches training_job when the monitoring reports breach a drift or decay "
            "threshold and the newest mature training window holds enough days since the "
            "first breach."
        ),
    )
    def retraining_sensor(context: dg.SensorEvaluationContext):
        return retraining_request(context.instance, retraining_decision(context.instance, scope))

    @dg.schedule(
        name="weekly_retraining_schedule",
        job_name=TRAINING_JOB,
        cron_schedule="0 5 * * 0",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Retrains every Sunday at 05:00 even without drift; the promotion gate decides."
        ),
    )
    def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date()
        too_short = too_short_for_training(context.instance, scope)
        if too_short is not None:
            return dg.SkipReason(too_short)
        return dg.RunRequest(
            run_key=f"weekly-{day.isoformat()}",
            tags={"blueprint/trigger": "weekly_retraining_schedule"},
        )

    @dg.run_failure_sensor(
        name="failed_run_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Writes every failed run to logs/failed_runs.jsonl so a broken run is seen.",
    )
    def failed_run_sensor(context: dg.RunFailureSensorContext):
        message = context.failure_event.message or "the run failed"
        record_failed_run(scope.settings(), context.dagster_run, message)
        context.log.error(
            f"run {context.dagster_run.run_id} ({context.dagster_run.job_name}) failed"
        )

    job, schedule = daily_monitoring(scope)
    return [job], [retraining_sensor, failed_run_sensor], [weekly_retraining_schedule, schedule]


def drift_assets(scope: Scope) -> tuple[str, ...]:
    """What a day's drift run builds: its traffic (the service's ingested prediction log, or
    the batch scores) and its two drift reports."""
    served = scope.usecase.monitoring.traffic == "prediction_log"
    return (*(("raw_predictions",) if served else ()), "scored_traffic", "data_drift_report",
            "prediction_drift_report")


def daily_monitoring(
    scope: Scope,
) -> tuple[object, dg.ScheduleDefinition]:
    """``monitoring_job`` and its nightly schedule: yesterday's drift, and the performance of
    the day whose labels just matured."""
    monitoring_job = dg.define_asset_job(
        "monitoring_job",
        selection=dg.AssetSelection.assets(
            *scope.keys(*drift_assets(scope), f"{PERFORMANCE}_report")
        ),
        partitions_def=daily_partitions,
        description=(
            "Ingest the service's closed prediction logs, compare the served features with the "
            "offline ones and write a day's drift reports; or a matured day's performance "
            "report."
        ),
    )

    @dg.schedule(
        name="daily_monitoring_schedule",
        job=monitoring_job,
        cron_schedule="30 4 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "At 04:30, after the nightly ingestion: yesterday's traffic, skew check and drift "
            "reports, and the performance report of the day whose labels just matured."
        ),
    )
    def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext):
        settings = scope.settings()
        if registry.champion(settings) is None:
            return dg.SkipReason("no champion yet: no traffic to monitor")
        yesterday = context.scheduled_execution_time.date() - timedelta(days=1)
        matured = yesterday - settings.usecase.label.maturity
        start = daily_partitions.start.date()
        newest_report = max_report_date(context.instance, scope)
        requests = []
        if yesterday >= start:
            requests.append(dg.RunRequest(
                run_key=f"drift-{yesterday.isoformat()}", partition_key=yesterday.isoformat(),
                asset_selection=scope.keys(*drift_assets(scope)),
            ))
        labels_known = newest_report is not None and newest_report >= yesterday
        if matured >= start and labels_known:  # the labels of the days since are all loaded
            requests.append(dg.RunRequest(
                run_key=f"performance-{matured.isoformat()}", partition_key=matured.isoformat(),
                asset_selection=[scope.key(f"{PERFORMANCE}_report")],
            ))
        return requests or dg.SkipReason(
            f"{yesterday} is before the first partition, or its labels are not loaded"
        )

    return monitoring_job, daily_monitoring_schedule
