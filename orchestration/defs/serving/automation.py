"""Batch scoring: each day's payments scored by the champion, on a daily schedule."""

from datetime import timedelta

import dagster as dg

from orchestration.defs.partitions import daily_partitions

scoring_job = dg.define_asset_job(
    "scoring_job",
    selection=dg.AssetSelection.assets("batch_scores"),
    partitions_def=daily_partitions,
    description="Score a day's payments with the champion and build its investigation queue.",
)


@dg.schedule(
    job=scoring_job,
    cron_schedule="0 4 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Scores yesterday's payments with the champion at 04:00, after the nightly ingestion "
        "(02:30) has rebuilt the features."
    ),
)
def batch_scoring_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date() - timedelta(days=1)
    if day < daily_partitions.start.date():
        return dg.SkipReason(f"{day} is before the first partition")
    return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())
