"""Landing -> raw ingestion: enforce a source contract and write one raw snapshot per partition.

A partition is one business date of one source. All landing files of that date (every
delivery, in delivery order) are parsed as text, validated column by column with vectorized
Arrow/NumPy operations against the source's `SourceContract`, de-duplicated on the source key
(the last valid delivery of a key wins: a correction) and written as
``raw/<source>/date=YYYY-MM-DD/data.parquet``. Rows that break the contract go to quarantine,
never silently away; files that cannot be read are quarantined whole. A change of the source's
schema stops the partition with `SchemaChangeError` before anything is written.

The layout and formats are described in ``docs/DATA_CONTRACTS.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.ingestion.contracts import (
    SourceContract,
)
from orchestration.lib.ingestion.landing import (
    FINGERPRINT_KEY,
    UNREADABLE_FILE,
    LandingFile,
    UnreadableFileError,
    decode_file,
    file_stamp,
    input_fingerprint,
    landing_files,
    quarantine_records_path,
    raw_quarantine_rows_path,
    raw_snapshot_path,
    snapshot_cache,
    snapshot_metadata,
)
from orchestration.lib.ingestion.parsing import (
    IngestionError,
    ParsedFile,
    parse_csv,
    parse_jsonl,
)
from orchestration.lib.ingestion.raw_tables import (
    DICTIONARY_COLUMNS,
    UnreadableFile,
    quarantine_tables,
    snapshot_table,
)
from orchestration.lib.ingestion.triage import DataLines, Triage, data_lines, triage, typed_columns

SUMMARY_KEY = b"blueprint.ingest_summary"

class PartitionNotReadyError(IngestionError):
    """The partition has no readable landing file yet; nothing was written."""


@dataclass(frozen=True)
class IngestResult:
    """Outcome of `ingest_partition`; rows_in == rows_written + quarantined_rows + duplicates."""

    partition_date: date
    rows_in: int
    """Data lines of the readable files (headers excluded)."""
    rows_written: int
    quarantined_rows: int
    quarantined_files: int
    duplicates: int
    files: tuple[str, ...]
    fingerprint: str
    written: bool
    """False when the snapshot already matched the landing files and was left untouched."""
    path: Path
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    """Quarantine records by reason (column and rule, without the offending value)."""


@dataclass(frozen=True)
class _Targets:
    """The three files a partition's ingestion writes."""

    snapshot: Path
    records: Path
    rows: Path


@dataclass(frozen=True)
class _Delivery:
    """The landing files of one business date, read, with their input fingerprint."""

    files: list[LandingFile]
    contents: list[bytes]
    shas: list[str]
    names: tuple[str, ...]
    fingerprint: str


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _utc(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _result_from_summary(
    summary: dict, partition_date: date, fingerprint: str, path: Path
) -> IngestResult:
    return IngestResult(
        partition_date=partition_date,
        rows_in=summary["rows_in"],
        rows_written=summary["rows_written"],
        quarantined_rows=summary["quarantined_rows"],
        quarantined_files=summary["quarantined_files"],
        duplicates=summary["duplicates"],
        files=tuple(summary["files"]),
        fingerprint=fingerprint,
        written=False,
        path=path,
        quarantine_reasons=dict(summary["quarantine_reasons"]),
    )


def ingest_partition(
    contract: SourceContract,
    partition_date: date | str,
    landing_dir: Path,
    raw_dir: Path,
    quarantine_dir: Path,
    raw_quarantine_dir: Path | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Validate every landing file of one business date and write its raw snapshot.

    Directories are zone roots (``settings.landing_dir``, ``settings.raw_dir``, ...); the
    source's folder is added here. Writes, each atomically and in this order: the quarantine
    records, the raw quarantine rows (and a copy of each unreadable file), then the snapshot,
    whose input fingerprint marks the version as complete. Nothing is written when the snapshot
    already carries the landing files' fingerprint (``written=False``).

    Raises `PartitionNotReadyError` when no landing file of the date is readable and
    `SchemaChangeError` when a file's columns or a column's type differ from the contract;
    in both cases nothing is written.
    """
    partition_date = _as_date(partition_date)
    targets = _targets(contract, partition_date, raw_dir, quarantine_dir, raw_quarantine_dir)
    label = f"{contract.name} partition {partition_date.isoformat()}"
    delivery = _read_landing(contract, landing_dir, partition_date, label)
    unchanged = _unchanged_result(targets, delivery.fingerprint, partition_date)
    if unchanged is not None:
        return unchanged
    parsed_files, unreadable = _parse_files(contract, delivery, label)
    lines = data_lines(parsed_files)
    values, parsed = typed_columns(contract, lines)
    verdict = triage(contract, lines, values, parsed, partition_date)
    ingested_at = _utc(now)
    records, raw_rows = quarantine_tables(lines, verdict, unreadable, partition_date, ingested_at)
    summary = _summary(lines, verdict, unreadable, delivery.names)
    snapshot = snapshot_table(contract, lines, parsed, verdict.keep, ingested_at)
    snapshot = snapshot.replace_schema_metadata(
        {
            FINGERPRINT_KEY: delivery.fingerprint.encode(),
            SUMMARY_KEY: json.dumps(summary).encode(),
            b"blueprint.contract": f"{contract.name} v{contract.version}".encode(),
        }
    )
    _write(targets, records, raw_rows, unreadable, snapshot)
    result = _result_from_summary(summary, partition_date, delivery.fingerprint, targets.snapshot)
    return replace(result, written=True)


def _targets(
    contract: SourceContract,
    partition_date: date,
    raw_dir: Path,
    quarantine_dir: Path,
    raw_quarantine_dir: Path | None,
) -> _Targets:
    raw_dir, quarantine_dir = Path(raw_dir), Path(quarantine_dir)
    raw_quarantine_dir = Path(raw_quarantine_dir) if raw_quarantine_dir else raw_dir / "quarantine"
    return _Targets(
        raw_snapshot_path(contract, raw_dir, partition_date),
        quarantine_records_path(contract, quarantine_dir, partition_date),
        raw_quarantine_rows_path(contract, raw_quarantine_dir, partition_date),
    )


def _read_landing(
    contract: SourceContract, landing_dir: Path, partition_date: date, label: str
) -> _Delivery:
    """Read the date's landing files and fingerprint them; raise when there is none."""
    landing = landing_files(contract, landing_dir, partition_date).get(partition_date, [])
    if not landing:
        raise PartitionNotReadyError(f"{label} is not ready: no landing file")
    contents = [f.path.read_bytes() for f in landing]
    shas = [hashlib.sha256(data).hexdigest() for data in contents]
    names = tuple(f.name for f in landing)
    fingerprint = input_fingerprint(contract, zip(names, shas, strict=True))
    return _Delivery(landing, contents, shas, names, fingerprint)


def _unchanged_result(
    targets: _Targets, fingerprint: str, partition_date: date
) -> IngestResult | None:
    """The result recorded in a complete snapshot of the same landing files, if there is one."""
    metadata = snapshot_metadata(targets.snapshot)
    if (
        metadata is not None
        and metadata.get(FINGERPRINT_KEY) == fingerprint.encode()
        and SUMMARY_KEY in metadata
        and targets.records.exists()
        and targets.rows.exists()
    ):
        summary = json.loads(metadata[SUMMARY_KEY])
        return _result_from_summary(summary, partition_date, fingerprint, targets.snapshot)
    return None


def _parse_files(
    contract: SourceContract, delivery: _Delivery, label: str
) -> tuple[list[ParsedFile], list[UnreadableFile]]:
    """Decode and parse each file; raise when none is readable."""
    parsed_files: list[ParsedFile] = []
    unreadable: list[UnreadableFile] = []
    for landing_file, data, sha in zip(
        delivery.files, delivery.contents, delivery.shas, strict=True
    ):
        try:
            decoded = decode_file(contract, landing_file.name, data)
        except UnreadableFileError as error:
            unreadable.append(UnreadableFile(landing_file, data, sha, str(error)))
            continue
        parse = parse_csv if contract.file_format == "csv" else parse_jsonl
        parsed_files.append(parse(contract, landing_file.name, sha, decoded))
    if not parsed_files:
        detail = "; ".join(reason for *_, reason in unreadable)
        raise PartitionNotReadyError(f"{label} is not ready: no readable landing file ({detail})")
    return parsed_files, unreadable


def _summary(
    lines: DataLines,
    verdict: Triage,
    unreadable: list[UnreadableFile],
    names: tuple[str, ...],
) -> dict:
    """The counts the snapshot records, and `IngestResult` reports."""
    counts = Counter(verdict.counts)
    for _ in unreadable:
        counts[UNREADABLE_FILE] += 1
    return {
        "rows_in": len(lines.texts),
        "rows_written": int(np.count_nonzero(verdict.keep)),
        "quarantined_rows": len(verdict.reasons),
        "quarantined_files": len(unreadable),
        "duplicates": int(verdict.duplicate.sum()),
        "files": list(names),
        "quarantine_reasons": dict(counts),
    }


def _write(
    targets: _Targets,
    records: pa.Table,
    raw_rows: pa.Table,
    unreadable: list[UnreadableFile],
    snapshot: pa.Table,
) -> None:
    """Write the quarantine, then the unreadable files' copies, then the snapshot (last: its
    fingerprint marks the partition complete)."""
    for target, table in ((targets.records, records), (targets.rows, raw_rows)):
        with atomic_output(target) as temp:
            pq.write_table(table, temp)
    for unreadable_file in unreadable:
        atomic_write_bytes(targets.rows.parent / unreadable_file.file.name, unreadable_file.data)
    with atomic_output(targets.snapshot) as temp:
        pq.write_table(snapshot, temp, use_dictionary=DICTIONARY_COLUMNS)
    stamp = file_stamp(targets.snapshot.stat())
    snapshot_cache[targets.snapshot] = (stamp, dict(snapshot.schema.metadata))


def ingest_partitions(
    contract: SourceContract,
    partition_dates: Iterable[date | str],
    landing_dir: Path,
    raw_dir: Path,
    quarantine_dir: Path,
    raw_quarantine_dir: Path | None = None,
    now: datetime | None = None,
    workers: int = 1,
) -> Iterator[tuple[date, IngestResult | IngestionError]]:
    """`ingest_partition` for several business dates of one source, ``workers`` at a time.

    Partitions share nothing (each writes its own folders, atomically), and most of a
    partition's time is spent where Python lets other threads run: decompression, Arrow's
    readers and compute kernels, Parquet encoding and the file system. Yields
    ``(date, result)`` in the order of ``partition_dates``; an `IngestionError` (not ready,
    schema change) is yielded in place of the result, for the caller to decide whether it
    stops the run. Any other error is raised. When the caller stops iterating, partitions not
    started yet are cancelled; those running finish their atomic writes.
    """
    days = [_as_date(day) for day in partition_dates]

    def one(day: date) -> IngestResult | IngestionError:
        try:
            return ingest_partition(
                contract, day, landing_dir, raw_dir, quarantine_dir, raw_quarantine_dir, now
            )
        except IngestionError as error:
            return error

    if workers <= 1 or len(days) <= 1:
        for day in days:
            yield day, one(day)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ingest-{contract.name}")
    try:
        yield from zip(days, pool.map(one, days), strict=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
