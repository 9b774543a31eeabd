"""Reading a landing file under its contract: CSV or JSON lines into text columns, one per
contract column, with the lines that hold no record of the contract set aside. Typing and the
contract's rules are `orchestration.lib.ingestion.validation`'s."""

from __future__ import annotations

import csv
import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from orchestration.lib.ingestion.contracts import SourceContract


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


def schema_change(contract: SourceContract, file_name: str, detail: str) -> SchemaChangeError:
    """The error for a file whose columns or types are no longer the contract's."""
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
        raise schema_change(contract, file_name, " and ".join(problems))


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
        raise schema_change(contract, name, f"header line is not CSV ({error})") from error
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
