"""Batch scoring: each day scored by the champion, on a daily schedule."""

from datetime import timedelta

import dagster as dg

from orchestration.defs.partitions import daily_partitions
from orchestration.defs.scope import Scope
from orchestration.lib.registry import registry


def batch_scoring(scope: Scope) -> tuple[object, dg.ScheduleDefinition]:
    """``scoring_job`` and the schedule that runs it for yesterday every night."""
    scoring_job = dg.define_asset_job(
        "scoring_job",
        selection=dg.AssetSelection.assets(scope.key("batch_scores")),
        partitions_def=daily_partitions,
        description="Score a day with the champion and build its decisions within the budget.",
    )

    @dg.schedule(
        name="batch_scoring_schedule",
        job=scoring_job,
        cron_schedule="0 4 * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Scores yesterday with the champion at 04:00, after the nightly ingestion (02:30) "
            "has rebuilt the features."
        ),
    )
    def batch_scoring_schedule(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date() - timedelta(days=1)
        if day < daily_partitions.start.date():
            return dg.SkipReason(f"{day} is before the first partition")
        if registry.champion(scope.settings()) is None:
            return dg.SkipReason("no champion yet: nothing to score with")
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return scoring_job, batch_scoring_schedule
