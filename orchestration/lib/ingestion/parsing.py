"""Reading a landing file under its contract: CSV or JSON lines into text columns, typed, and
the checks of the contract's rules (what a row is quarantined for)."""

from __future__ import annotations

import csv
import json
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid_pans
from orchestration.lib.ingestion.contracts import (
    DATE_FORMAT,
    TIMESTAMP_FORMAT,
    Column,
    Rule,
    SourceContract,
)

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}

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


@dataclass
class ParsedFile:
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


def parse_csv(contract: SourceContract, name: str, sha256: str, data: bytes) -> ParsedFile:
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
    return ParsedFile(name, sha256, data_lines, 2, malformed, columns)

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


def parse_jsonl(contract: SourceContract, name: str, sha256: str, data: bytes) -> ParsedFile:
    lines = _split_lines(data.decode("utf-8"))
    columns = _jsonl_columns_arrow(contract, data, lines)
    if columns is not None:
        return ParsedFile(name, sha256, lines, 1, {}, columns)
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
    return ParsedFile(name, sha256, lines, 1, malformed, columns)


def bools(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow mask as NumPy, null counting as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def null_where_not(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def _parse_double(values: pa.Array) -> pa.Array:
    try:  # the common case: every value is a number
        return pc.cast(values, pa.float64())
    except pa.ArrowInvalid:
        shaped = null_where_not(values, pc.match_substring_regex(values, _NUMBER_SHAPE))
        return pc.cast(shaped, pa.float64())


def _parse_temporal(values: pa.Array, column_type: str) -> pa.Array:
    """Parse exact ``YYYY-MM-DD[ HH:MM:SS]`` text; anything else, or an impossible date, is null."""
    shape = _TIMESTAMP_SHAPE if column_type == "timestamp" else _DATE_SHAPE
    shaped = null_where_not(values, pc.match_substring_regex(values, shape))
    target = ARROW_TYPES[column_type]
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
    return pc.cast(null_where_not(parsed, exact), target)


def parse_values(values: pa.Array, column_type: str) -> pa.Array:
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


def column_checks(
    column: Column, values: pa.Array, parsed: pa.Array, partition_date: date
) -> list[_Check]:
    """Checks of one column in precedence order: empty, type, then the declared rules."""
    echo = None if column.pii else values
    present = bools(pc.not_equal(values, ""))
    checks = []
    if not column.nullable:
        checks.append(_Check(f"{column.name}: empty", ~present, None))
    if column.type != "string":
        unparsed = present & bools(pc.is_null(parsed))
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
            failed = present & ~bools(pc.ascii_is_decimal(values))
            checks.append(_Check(f"{column.name}: not digits", failed, echo))
        elif rule is Rule.PAN:
            shaped = bools(pc.ascii_is_decimal(values)) & bools(
                pc.equal(pc.binary_length(values), PAN_LENGTH)
            )
            checks.append(
                _Check(f"{column.name}: not {PAN_LENGTH} digits", present & ~shaped, None)
            )
            luhn = np.zeros(len(values), dtype=bool)
            luhn[shaped] = luhn_valid_pans(values.filter(pa.array(shaped)))
            checks.append(_Check(f"{column.name}: fails Luhn check", shaped & ~luhn, None))
        elif rule is Rule.FINITE:
            failed = bools(pc.invert(pc.is_finite(parsed)))
            checks.append(_Check(f"{column.name}: not finite", failed, echo))
        elif rule is Rule.NON_NEGATIVE:
            failed = bools(pc.less(parsed, 0))
            checks.append(_Check(f"{column.name}: negative", failed, echo))
        elif rule is Rule.ON_PARTITION_DATE:
            failed = bools(pc.not_equal(as_day, day))
            label = f"{column.name}: not on business date {partition_date.isoformat()}"
            checks.append(_Check(label, failed, echo))
        elif rule is Rule.NOT_AFTER_PARTITION_DATE:
            failed = bools(pc.greater(as_day, day))
            label = f"{column.name}: after business date {partition_date.isoformat()}"
            checks.append(_Check(label, failed, echo))
        else:
            raise ValueError(f"no check implemented for rule {rule!r}")
    return checks


def echo_value(value: str) -> str:
    """A value quoted in a reason: shortened, with anything looking like a card number masked."""
    shown = _DIGIT_RUN.sub("<digits removed>", value)
    if len(shown) > _ECHO_MAX_CHARS:
        shown = shown[:_ECHO_MAX_CHARS] + "..."
    return f" ({shown!r})"


def check_type_changes(
    contract: SourceContract,
    files: list[ParsedFile],
    file_index: np.ndarray,
    values: dict[str, pa.Array],
    parsed: dict[str, pa.Array],
) -> None:
    """Raise `SchemaChangeError` when a typed column fails its parse on most of a file's rows."""
    rows_per_file = np.bincount(file_index, minlength=len(files))
    for column in contract.columns:
        if column.type == "string":
            continue
        unparsed = bools(pc.not_equal(values[column.name], "")) & bools(
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
                    example = f", e.g.{echo_value(values[column.name][first].as_py())}"
                raise _schema_change(
                    contract,
                    parsed_file.name,
                    f"column {column.name!r} is no longer {column.type}: "
                    f"{failures[index]} of {rows} values do not parse{example}",
                )


def first_occurrences(keys: dict[str, pa.Array], eligible: np.ndarray) -> np.ndarray:
    """Mask of the eligible rows that are the first with their key."""
    positions = np.flatnonzero(eligible)
    table = pa.table({**{k: v.take(positions) for k, v in keys.items()}, "_pos": positions})
    firsts = table.group_by(list(keys), use_threads=False).aggregate([("_pos", "min")])
    mask = np.zeros(len(eligible), dtype=bool)
    mask[firsts.column("_pos_min").to_numpy()] = True
    return mask
