"""The daily partitions shared by every daily asset (one definition, so ranges run as one)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.landing import raw_snapshot_path
from orchestration.settings import get_settings

if TYPE_CHECKING:
    from orchestration.defs.scope import Scope

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


def loaded_days(instance: dg.DagsterInstance, scope: Scope, source: str) -> list[date]:
    """The days a source is loaded for, oldest first: the materialized partitions of its raw
    asset that hold a raw snapshot. A run over a range materializes every day of it, a day no
    file was delivered for included; that day holds nothing, so its labels are not known (it
    counted as loaded: label maturity was overstated)."""
    contract = contracts_of(scope.usecase)[source]
    raw_dir = scope.settings().raw_dir
    days = (date.fromisoformat(p) for p in instance.get_materialized_partitions(
        scope.key(f"raw_{source}")))
    return sorted(d for d in days if raw_snapshot_path(contract, raw_dir, d).exists())


def newest_loaded(instance: dg.DagsterInstance, scope: Scope, source: str) -> date | None:
    """The newest day a source is loaded for (a label source's: the last day whose labels
    are known)."""
    days = loaded_days(instance, scope, source)
    return days[-1] if days else None
