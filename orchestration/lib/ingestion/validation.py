"""Typing a landing file's text columns and checking the contract's rules: what a row is
quarantined for, what counts as a schema change, which row of a key is the first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid_pans
from orchestration.lib.ingestion.contracts import (
    DATE_FORMAT,
    TIMESTAMP_FORMAT,
    Column,
    Rule,
    SourceContract,
)
from orchestration.lib.ingestion.parsing import ParsedFile, schema_change
from orchestration.lib.quality.personal_data import GENERIC_CANDIDATE, generic_personal_data

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
    """Checks of one column in precedence order: empty, type, the declared rules, then the
    declared bounds (a string's length and shape, a number's range)."""
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
    return checks + _bound_checks(column, values, parsed, present, echo)


def _bound_checks(
    column: Column, values: pa.Array, parsed: pa.Array, present: np.ndarray,
    echo: pa.Array | None,
) -> list[_Check]:
    """The column's declared bounds: a string's length and shape, a number's range."""
    checks = []
    if column.type == "string":
        long = present & bools(pc.greater(pc.utf8_length(values), column.max_length))
        checks.append(_Check(f"{column.name}: longer than {column.max_length} characters",
                             long, None))
        if column.pattern is not None:
            shaped = bools(pc.match_substring_regex(values, f"^(?:{column.pattern})$"))
            checks.append(_Check(f"{column.name}: not of the shape {column.pattern}",
                                 present & ~long & ~shaped, echo))
    if column.type == "string" and not column.pii:
        checks.append(_Check(f"{column.name}: looks like personal data",
                             present & _personal(values), None))
    if column.minimum is not None:
        failed = bools(pc.less(parsed, column.minimum))
        checks.append(_Check(f"{column.name}: below {column.minimum:g}", failed, echo))
    if column.maximum is not None:
        failed = bools(pc.greater(parsed, column.maximum))
        checks.append(_Check(f"{column.name}: above {column.maximum:g}", failed, echo))
    return checks


def _personal(values: pa.Array) -> np.ndarray:
    """Per value, whether the generic patterns find personal data in it (Arrow filters the
    candidates, Python checks the few)."""
    candidate = bools(pc.match_substring_regex(values, GENERIC_CANDIDATE))
    found = np.zeros(len(values), dtype=bool)
    for position in np.flatnonzero(candidate).tolist():
        found[position] = generic_personal_data(values[position].as_py()) is not None
    return found


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
                raise schema_change(
                    contract,
                    parsed_file.name,
                    f"column {column.name!r} is no longer {column.type}: "
                    f"{failures[index]} of {rows} values do not parse{example}",
                )
