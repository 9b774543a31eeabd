"""The serving snapshot: what the online feature store starts from, exported from the warehouse.

Serving never opens the warehouse (a running dbt build holds its lock). After each build, the
pipeline exports the recent history of the staged inputs the declared features read, the events
and their labels (the events of the last ``lookback_days`` days and the labels of those events),
as Parquet, together with the compiled SQL that turns them into features.

Layout under ``out_dir``::

    CURRENT                         name of the current version (replaced atomically)
    <version>/manifest.json         compiled SQL, its hash, last day, row counts, created_at
    <version>/stg_<events>.parquet   the staged events (the declaration's features.declared.events)
    <version>/stg_<labels>.parquet   their staged labels (the declaration's label.source)

A version is written in a hidden temporary folder and renamed into place complete; only then
does ``CURRENT`` switch to it, so a reader sees the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.core.atomic import atomic_write_bytes, fsync_path, process_alive
from orchestration.lib.core.sql import quote_literal
from orchestration.lib.features.feature_definitions import FeatureDefinitions, quote_identifier
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.settings import pseudonymization_key

SNAPSHOT_FORMAT = "blueprint.serving_snapshot/2"
"""2: the feature definitions carry the resolved declared features (their staging included)."""
CURRENT_POINTER = "CURRENT"
MANIFEST_FILE = "manifest.json"
KEEP_VERSIONS = 3
"""Versions kept on disk (the current one included): a reader still loading one keeps it."""
_TMP_SUFFIX = ".tmp"


class SnapshotError(Exception):
    """No usable snapshot (none published, incomplete, or made for other definitions)."""


@dataclass(frozen=True)
class ServingSnapshot:
    """One published snapshot version."""

    path: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def last_day(self) -> date:
        return date.fromisoformat(self.manifest["last_day"])

    @property
    def definitions(self) -> FeatureDefinitions:
        return FeatureDefinitions.from_dict(self.manifest["feature_definitions"])

    def table_path(self, name: str) -> Path:
        return self.path / self.manifest["tables"][name]["file"]


def publish_serving_snapshot(
    warehouse_path: Path,
    definitions: FeatureDefinitions,
    out_dir: Path,
    lookback_days: int | None = None,
    *,
    pseudonymization_key_fingerprint: str | None = None,
    now: datetime | None = None,
) -> ServingSnapshot:
    """Export the serving state of ``warehouse_path`` as a new snapshot version and switch to it.

    ``definitions``: the compiled SQL of the dbt run that built the warehouse.
    ``lookback_days``: days of history kept up to the last day (default: the longest feature
    reach of the declared features, plus one day; see ``ResolvedFeatures.lookback_days``).
    """
    out_dir = Path(out_dir)
    lookback_days = lookback_days or definitions.features.lookback_days
    if lookback_days < definitions.features.lookback_days - 1:
        raise ValueError(
            f"lookback_days={lookback_days} is shorter than the feature windows need "
            f"({definitions.features.lookback_days - 1} days)"
        )
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_versions(out_dir)
    version = f"{created_at:%Y%m%dT%H%M%S%fZ}-{definitions.hash[:12]}"
    staging = out_dir / f".{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}"
    staging.mkdir()
    try:
        first_day, last_day, tables = _recent_state(warehouse_path, definitions, lookback_days)
        manifest = {
            "format": SNAPSHOT_FORMAT,
            "version": version,
            "created_at": created_at.isoformat(),
            "first_day": first_day.isoformat(),
            "last_day": last_day.isoformat(),
            "lookback_days": lookback_days,
            "feature_definitions_hash": definitions.hash,
            "pseudonymization_key_fingerprint": pseudonymization_key_fingerprint
            or key_fingerprint(pseudonymization_key()),
            "tables": {
                name: {"file": f"{name}.parquet", "rows": table.num_rows}
                for name, table in tables.items()
            },
            "feature_definitions": definitions.to_dict(),
        }
        final = _write_version(staging, out_dir / version, tables, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_bytes(out_dir / CURRENT_POINTER, f"{version}\n".encode())
    _remove_old_versions(out_dir, keep=version)
    return ServingSnapshot(path=final, manifest=manifest)


def _recent_state(
    warehouse_path: Path, definitions: FeatureDefinitions, lookback_days: int
) -> tuple[date, date, dict[str, pa.Table]]:
    """The first and last day kept, and the staged events of those days with their labels
    (labels of older events never count: their events are not kept), read from the warehouse."""
    features = definitions.features
    events_name, labels_name = features.staged_inputs
    events = definitions.input(events_name).relation.sql
    labels = definitions.input(labels_name).relation.sql
    day, when, row_id = (quote_identifier(c) for c in (
        features.partition_date, features.event_time, features.row_id))
    with duckdb.connect() as conn:
        # attached under the database name the compiled SQL uses, whatever the file name
        database = quote_identifier(definitions.input(events_name).relation.database)
        conn.execute(f"attach {quote_literal(str(warehouse_path))} as {database} (read_only)")
        (last_day,) = conn.sql(f"select max({day}) from {events}").fetchall()[0]
        if last_day is None:
            raise SnapshotError(f"{warehouse_path}: {events} is empty")
        first_day = last_day - timedelta(days=lookback_days - 1)
        recent = f"select * from {events} where {day} >= $first_day"
        params = {"first_day": first_day}
        tables = {
            events_name: conn.sql(
                f"{recent} order by {when}, {row_id}", params=params
            ).to_arrow_table(),
            labels_name: conn.sql(
                f"select * from {labels} where {row_id} in "
                f"(select {row_id} from ({recent})) order by all",
                params=params,
            ).to_arrow_table(),
        }
    return first_day, last_day, tables


def _write_version(
    staging: Path, final: Path, tables: dict[str, pa.Table], manifest: dict[str, Any]
) -> Path:
    """Write the version in ``staging``, make it durable, and rename it to ``final``."""
    for name, table in tables.items():
        pq.write_table(table, staging / f"{name}.parquet")
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in staging.iterdir():
        fsync_path(entry)
    staging.rename(final)
    fsync_path(final.parent)
    return final


def current_snapshot(snapshot_dir: Path) -> ServingSnapshot:
    """The snapshot ``CURRENT`` points to (or ``snapshot_dir`` itself if it is a version)."""
    snapshot_dir = Path(snapshot_dir)
    if (snapshot_dir / MANIFEST_FILE).exists():
        folder = snapshot_dir
    else:
        pointer = snapshot_dir / CURRENT_POINTER
        if not pointer.exists():
            raise SnapshotError(f"{snapshot_dir}: no serving snapshot has been published")
        folder = snapshot_dir / pointer.read_text().strip()
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    if manifest.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{folder}: not a {SNAPSHOT_FORMAT} snapshot")
    return ServingSnapshot(path=folder, manifest=manifest)


def _versions(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and (p / MANIFEST_FILE).exists())


def _remove_old_versions(out_dir: Path, keep: str) -> None:
    """Delete all but the newest ``KEEP_VERSIONS`` versions, never the current one."""
    for folder in _versions(out_dir)[:-KEEP_VERSIONS]:
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)


def _remove_abandoned_versions(out_dir: Path) -> None:
    """Delete temporary folders left by publishers that died (the pid in their name is gone)."""
    for entry in out_dir.iterdir():
        if not (entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX)):
            continue
        parts = entry.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or pid == os.getpid() or process_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)


