"""The daily partitions shared by every daily asset (one definition, so ranges run as one)."""

from datetime import date, timedelta

import dagster as dg

from orchestration.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().partitions_start.isoformat(), fmt="%Y-%m-%d"
)
"""One partition per business day; the start comes from BLUEPRINT_PARTITIONS_START."""

single_run = dg.BackfillPolicy.single_run()
"""History is processed in one run (one process, one dbt build), not one run per day."""

def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """Every day of the run's partition range, in order."""
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def newest_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> date | None:
    """The newest materialized day of a daily asset (e.g. a label source's raw snapshot: the
    last day whose labels are loaded)."""
    partitions = instance.get_materialized_partitions(key)
    return max((date.fromisoformat(p) for p in partitions), default=None)
