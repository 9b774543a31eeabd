"""When ingestion runs: a sensor for newly landed files, and a daily schedule as a safety net."""

import time

import dagster as dg

from orchestration.defs.partitions import daily_partitions
from orchestration.defs.scope import Scope
from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.planning import IngestionPlan, plan_ingestion

DATA_JOB = "data_job"
PLAN_TAG = "blueprint/plan"
"""The fingerprint of the landed files a run ingests: its attempts are found by it."""
MAX_ATTEMPTS = 3
"""How often the sensor starts the same plan: a transient failure (a disk, a killed run) is
retried, a deterministic one (a schema change) is not started again every 30 s for ever."""
RETRY_AFTER_S = 300
"""How long after a failed attempt the next starts."""


def data_job():
    return dg.define_asset_job(
        DATA_JOB,
        selection=dg.AssetSelection.groups("ingestion", "features"),
        partitions_def=daily_partitions,
        description="Ingest landed files into raw snapshots, then rebuild and check the features.",
    )


def current_plan(scope: Scope) -> IngestionPlan:
    """What the use case's sources have landed and the raw zone lacks."""
    settings = scope.settings()
    contracts = contracts_of(scope.usecase).values()
    return plan_ingestion(contracts, settings.landing_dir, settings.raw_dir)


def _run_request(plan: IngestionPlan, reason: str, attempt: int = 1) -> dg.RunRequest:
    start, end = plan.range
    suffix = "" if attempt == 1 else f"-attempt{attempt}"
    return dg.RunRequest(
        run_key=f"{reason}-{plan.fingerprint}{suffix}",
        job_name=DATA_JOB,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
            "blueprint/trigger": reason,
            "blueprint/stale_partitions": str(len(plan.days)),
            PLAN_TAG: plan.fingerprint,
        },
    )


def next_attempt(
    instance: dg.DagsterInstance, plan: IngestionPlan, reason: str
) -> dg.RunRequest | dg.SkipReason:
    """The run for ``plan``: the first attempt, or (after a failed one, which a run key alone
    never starts again) the next after `RETRY_AFTER_S`, at most `MAX_ATTEMPTS` in all."""
    records = instance.get_run_records(
        dg.RunsFilter(tags={PLAN_TAG: plan.fingerprint, "blueprint/trigger": reason})
    )
    if not records:
        return _run_request(plan, reason)
    last = records[0]  # newest first
    failed = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
    if last.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return _run_request(plan, reason, attempt=len(records))  # in progress or done: no-op
    if len(failed) >= MAX_ATTEMPTS:
        return dg.SkipReason(
            f"Ingesting these landed files failed {len(failed)} times (last run "
            f"{last.dagster_run.run_id}): see it in the UI; a new delivery starts again."
        )
    ended = last.end_time or last.update_timestamp.timestamp()
    if time.time() - ended < RETRY_AFTER_S:
        return dg.SkipReason(
            f"Run {last.dagster_run.run_id} failed; retrying after {RETRY_AFTER_S} s."
        )
    return _run_request(plan, reason, attempt=len(records) + 1)


def ingestion_automation(
    scope: Scope, job
) -> tuple[dg.SensorDefinition, dg.ScheduleDefinition]:
    """The landing sensor and the daily catch-up schedule of one use case's ``data_job``."""

    @dg.sensor(
        name="landing_file_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts ingestion when files land that are not yet in the raw snapshots.",
    )
    def landing_file_sensor(context: dg.SensorEvaluationContext):
        plan = current_plan(scope)
        if plan.range is None:
            waiting = sum(len(days) for days in plan.waiting.values())
            return dg.SkipReason(
                f"Nothing new in the landing zone ({waiting} partitions waiting)."
            )
        return next_attempt(context.instance, plan, "landing_file_sensor")

    @dg.schedule(
        name="daily_ingestion_schedule",
        job=job,
        cron_schedule="30 2 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily catch-up: ingests whatever landed and was not ingested yet.",
    )
    def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext):
        plan = current_plan(scope)
        if plan.range is None:
            return dg.SkipReason("Raw snapshots are up to date.")
        return _run_request(plan, "daily_ingestion_schedule")

    return landing_file_sensor, daily_ingestion_schedule
