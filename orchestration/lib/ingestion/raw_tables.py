"""The tables a partition's ingestion writes: the raw snapshot (the kept rows, typed, with their
lineage) and the quarantine (records without personal data, and the raw rows themselves)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.landing import LandingFile
from orchestration.lib.ingestion.triage import DataLines, Triage
from orchestration.lib.ingestion.validation import ARROW_TYPES, null_where_not

_UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
LINEAGE_SCHEMA = pa.schema(
    [
        ("_source_file", pa.string()),
        ("_source_sha256", pa.string()),
        ("_source_line", pa.int64()),
        ("_ingested_at", _UTC_TIMESTAMP),
    ]
)
DICTIONARY_COLUMNS = ["_source_file", "_source_sha256", "_ingested_at"]
"""Snapshot columns Parquet-encoded with a dictionary: one value per file or partition. The
source's own columns are mostly distinct per row (ids, times, amounts, card numbers), where a
dictionary is built only to be given up: plain encoding writes a partition faster at the same
size (figures: docs/OPERATING_NOTES.md)."""
QUARANTINE_RECORDS_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("reason", pa.string()),
        ("row_sha256", pa.string()),
        ("partition_date", pa.date32()),
        ("quarantined_at", _UTC_TIMESTAMP),
    ]
)
"""Quarantine records: no personal data, safe outside the raw zone."""
RAW_QUARANTINE_ROWS_SCHEMA = pa.schema([*QUARANTINE_RECORDS_SCHEMA, ("raw_line", pa.string())])
"""The quarantined rows themselves (may hold personal data: raw zone only)."""


class UnreadableFile(NamedTuple):
    """A landing file that cannot be decoded: quarantined whole."""

    file: LandingFile
    data: bytes
    sha256: str
    reason: str


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def quarantine_tables(
    lines: DataLines,
    verdict: Triage,
    unreadable: list[UnreadableFile],
    partition_date: date,
    ingested_at: datetime,
) -> tuple[pa.Table, pa.Table]:
    """The quarantine records (no personal data) and the raw quarantine rows (with the text)."""
    quarantine_rows = []
    for landing_file, _, sha, reason in unreadable:
        quarantine_rows.append((landing_file.name, None, reason, sha, None))
    file_names = [f.name for f in lines.files]
    for index in sorted(verdict.reasons):
        text = lines.texts[index]
        quarantine_rows.append(
            (
                file_names[lines.file_index[index]],
                int(lines.line_numbers[index]),
                verdict.reasons[index],
                _sha256_text(text),
                text,
            )
        )
    quarantine_columns = list(zip(*quarantine_rows, strict=True)) or [()] * 5
    n_quarantined = len(quarantine_rows)
    records = pa.table(
        {
            "source_file": pa.array(quarantine_columns[0], pa.string()),
            "line_number": pa.array(quarantine_columns[1], pa.int64()),
            "reason": pa.array(quarantine_columns[2], pa.string()),
            "row_sha256": pa.array(quarantine_columns[3], pa.string()),
            "partition_date": pa.array([partition_date] * n_quarantined, pa.date32()),
            "quarantined_at": pa.array([ingested_at] * n_quarantined, _UTC_TIMESTAMP),
        },
        schema=QUARANTINE_RECORDS_SCHEMA,
    )
    raw_rows = records.append_column("raw_line", pa.array(quarantine_columns[4], pa.string()))
    return records, raw_rows


def snapshot_table(
    contract: SourceContract,
    lines: DataLines,
    parsed: dict[str, pa.Array],
    keep: np.ndarray,
    ingested_at: datetime,
) -> pa.Table:
    """The snapshot: valid, first-seen rows with their contract types and lineage."""
    keep_positions = pa.array(np.flatnonzero(keep))
    kept_lines = lines.candidates[keep]
    kept_files = pa.array(lines.candidate_file[keep])
    columns = {}
    for column in contract.columns:
        typed = parsed[column.name].take(keep_positions)
        if column.type == "string" and column.nullable:
            typed = null_where_not(typed, pc.not_equal(typed, ""))
        columns[column.name] = typed
    columns["_source_file"] = pa.array([f.name for f in lines.files], pa.string()).take(kept_files)
    columns["_source_sha256"] = pa.array([f.sha256 for f in lines.files]).take(kept_files)
    columns["_source_line"] = pa.array(lines.line_numbers[kept_lines])
    columns["_ingested_at"] = pc.cast(
        pa.array(np.full(len(kept_lines), np.datetime64(ingested_at.replace(tzinfo=None), "us"))),
        _UTC_TIMESTAMP,
    )
    schema = pa.schema(
        [(c.name, ARROW_TYPES[c.type]) for c in contract.columns] + list(LINEAGE_SCHEMA)
    )
    return pa.table(columns, schema=schema)
