"""Raw snapshots: one daily-partitioned asset per source contract.

A new source is a new entry under ``sources:`` in a use case's declaration; this factory turns
every declared source into an asset ``<use case>/raw_<source>`` with the same behaviour: validate,
quarantine, de-duplicate, write the partition's Parquet snapshot atomically, and report what
happened.
"""


from collections.abc import Sequence
from contextlib import closing
from datetime import date

import dagster as dg

from orchestration.defs.partitions import daily_partitions, single_run
from orchestration.defs.scope import Scope
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.ingest import IngestResult, ingest_partitions
from orchestration.lib.ingestion.landing import PartitionStatus, partition_status
from orchestration.lib.ingestion.parsing import IngestionError, SchemaChangeError
from orchestration.settings import Settings

QUARANTINE_CHECK = "quarantine_rate"


def raw_asset_key(scope: Scope, source: str) -> dg.AssetKey:
    return scope.key(f"raw_{source}")


def _quarantine_check(
    key: dg.AssetKey, settings: Settings, results: list[IngestResult]
) -> dg.AssetCheckResult:
    """Warn above one quarantined share, fail (and block downstream) above another."""
    rows_in = sum(r.rows_in for r in results)
    quarantined = sum(r.quarantined_rows for r in results)
    files = sum(r.quarantined_files for r in results)
    rate = quarantined / rows_in if rows_in else 0.0
    failed = rate > settings.quarantine_fail_rate
    warned = rate > settings.quarantine_warn_rate
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=QUARANTINE_CHECK,
        passed=not (failed or warned),
        severity=dg.AssetCheckSeverity.ERROR if failed else dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantined_rows": quarantined,
            "quarantined_files": files,
            "rows_in": rows_in,
            "quarantine_rate": rate,
            "warn_above": settings.quarantine_warn_rate,
            "fail_above": settings.quarantine_fail_rate,
        },
    )


SUMMARY_ROWS = 60
"""Partitions the summary table shows (the newest); older ones are counted in one row."""


def _summary_table(results: list[IngestResult]) -> str:
    rows: list[list[object]] = []
    if len(results) > SUMMARY_ROWS:
        rows.append([f"… {len(results) - SUMMARY_ROWS} earlier partitions", "", "", "", "", ""])
    rows += [
        [r.partition_date, r.rows_written, r.quarantined_rows, r.quarantined_files,
         r.duplicates, "yes" if r.written else "no"]
        for r in results[-SUMMARY_ROWS:]
    ]
    return markdown_table(
        ["partition", "rows", "quarantined rows", "quarantined files", "duplicates", "rewritten"],
        rows,
    )


def build_raw_asset(scope: Scope, contract: SourceContract) -> dg.AssetsDefinition:
    """The daily raw-snapshot asset of one source contract."""
    key = raw_asset_key(scope, contract.name)

    @dg.asset(
        key=key,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        group_name="ingestion",
        kinds={"parquet"},
        description=(
            f"Validated raw snapshot of the {contract.name} source, one Parquet file per day "
            f"under raw/{contract.name}/; rows breaking the contract are quarantined."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                QUARANTINE_CHECK,
                asset=key,
                blocking=True,
                description="Share of quarantined rows: warns above one rate, fails above another.",
            )
        ],
    )
    def _raw_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = scope.settings()
        status = partition_status(contract, settings.landing_dir, settings.raw_dir)
        days, waiting = _delivered_days(context.partition_keys, status)
        results = _ingest_days(context, key, contract, settings, days, status)
        for note in waiting:
            context.log.warning(note)
        return dg.MaterializeResult(
            metadata=_raw_metadata(contract, settings, results, waiting),
            check_results=[_quarantine_check(key, settings, results)],
        )

    return _raw_asset


def _delivered_days(
    partition_keys: Sequence[str], status: dict[date, PartitionStatus]
) -> tuple[list[date], list[str]]:
    """The requested days that have a delivery, and a note for each day still waiting for one."""
    days: list[date] = []
    waiting: list[str] = []
    for partition_key in partition_keys:
        day = date.fromisoformat(partition_key)
        if day not in status:
            waiting.append(f"{partition_key}: no delivery")
            continue
        if not status[day].ready:
            waiting.append(f"{partition_key}: no readable file yet (waiting for re-delivery)")
        days.append(day)
    return days, waiting


def _ingest_days(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    contract: SourceContract,
    settings: Settings,
    days: list[date],
    status: dict[date, PartitionStatus],
) -> list[IngestResult]:
    """Ingest the days in parallel and observe each partition as it is written."""
    results: list[IngestResult] = []
    # closing: a failure below cancels the partitions not started yet
    with closing(
        ingest_partitions(
            contract,
            days,
            landing_dir=settings.landing_dir,
            raw_dir=settings.raw_dir,
            quarantine_dir=settings.quarantine_dir,
            workers=settings.ingest_workers,
        )
    ) as outcomes:
        for day, outcome in outcomes:
            result = _partition_result(context, contract, day, outcome, status[day].ready)
            if result is None:
                continue
            results.append(result)
            context.log_event(_partition_observation(key, day.isoformat(), result))
    return results


def _partition_result(
    context: dg.AssetExecutionContext,
    contract: SourceContract,
    day: date,
    outcome: IngestResult | IngestionError,
    ready: bool,
) -> IngestResult | None:
    """A partition's result; ``None`` for a day whose unreadable file awaits re-delivery.

    A schema change fails the run; any other error fails it too once the day's file is ready.
    """
    if isinstance(outcome, SchemaChangeError):
        raise dg.Failure(
            description=f"Schema change in source {contract.name!r}: {outcome}",
            metadata={"partition": day.isoformat()},
        ) from outcome
    if isinstance(outcome, Exception):
        if not ready:
            context.log.warning(f"{day.isoformat()}: {outcome}")
            return None
        raise outcome
    return outcome


def _partition_observation(
    key: dg.AssetKey, partition_key: str, result: IngestResult
) -> dg.AssetObservation:
    """What one partition's ingestion did, as an observation of the raw asset."""
    return dg.AssetObservation(
        asset_key=key,
        partition=partition_key,
        metadata={
            "rows": result.rows_written,
            "quarantined_rows": result.quarantined_rows,
            "quarantined_files": result.quarantined_files,
            "duplicates": result.duplicates,
            "rewritten": result.written,
            "input_fingerprint": result.fingerprint,
        },
    )


def _raw_metadata(
    contract: SourceContract, settings: Settings, results: list[IngestResult], waiting: list[str]
) -> dict[str, object]:
    """The run's totals over its partitions, the days still waiting and where the snapshots are."""
    return {
        "partitions": len(results),
        "partitions_rewritten": sum(r.written for r in results),
        "rows": sum(r.rows_written for r in results),
        "quarantined_rows": sum(r.quarantined_rows for r in results),
        "quarantined_files": sum(r.quarantined_files for r in results),
        "duplicates_dropped": sum(r.duplicates for r in results),
        "waiting_partitions": dg.MetadataValue.md("\n".join(waiting) or "none"),
        "summary": dg.MetadataValue.md(_summary_table(results)),
        "raw_path": dg.MetadataValue.path(str(settings.raw_dir / contract.name)),
    }


def raw_assets(scope: Scope) -> list[dg.AssetsDefinition]:
    """One raw-snapshot asset per source the use case declares."""
    return [build_raw_asset(scope, c) for c in contracts_of(scope.usecase).values()]
