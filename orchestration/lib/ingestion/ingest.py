"""Landing -> raw ingestion: enforce a source contract and write one raw snapshot per partition.

A partition is one business date of one source. All landing files of that date (every
delivery, in delivery order) are parsed as text, validated column by column with vectorized
Arrow/NumPy operations against the source's `SourceContract`, de-duplicated on the source key
(first delivery wins) and written as ``raw/<source>/date=YYYY-MM-DD/data.parquet``. Rows that
break the contract go to quarantine, never silently away; files that cannot be read are
quarantined whole. A change of the source's schema stops the partition with
`SchemaChangeError` before anything is written.

The layout and formats are described in ``docs/DATA_CONTRACTS.md``.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import operator
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid_pans
from orchestration.lib.ingestion.contracts import (
    DATE_FORMAT,
    TIMESTAMP_FORMAT,
    Column,
    Rule,
    SourceContract,
)

DATA_FILE = "data.parquet"
RECORDS_FILE = "records.parquet"
ROWS_FILE = "rows.parquet"
FINGERPRINT_KEY = b"blueprint.input_fingerprint"
SUMMARY_KEY = b"blueprint.ingest_summary"
UNREADABLE_FILE = "unreadable file"

_UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}
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
dictionary is built only to be given up: plain encoding writes a partition ~35 % faster at the
same size."""
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

_NUMBER_SHAPE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^(?i:[+-]?(inf|infinity|nan))$"
_DATE_SHAPE = r"^[1-9]\d{3}-\d{2}-\d{2}$"
_TIMESTAMP_SHAPE = r"^[1-9]\d{3}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
_DIGIT_RUN = re.compile(r"(?:\d[ -]?){12,}\d")
"""Anything that could be a card number; never echoed in a reason."""
_ECHO_MAX_CHARS = 40


class IngestionError(Exception):
    """Base class of ingestion failures."""


class SchemaChangeError(IngestionError):
    """The source changed its schema (columns or a column's type); nothing was written."""


class PartitionNotReadyError(IngestionError):
    """The partition has no readable landing file yet; nothing was written."""


@dataclass(frozen=True)
class LandingFile:
    """One delivered file: ``<source>_<YYYY-MM-DD>__d<YYYYMMDDTHHMMSS>.<ext>``."""

    path: Path
    partition_date: date
    delivery_id: str
    stamp: tuple[int, int, int]
    """(inode, size, mtime in ns) when listed: changes whenever the file is replaced."""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class PartitionStatus:
    """What landing holds for one business date, compared with the raw snapshot."""

    partition_date: date
    files: tuple[str, ...]
    """Landing file names in delivery order."""
    fingerprint: str
    """Input fingerprint of these files (what a snapshot of them would carry)."""
    ready: bool
    """At least one file is readable: ingesting would produce a snapshot."""
    stale: bool
    """No snapshot yet, or its fingerprint differs from the landing files'."""
    unreadable_files: tuple[str, ...]
    snapshot_fingerprint: str | None


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


# --------------------------------------------------------------------------- paths


def _partition_folder(partition_date: date) -> str:
    return f"date={partition_date.isoformat()}"


def raw_snapshot_path(contract: SourceContract, raw_dir: Path, partition_date: date) -> Path:
    """``raw/<source>/date=YYYY-MM-DD/data.parquet``."""
    return Path(raw_dir) / contract.name / _partition_folder(partition_date) / DATA_FILE


def quarantine_records_path(
    contract: SourceContract, quarantine_dir: Path, partition_date: date
) -> Path:
    """``quarantine/<source>/date=YYYY-MM-DD/records.parquet`` (no personal data)."""
    return Path(quarantine_dir) / contract.name / _partition_folder(partition_date) / RECORDS_FILE


def raw_quarantine_rows_path(
    contract: SourceContract, raw_quarantine_dir: Path, partition_date: date
) -> Path:
    """``raw/quarantine/<source>/date=YYYY-MM-DD/rows.parquet`` (the rows themselves)."""
    folder = Path(raw_quarantine_dir) / contract.name / _partition_folder(partition_date)
    return folder / ROWS_FILE


# --------------------------------------------------------------------------- landing files


def _file_name_pattern(contract: SourceContract) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(contract.name)}_(\d{{4}}-\d{{2}}-\d{{2}})__d(\d{{8}}T\d{{6}})"
        rf"\.{re.escape(contract.extension)}$"
    )


def landing_files(
    contract: SourceContract, landing_dir: Path, day: date | None = None
) -> dict[date, list[LandingFile]]:
    """Landing files of a source by business date, each list in delivery order; only those of
    ``day`` when given (the other names are skipped unread: a partition's ingestion no longer
    parses and stats every file its source ever delivered).

    ``landing_dir`` is the landing zone root; files are looked up in ``<landing_dir>/<source>``.
    Names that do not follow the contract's pattern (partial uploads, other sources) are ignored.
    """
    folder = Path(landing_dir) / contract.name
    if not folder.is_dir():
        return {}
    pattern = _file_name_pattern(contract)
    prefix = "" if day is None else f"{contract.name}_{day.isoformat()}__"
    by_date: dict[date, list[LandingFile]] = {}
    for entry in os.scandir(folder):
        if not entry.name.startswith(prefix):
            continue
        match = pattern.match(entry.name)
        if not match or not entry.is_file():
            continue
        try:
            partition_date = date.fromisoformat(match.group(1))
        except ValueError:
            continue
        by_date.setdefault(partition_date, []).append(
            LandingFile(Path(entry.path), partition_date, match.group(2), _stamp(entry.stat()))
        )
    for files in by_date.values():
        files.sort(key=lambda f: (f.delivery_id, f.name))
    return dict(sorted(by_date.items()))


def input_fingerprint(contract: SourceContract, files: Iterable[tuple[str, str]]) -> str:
    """Hash of the contract version and the (file name, sha256) of every landing file."""
    payload = {
        "source": contract.name,
        "contract_version": contract.version,
        "files": sorted([name, sha] for name, sha in files),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class _UnreadableFileError(Exception):
    """A landing file whose bytes cannot be turned into text."""


def _gunzip(data: bytes) -> bytes:
    """`gzip.decompress` without its Python-level overhead (every member, CRC checked)."""
    members = []
    while data:
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        members.append(member.decompress(data))
        if not member.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = member.unused_data.lstrip(b"\x00")  # gzip allows zero padding between members
    return b"".join(members)


def _decode(contract: SourceContract, name: str, data: bytes) -> bytes:
    """The decompressed UTF-8 bytes of a landing file; `_UnreadableFileError` says why not."""
    if contract.gzip:
        try:
            data = _gunzip(data)
        except (EOFError, zlib.error) as error:
            raise _UnreadableFileError(f"{UNREADABLE_FILE}: {name}: {error!r}") from error
    data = data.removeprefix(codecs.BOM_UTF8)
    if not data.isascii():  # ASCII is valid UTF-8, and far quicker to check
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            detail = f"not UTF-8 ({error})"
            raise _UnreadableFileError(f"{UNREADABLE_FILE}: {name}: {detail}") from error
    if not data or data.isspace():
        raise _UnreadableFileError(f"{UNREADABLE_FILE}: {name}: empty")
    return data


@dataclass(frozen=True)
class _Probe:
    sha256: str
    unreadable_reason: str | None


# In-memory caches for partition_status, which a sensor calls every few seconds: keyed by path
# and valid while the file's stamp is unchanged (an atomic replace gives a new inode).
_probe_cache: dict[Path, tuple[tuple[int, int, int], _Probe]] = {}
_snapshot_cache: dict[Path, tuple[tuple[int, int, int], dict[bytes, bytes]]] = {}


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _probe_is_cached(landing_file: LandingFile) -> bool:
    cached = _probe_cache.get(landing_file.path)
    return cached is not None and cached[0] == landing_file.stamp


def _probe(contract: SourceContract, landing_file: LandingFile) -> _Probe:
    """Checksum and readability of a landing file, cached by path and stamp."""
    if _probe_is_cached(landing_file):
        return _probe_cache[landing_file.path][1]
    data = landing_file.path.read_bytes()
    try:
        _decode(contract, landing_file.name, data)
        reason = None
    except _UnreadableFileError as error:
        reason = str(error)
    probe = _Probe(hashlib.sha256(data).hexdigest(), reason)
    _probe_cache[landing_file.path] = (landing_file.stamp, probe)
    return probe


def _snapshot_metadata(path: Path) -> dict[bytes, bytes] | None:
    """Key-value metadata of a raw snapshot, cached by path and stamp; None if absent."""
    try:
        stamp = _stamp(path.stat())
    except FileNotFoundError:
        return None
    cached = _snapshot_cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    metadata = dict(pq.read_metadata(path).metadata or {})
    _snapshot_cache[path] = (stamp, metadata)
    return metadata


def read_snapshot_fingerprint(path: Path) -> str | None:
    """The input fingerprint stored in a raw snapshot, or None when there is no snapshot."""
    metadata = _snapshot_metadata(Path(path))
    if metadata is None or FINGERPRINT_KEY not in metadata:
        return None
    return metadata[FINGERPRINT_KEY].decode()


def partition_status(
    contract: SourceContract, landing_dir: Path, raw_dir: Path
) -> dict[date, PartitionStatus]:
    """Per business date found in landing: its files, readiness and staleness of the snapshot.

    Cheap enough for a sensor: file checksums and gzip integrity are computed once per
    (path, size, mtime) and kept in memory, snapshot fingerprints likewise.
    """
    by_date = landing_files(contract, landing_dir)
    every_file = [f for files in by_date.values() for f in files]
    new_files = [f for f in every_file if not _probe_is_cached(f)]
    if len(new_files) > 1:  # decompression and hashing release the GIL: probe in parallel
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(partial(_probe, contract), new_files))
    statuses = {}
    for partition_date, files in by_date.items():
        probes = [_probe(contract, f) for f in files]
        fingerprint = input_fingerprint(
            contract, [(f.name, p.sha256) for f, p in zip(files, probes, strict=True)]
        )
        snapshot = read_snapshot_fingerprint(raw_snapshot_path(contract, raw_dir, partition_date))
        unreadable = tuple(
            f.name for f, p in zip(files, probes, strict=True) if p.unreadable_reason
        )
        statuses[partition_date] = PartitionStatus(
            partition_date=partition_date,
            files=tuple(f.name for f in files),
            fingerprint=fingerprint,
            ready=len(unreadable) < len(files),
            stale=snapshot != fingerprint,
            unreadable_files=unreadable,
            snapshot_fingerprint=snapshot,
        )
    source_folder = Path(landing_dir) / contract.name
    seen = {f.path for f in every_file}
    for path in [p for p in _probe_cache if p.parent == source_folder and p not in seen]:
        del _probe_cache[path]
    return statuses


# --------------------------------------------------------------------------- parsing


@dataclass
class _ParsedFile:
    """The data lines of one readable file, split into fields but not yet validated."""

    name: str
    sha256: str
    lines: list[str]
    """Raw text of every data line."""
    first_line_number: int
    """1-based line number of ``lines[0]`` in the decompressed file."""
    malformed: dict[int, str]
    """Index in ``lines`` -> reason, for lines that do not hold exactly the contract's fields."""
    columns: dict[str, pa.Array]
    """Per contract column: the text values of the other (well-formed) lines, in line order."""


def _schema_change(contract: SourceContract, file_name: str, detail: str) -> SchemaChangeError:
    return SchemaChangeError(
        f"{contract.name}: schema change in {file_name}: {detail} "
        f"(contract {contract.name} v{contract.version} expects {list(contract.column_names)})"
    )


def _check_fields(contract: SourceContract, file_name: str, fields: Iterable[str]) -> None:
    fields = list(fields)
    expected = contract.column_names
    unknown = [f for f in fields if f not in expected]
    missing = [c for c in expected if c not in fields]
    repeated = sorted({f for f in fields if fields.count(f) > 1})
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {unknown}")
    if missing:
        problems.append(f"missing column(s) {missing}")
    if repeated:
        problems.append(f"repeated column(s) {repeated}")
    if problems:
        raise _schema_change(contract, file_name, " and ".join(problems))


def _text_array(values: Sequence[object]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [v if v is None or isinstance(v, str) else json.dumps(v) for v in values],
            type=pa.string(),
        )


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _field_count_reason(count: int, expected: int) -> str:
    if count == 0:
        return "empty line"
    return "missing field" if count < expected else "extra field"


def _csv_columns_arrow(
    data: bytes, header: list[str], line_count: int
) -> tuple[dict[str, pa.Array], dict[int, str]] | None:
    """Fast path: Arrow's CSV reader, all columns as text; None when lines and records differ.

    Arrow skips empty lines, ends a record at a lone carriage return and lets a quoted value
    span lines; each breaks the one record per line correspondence that line numbers rely on.
    The first two are looked for up front, the last shows in the record count.
    """
    if b"\n\n" in data or b"\n\r\n" in data:
        return None
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    malformed: dict[int, str] = {}

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        if row.number is None:
            raise _LinesDoNotMatchRecordsError
        # row.number counts the header as line 1; indexes in `lines` start after it.
        malformed[row.number - 2] = _field_count_reason(row.actual_columns, row.expected_columns)
        return "skip"

    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(use_threads=False, column_names=header, skip_rows=1),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, _LinesDoNotMatchRecordsError):
        return None
    if table.num_rows + len(malformed) != line_count:
        return None
    return {name: table.column(name).combine_chunks() for name in header}, malformed


class _LinesDoNotMatchRecordsError(Exception):
    """Records of a CSV file do not map one to one onto its lines."""


def _csv_columns_python(
    lines: list[str], header: list[str]
) -> tuple[dict[str, pa.Array], dict[int, str]]:
    """Slow path: the csv module, strictly one record per physical line."""
    rows: list[list[str]] = []
    malformed: dict[int, str] = {}
    for index, line in enumerate(lines):
        try:
            fields = next(csv.reader((line,)), [])
        except csv.Error:
            malformed[index] = "unparseable CSV line"
            continue
        if len(fields) != len(header):
            malformed[index] = _field_count_reason(len(fields), len(header))
            continue
        rows.append(fields)
    by_position = list(zip(*rows, strict=True)) if rows else [()] * len(header)
    columns = {name: _text_array(values) for name, values in zip(header, by_position, strict=True)}
    return columns, malformed


def _parse_csv(contract: SourceContract, name: str, sha256: str, data: bytes) -> _ParsedFile:
    lines = _split_lines(data.decode("utf-8"))
    try:
        header = next(csv.reader(lines[:1]))
    except csv.Error as error:
        raise _schema_change(contract, name, f"header line is not CSV ({error})") from error
    _check_fields(contract, name, header)
    data_lines = lines[1:]
    parsed = _csv_columns_arrow(data, header, len(data_lines))
    columns, malformed = parsed or _csv_columns_python(data_lines, header)
    columns = {column: columns[column] for column in contract.column_names}
    return _ParsedFile(name, sha256, data_lines, 2, malformed, columns)


_INVALID_JSON = object()


def _json_records(lines: list[str]) -> list[object]:
    """One decoded value per line; `_INVALID_JSON` for a line that is not JSON."""
    try:
        records = json.loads("[" + ",".join(lines) + "]")
        if len(records) == len(lines):
            return records
    except json.JSONDecodeError:
        pass
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append(_INVALID_JSON)
    return records


def _jsonl_columns_arrow(
    contract: SourceContract, data: bytes, lines: list[str]
) -> dict[str, pa.Array] | None:
    """Fast path: Arrow's JSON reader with every contract column as text; None unless each line
    is one object with exactly the contract's keys, each a string.

    Anything else (a blank line, which Arrow skips; two objects on a line, which it reads as two
    rows; a missing key or a null, which it reads as null; a number, a nested value, a repeated
    or unknown key, a line that is not JSON) falls back to the line-by-line path, which gives each
    such line its own reason or stops at the schema change.
    """
    if not all(line.strip() for line in lines):
        return None
    schema = pa.schema([(name, pa.string()) for name in contract.column_names])
    block_size = max(len(data) + 1, 1 << 20)  # one block: no line is cut
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=block_size),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(lines) or any(column.null_count for column in table.columns):
        return None
    return {name: table.column(name).combine_chunks() for name in contract.column_names}


def _parse_jsonl(contract: SourceContract, name: str, sha256: str, data: bytes) -> _ParsedFile:
    lines = _split_lines(data.decode("utf-8"))
    columns = _jsonl_columns_arrow(contract, data, lines)
    if columns is not None:
        return _ParsedFile(name, sha256, lines, 1, {}, columns)
    records = _json_records(lines)
    malformed: dict[int, str] = {}
    objects = []
    for index, record in enumerate(records):
        if isinstance(record, dict):
            objects.append(record)
        elif not lines[index].strip():
            malformed[index] = "empty line"
        elif record is _INVALID_JSON:
            malformed[index] = "not valid JSON"
        else:
            malformed[index] = "not a JSON object"
    expected = frozenset(contract.column_names)
    for keys in set(map(frozenset, objects)):
        if keys != expected:
            _check_fields(contract, name, keys)
    columns = {
        column: _text_array(list(map(operator.itemgetter(column), objects)))
        for column in contract.column_names
    }
    return _ParsedFile(name, sha256, lines, 1, malformed, columns)


# --------------------------------------------------------------------------- validation


def _bools(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow mask as NumPy, null counting as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _null_where_not(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def _parse_double(values: pa.Array) -> pa.Array:
    try:  # the common case: every value is a number
        return pc.cast(values, pa.float64())
    except pa.ArrowInvalid:
        shaped = _null_where_not(values, pc.match_substring_regex(values, _NUMBER_SHAPE))
        return pc.cast(shaped, pa.float64())


def _parse_temporal(values: pa.Array, column_type: str) -> pa.Array:
    """Parse exact ``YYYY-MM-DD[ HH:MM:SS]`` text; anything else, or an impossible date, is null."""
    shape = _TIMESTAMP_SHAPE if column_type == "timestamp" else _DATE_SHAPE
    shaped = _null_where_not(values, pc.match_substring_regex(values, shape))
    target = _ARROW_TYPES[column_type]
    try:
        return pc.cast(shaped, target)
    except pa.ArrowInvalid:
        pass
    # Some value is well-shaped but not a real instant (2018-02-30, 24:00:00). strptime rolls
    # those over to another day, so keep only values whose fields survive the round trip.
    fmt = "%Y-%m-%d %H:%M:%S" if column_type == "timestamp" else "%Y-%m-%d"
    parsed = pc.strptime(shaped, format=fmt, unit="us", error_is_null=True)
    fields = [(0, pc.year), (5, pc.month), (8, pc.day)]
    if column_type == "timestamp":
        fields += [(11, pc.hour), (14, pc.minute), (17, pc.second)]
    exact = None
    for start, extract in fields:
        width = 4 if start == 0 else 2
        text = pc.utf8_slice_codeunits(shaped, start, start + width)
        same = pc.equal(pc.cast(text, pa.int64()), extract(parsed))
        exact = same if exact is None else pc.and_(exact, same)
    return pc.cast(_null_where_not(parsed, exact), target)


def _parse(values: pa.Array, column_type: str) -> pa.Array:
    if column_type == "double":
        return _parse_double(values)
    if column_type in ("timestamp", "date"):
        return _parse_temporal(values, column_type)
    return values


@dataclass(frozen=True)
class _Check:
    label: str
    """``<column>: <rule>``: the reason without any value; also the key of the counts."""
    failed: np.ndarray
    echo: pa.Array | None
    """Values to quote in the reason; None for personal data."""


def _column_checks(
    column: Column, values: pa.Array, parsed: pa.Array, partition_date: date
) -> list[_Check]:
    """Checks of one column in precedence order: empty, type, then the declared rules."""
    echo = None if column.pii else values
    present = _bools(pc.not_equal(values, ""))
    checks = []
    if not column.nullable:
        checks.append(_Check(f"{column.name}: empty", ~present, None))
    if column.type != "string":
        unparsed = present & _bools(pc.is_null(parsed))
        expected = {
            "double": "not a number",
            "timestamp": f"not a timestamp {TIMESTAMP_FORMAT}",
            "date": f"not a date {DATE_FORMAT}",
        }[column.type]
        checks.append(_Check(f"{column.name}: {expected}", unparsed, echo))
    day = pa.scalar(partition_date, pa.date32())
    as_day = pc.cast(parsed, pa.date32()) if column.type in ("timestamp", "date") else None
    for rule in column.rules:
        if rule is Rule.DIGITS:
            failed = present & ~_bools(pc.ascii_is_decimal(values))
            checks.append(_Check(f"{column.name}: not digits", failed, echo))
        elif rule is Rule.PAN:
            shaped = _bools(pc.ascii_is_decimal(values)) & _bools(
                pc.equal(pc.binary_length(values), PAN_LENGTH)
            )
            checks.append(
                _Check(f"{column.name}: not {PAN_LENGTH} digits", present & ~shaped, None)
            )
            luhn = np.zeros(len(values), dtype=bool)
            luhn[shaped] = luhn_valid_pans(values.filter(pa.array(shaped)))
            checks.append(_Check(f"{column.name}: fails Luhn check", shaped & ~luhn, None))
        elif rule is Rule.FINITE:
            failed = _bools(pc.invert(pc.is_finite(parsed)))
            checks.append(_Check(f"{column.name}: not finite", failed, echo))
        elif rule is Rule.NON_NEGATIVE:
            failed = _bools(pc.less(parsed, 0))
            checks.append(_Check(f"{column.name}: negative", failed, echo))
        elif rule is Rule.ON_PARTITION_DATE:
            failed = _bools(pc.not_equal(as_day, day))
            label = f"{column.name}: not on business date {partition_date.isoformat()}"
            checks.append(_Check(label, failed, echo))
        elif rule is Rule.NOT_AFTER_PARTITION_DATE:
            failed = _bools(pc.greater(as_day, day))
            label = f"{column.name}: after business date {partition_date.isoformat()}"
            checks.append(_Check(label, failed, echo))
        else:
            raise ValueError(f"no check implemented for rule {rule!r}")
    return checks


def _echo(value: str) -> str:
    """A value quoted in a reason: shortened, with anything looking like a card number masked."""
    shown = _DIGIT_RUN.sub("<digits removed>", value)
    if len(shown) > _ECHO_MAX_CHARS:
        shown = shown[:_ECHO_MAX_CHARS] + "..."
    return f" ({shown!r})"


def _check_type_changes(
    contract: SourceContract,
    files: list[_ParsedFile],
    file_index: np.ndarray,
    values: dict[str, pa.Array],
    parsed: dict[str, pa.Array],
) -> None:
    """Raise `SchemaChangeError` when a typed column fails its parse on most of a file's rows."""
    rows_per_file = np.bincount(file_index, minlength=len(files))
    for column in contract.columns:
        if column.type == "string":
            continue
        unparsed = _bools(pc.not_equal(values[column.name], "")) & _bools(
            pc.is_null(parsed[column.name])
        )
        failures = np.bincount(file_index[unparsed], minlength=len(files))
        for index, parsed_file in enumerate(files):
            rows = int(rows_per_file[index])
            if rows < contract.type_change_min_rows:
                continue
            if failures[index] > contract.type_change_share * rows:
                example = ""
                if not column.pii:
                    first = int(np.flatnonzero(unparsed & (file_index == index))[0])
                    example = f", e.g.{_echo(values[column.name][first].as_py())}"
                raise _schema_change(
                    contract,
                    parsed_file.name,
                    f"column {column.name!r} is no longer {column.type}: "
                    f"{failures[index]} of {rows} values do not parse{example}",
                )


def _first_occurrences(keys: dict[str, pa.Array], eligible: np.ndarray) -> np.ndarray:
    """Mask of the eligible rows that are the first with their key."""
    positions = np.flatnonzero(eligible)
    table = pa.table({**{k: v.take(positions) for k, v in keys.items()}, "_pos": positions})
    firsts = table.group_by(list(keys), use_threads=False).aggregate([("_pos", "min")])
    mask = np.zeros(len(eligible), dtype=bool)
    mask[firsts.column("_pos_min").to_numpy()] = True
    return mask


# --------------------------------------------------------------------------- ingestion


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _utc(now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    raw_dir, quarantine_dir = Path(raw_dir), Path(quarantine_dir)
    raw_quarantine_dir = Path(raw_quarantine_dir) if raw_quarantine_dir else raw_dir / "quarantine"
    data_path = raw_snapshot_path(contract, raw_dir, partition_date)
    records_path = quarantine_records_path(contract, quarantine_dir, partition_date)
    rows_path = raw_quarantine_rows_path(contract, raw_quarantine_dir, partition_date)
    label = f"{contract.name} partition {partition_date.isoformat()}"

    landing = landing_files(contract, landing_dir, partition_date).get(partition_date, [])
    if not landing:
        raise PartitionNotReadyError(f"{label} is not ready: no landing file")
    contents = [f.path.read_bytes() for f in landing]
    shas = [hashlib.sha256(data).hexdigest() for data in contents]
    names = tuple(f.name for f in landing)
    fingerprint = input_fingerprint(contract, zip(names, shas, strict=True))

    metadata = _snapshot_metadata(data_path)
    if (
        metadata is not None
        and metadata.get(FINGERPRINT_KEY) == fingerprint.encode()
        and SUMMARY_KEY in metadata
        and records_path.exists()
        and rows_path.exists()
    ):
        summary = json.loads(metadata[SUMMARY_KEY])
        return _result_from_summary(summary, partition_date, fingerprint, data_path)

    parsed_files: list[_ParsedFile] = []
    unreadable: list[tuple[LandingFile, bytes, str, str]] = []
    for landing_file, data, sha in zip(landing, contents, shas, strict=True):
        try:
            decoded = _decode(contract, landing_file.name, data)
        except _UnreadableFileError as error:
            unreadable.append((landing_file, data, sha, str(error)))
            continue
        parse = _parse_csv if contract.file_format == "csv" else _parse_jsonl
        parsed_files.append(parse(contract, landing_file.name, sha, decoded))
    if not parsed_files:
        detail = "; ".join(reason for *_, reason in unreadable)
        raise PartitionNotReadyError(f"{label} is not ready: no readable landing file ({detail})")

    # Every data line, in delivery then line order.
    line_counts = [len(f.lines) for f in parsed_files]
    line_offsets = np.cumsum([0, *line_counts])
    line_file = np.repeat(np.arange(len(parsed_files)), line_counts)
    line_numbers = np.concatenate(
        [np.arange(len(f.lines), dtype=np.int64) + f.first_line_number for f in parsed_files]
    )
    all_lines = list(itertools.chain.from_iterable(f.lines for f in parsed_files))
    rows_in = len(all_lines)
    malformed = {
        int(line_offsets[i]) + index: reason
        for i, f in enumerate(parsed_files)
        for index, reason in f.malformed.items()
    }
    well_formed = np.ones(rows_in, dtype=bool)
    well_formed[list(malformed)] = False

    # The well-formed lines as text columns, then typed.
    candidates = np.flatnonzero(well_formed)
    candidate_file = line_file[candidates]
    values = {
        name: pa.concat_arrays([f.columns[name] for f in parsed_files])
        for name in contract.column_names
    }
    parsed = {c.name: _parse(values[c.name], c.type) for c in contract.columns}
    _check_type_changes(contract, parsed_files, candidate_file, values, parsed)

    checks = [
        check
        for column in contract.columns
        for check in _column_checks(
            column, values[column.name], parsed[column.name], partition_date
        )
    ]
    first_failed = np.full(len(candidates), -1, dtype=np.int64)
    for position in reversed(range(len(checks))):
        first_failed[checks[position].failed] = position

    # De-duplicate: well-formed rows on the source key, the others on their text.
    keyed = np.ones(len(candidates), dtype=bool)
    for key in contract.key:
        keyed &= _bools(pc.not_equal(values[key], ""))
    duplicate = np.zeros(rows_in, dtype=bool)
    duplicate[candidates] = keyed & ~_first_occurrences(
        {key: values[key] for key in contract.key}, keyed
    )
    seen_texts: set[str] = set()
    unkeyed = np.ones(rows_in, dtype=bool)
    unkeyed[candidates[keyed]] = False
    for index in np.flatnonzero(unkeyed).tolist():
        if all_lines[index] in seen_texts:
            duplicate[index] = True
        seen_texts.add(all_lines[index])
    candidate_duplicate = duplicate[candidates]

    # Reasons of the quarantined lines (few: per-line Python is fine here).
    reasons: dict[int, str] = {}
    counts: Counter[str] = Counter()
    bad_candidates = np.flatnonzero((first_failed >= 0) & ~candidate_duplicate)
    for position in bad_candidates.tolist():
        check = checks[first_failed[position]]
        reason = check.label
        if check.echo is not None:
            reason += _echo(check.echo[position].as_py())
        reasons[int(candidates[position])] = reason
        counts[check.label] += 1
    for index in np.flatnonzero(~well_formed & ~duplicate).tolist():
        reasons[index] = malformed[index]
        counts[malformed[index]] += 1

    ingested_at = _utc(now)
    quarantine_rows = []
    for landing_file, _, sha, reason in unreadable:
        quarantine_rows.append((landing_file.name, None, reason, sha, None))
        counts[UNREADABLE_FILE] += 1
    file_names = [f.name for f in parsed_files]
    for index in sorted(reasons):
        text = all_lines[index]
        quarantine_rows.append(
            (
                file_names[line_file[index]],
                int(line_numbers[index]),
                reasons[index],
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

    # The snapshot: valid, first-seen rows with their contract types and lineage.
    keep = (first_failed < 0) & ~candidate_duplicate
    keep_positions = pa.array(np.flatnonzero(keep))
    kept_lines = candidates[keep]
    kept_files = pa.array(candidate_file[keep])
    columns = {}
    for column in contract.columns:
        typed = parsed[column.name].take(keep_positions)
        if column.type == "string" and column.nullable:
            typed = _null_where_not(typed, pc.not_equal(typed, ""))
        columns[column.name] = typed
    columns["_source_file"] = pa.array(file_names, pa.string()).take(kept_files)
    columns["_source_sha256"] = pa.array([f.sha256 for f in parsed_files]).take(kept_files)
    columns["_source_line"] = pa.array(line_numbers[kept_lines])
    columns["_ingested_at"] = pc.cast(
        pa.array(np.full(len(kept_lines), np.datetime64(ingested_at.replace(tzinfo=None), "us"))),
        _UTC_TIMESTAMP,
    )
    schema = pa.schema(
        [(c.name, _ARROW_TYPES[c.type]) for c in contract.columns] + list(LINEAGE_SCHEMA)
    )
    summary = {
        "rows_in": rows_in,
        "rows_written": len(kept_lines),
        "quarantined_rows": len(reasons),
        "quarantined_files": len(unreadable),
        "duplicates": int(duplicate.sum()),
        "files": list(names),
        "quarantine_reasons": dict(counts),
    }
    snapshot = pa.table(columns, schema=schema).replace_schema_metadata(
        {
            FINGERPRINT_KEY: fingerprint.encode(),
            SUMMARY_KEY: json.dumps(summary).encode(),
            b"blueprint.contract": f"{contract.name} v{contract.version}".encode(),
        }
    )

    for target, table in ((records_path, records), (rows_path, raw_rows)):
        with atomic_output(target) as temp:
            pq.write_table(table, temp)
    for landing_file, data, _, _ in unreadable:
        atomic_write_bytes(rows_path.parent / landing_file.name, data)
    with atomic_output(data_path) as temp:
        pq.write_table(snapshot, temp, use_dictionary=DICTIONARY_COLUMNS)
    _snapshot_cache[data_path] = (_stamp(data_path.stat()), dict(snapshot.schema.metadata))

    result = _result_from_summary(summary, partition_date, fingerprint, data_path)
    return replace(result, written=True)


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
