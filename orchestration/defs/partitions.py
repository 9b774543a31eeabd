"""The daily partitions shared by every daily asset (one definition, so ranges run as one)."""

import dagster as dg

from orchestration.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().partitions_start.isoformat(), fmt="%Y-%m-%d"
)
"""One partition per business day; the start comes from BLUEPRINT_PARTITIONS_START."""

single_run = dg.BackfillPolicy.single_run()
"""History is processed in one run (one process, one dbt build), not one run per day."""

WAREHOUSE_POOL = "warehouse"
"""Concurrency pool of every step that opens warehouse.duckdb (limit 1: DuckDB has one writer)."""
