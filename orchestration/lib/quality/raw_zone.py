"""The personal data the raw zone holds: every value a personal-data column of a source ever
held, read from the raw snapshots, all of them or some (what the scan searches for)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from orchestration.lib.core.sql import quote_identifier
from orchestration.lib.quality.personal_data import PersonalData
from orchestration.lib.quality.scanners import memory_connection

PiiColumns = Mapping[str, Collection[str]]
"""Source name -> its personal-data columns (the union over every declared use case)."""


def _snapshot_files(raw_dir: Path, source: str) -> list[Path]:
    return sorted((raw_dir / source).glob("*/data.parquet"))


def personal_data_snapshots(raw_dir: Path, pii_columns: PiiColumns) -> dict[str, str]:
    """The raw snapshots of every source with personal data: ``<source>/<partition folder>``
    -> "size:mtime_ns" of its data file."""
    snapshots = {}
    for source in sorted(s for s, columns in pii_columns.items() if columns):
        for path in _snapshot_files(raw_dir, source):
            stat = path.stat()
            snapshots[f"{source}/{path.parent.name}"] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return snapshots


def load_personal_data(
    raw_dir: Path, pii_columns: PiiColumns, snapshots: Iterable[str] | None = None
) -> PersonalData:
    """Every value the personal-data columns ever held in the raw zone, or only those of the
    given snapshots (``<source>/<partition folder>``, as :func:`personal_data_snapshots`)."""
    wanted = None if snapshots is None else set(snapshots)
    return PersonalData.of(
        (f"{source}.{column}", value)
        for source in sorted(pii_columns)
        for column, value in _column_values(raw_dir, source, pii_columns[source], wanted)
    )


def _column_values(
    raw_dir: Path, source: str, columns: Collection[str], snapshots: set[str] | None
) -> Iterator[tuple[str, str]]:
    """``(column, value)`` for each distinct value of these columns in the source's raw
    snapshots (all of them, or those named); a column no snapshot has holds nothing."""
    files = [f for f in _snapshot_files(raw_dir, source)
             if snapshots is None or f"{source}/{f.parent.name}" in snapshots]
    if not files or not columns:
        return
    snapshot = memory_connection().read_parquet([str(f) for f in files], union_by_name=True)
    for column in sorted(set(columns) & set(snapshot.columns)):
        text = f"cast({quote_identifier(column)} as varchar)"
        for (value,) in snapshot.filter(f"{text} is not null").project(text).distinct().fetchall():
            yield column, value
