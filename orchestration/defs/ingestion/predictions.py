"""``raw_predictions``: the scoring service's closed prediction logs, in the raw zone.

The service writes ``serving/<use case>/predictions/open/`` and renames a file into ``closed/``
once it is complete; only closed files are read. Each becomes one immutable Parquet snapshot
(``raw/predictions/<use case>/file=<log file name>/data.parquet``), written once: re-running
ingests only files not ingested yet, so a row is never duplicated. Monitoring joins these rows
with the labels when they arrive (the feedback loop).
"""

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from orchestration.defs.partitions import single_run
from orchestration.defs.scope import Scope
from orchestration.lib.core.atomic import atomic_output
from orchestration.lib.serving.prediction_log import (
    CLOSED_DIR,
    FILE_PREFIX,
    FILE_SUFFIX,
    read_log_file,
)
from orchestration.settings import Settings


def _snapshot_path(settings: Settings, log_file: Path) -> Path:
    return settings.raw_predictions_dir / f"file={log_file.stem}" / "data.parquet"


def pending_log_files(settings: Settings) -> list[Path]:
    """Closed prediction log files not ingested yet (what the next materialization reads)."""
    closed = sorted((settings.prediction_log_dir / CLOSED_DIR).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
    return [path for path in closed if not _snapshot_path(settings, path).exists()]


RAW_PREDICTIONS = "raw_predictions"


def raw_predictions_asset(scope: Scope) -> dg.AssetsDefinition:
    """The use case's ingested prediction logs (a use case served online)."""

    @dg.asset(
        key=scope.key(RAW_PREDICTIONS),
        group_name="ingestion",
        backfill_policy=single_run,
        description=(
            "Every request the scoring service scored (features, score, decision, model "
            "version), from its closed prediction log files; one immutable snapshot per log "
            "file."
        ),
    )
    def raw_predictions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = scope.settings()
        ingested_rows = 0
        new_files = []
        for path in pending_log_files(settings):
            target = _snapshot_path(settings, path)
            frame = read_log_file(path, times=(settings.usecase.data.event_time,))
            frame = frame.assign(log_file=path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(target) as tmp:
                frame.to_parquet(tmp, index=False)
            ingested_rows += len(frame)
            new_files.append(path.name)
        context.log.info(f"ingested {len(new_files)} closed prediction log file(s)")
        return dg.MaterializeResult(
            metadata={
                "new_files": len(new_files),
                "new_rows": ingested_rows,
                "files_total": len(list(settings.raw_predictions_dir.glob("file=*"))),
                "path": dg.MetadataValue.path(str(settings.raw_predictions_dir)),
            }
        )

    return raw_predictions


def pending_input(scope: Scope) -> dict[dg.AssetKey, Callable[[Settings], bool]]:
    """Unpartitioned assets fed by files outside the daily partitions, with how to tell that
    new input is waiting: `blueprint materialize` rebuilds them then, as it rebuilds what is
    older than its daily upstream."""
    if scope.usecase.monitoring.traffic != "prediction_log":
        return {}
    return {scope.key(RAW_PREDICTIONS): lambda settings: bool(pending_log_files(settings))}
