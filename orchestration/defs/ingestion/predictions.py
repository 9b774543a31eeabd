"""``raw_predictions``: the scoring service's closed prediction logs, in the raw zone.

The service writes ``serving/predictions/open/`` and renames a file into ``closed/`` once it is
complete; only closed files are read. Each becomes one immutable Parquet snapshot
(``raw/predictions/file=<log file name>/data.parquet``), written once: re-running ingests only
files not ingested yet, so a row is never duplicated. Monitoring joins these rows with the fraud
reports (the feedback loop).
"""

import dagster as dg
import pandas as pd

from orchestration.defs.partitions import single_run
from orchestration.lib.atomic import atomic_output
from orchestration.lib.prediction_log import (
    CLOSED_DIR,
    FEATURES,
    FILE_PREFIX,
    FILE_SUFFIX,
    file_records,
)
from orchestration.settings import get_settings


def _rows(path) -> pd.DataFrame:
    frame = pd.DataFrame(file_records(path))
    if frame.empty:
        return frame
    features = pd.json_normalize(frame.pop(FEATURES).tolist()).add_prefix(f"{FEATURES}.")
    frame = pd.concat([frame, features], axis=1)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    frame["tx_datetime"] = pd.to_datetime(frame["tx_datetime"], format="ISO8601")
    frame["log_file"] = path.name
    return frame


def pending_log_files(settings=None) -> list:
    """Closed prediction log files not ingested yet (what the next materialization reads)."""
    settings = settings or get_settings()
    closed = sorted((settings.prediction_log_dir / CLOSED_DIR).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
    out_dir = settings.raw_dir / "predictions"
    return [p for p in closed if not (out_dir / f"file={p.stem}" / "data.parquet").exists()]


@dg.asset(
    group_name="ingestion",
    backfill_policy=single_run,
    description=(
        "Every payment the scoring service scored (features, score, decision, model version), "
        "from its closed prediction log files; one immutable snapshot per log file."
    ),
)
def raw_predictions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    settings = get_settings()
    closed = list((settings.prediction_log_dir / CLOSED_DIR).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"))
    out_dir = settings.raw_dir / "predictions"
    ingested_rows = 0
    new_files = []
    for path in pending_log_files(settings):
        target = out_dir / f"file={path.stem}" / "data.parquet"
        frame = _rows(path)
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
            "files_total": len(closed),
            "path": dg.MetadataValue.path(str(out_dir)),
        }
    )
