"""When ingestion runs: a sensor for newly landed files, and a daily schedule as a safety net."""


import dagster as dg

from orchestration.defs.partitions import daily_partitions
from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.planning import IngestionPlan, plan_ingestion
from orchestration.settings import get_settings

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.groups("ingestion", "features"),
    partitions_def=daily_partitions,
    description="Ingest landed files into raw snapshots, then rebuild and check the features.",
)


def _current_plan() -> IngestionPlan:
    settings = get_settings()
    contracts = contracts_of(settings.usecase).values()
    return plan_ingestion(contracts, settings.landing_dir, settings.raw_dir)


def _run_request(plan: IngestionPlan, reason: str) -> dg.RunRequest:
    start, end = plan.range
    return dg.RunRequest(
        run_key=f"{reason}-{plan.fingerprint}",
        job_name=data_job.name,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
            "blueprint/trigger": reason,
            "blueprint/stale_partitions": str(len(plan.days)),
        },
    )


@dg.sensor(
    job=data_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts ingestion when files land that are not yet in the raw snapshots.",
)
def landing_file_sensor(context: dg.SensorEvaluationContext):
    plan = _current_plan()
    if plan.range is None:
        waiting = sum(len(days) for days in plan.waiting.values())
        return dg.SkipReason(f"Nothing new in the landing zone ({waiting} partitions waiting).")
    return _run_request(plan, "landing_file_sensor")


@dg.schedule(
    job=data_job,
    cron_schedule="30 2 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily catch-up: ingests whatever landed and was not ingested yet.",
)
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext):
    plan = _current_plan()
    if plan.range is None:
        return dg.SkipReason("Raw snapshots are up to date.")
    return _run_request(plan, "daily_ingestion_schedule")
