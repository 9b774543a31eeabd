"""Each data line of a partition's readable files, sorted: kept for the snapshot, a duplicate of
an earlier line, or quarantined with its reason. Vectorized over the partition's lines; only
the few quarantined lines are handled one by one."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.parsing import ParsedFile
from orchestration.lib.ingestion.validation import (
    bools,
    check_type_changes,
    column_checks,
    echo_value,
    parse_values,
)


@dataclass(frozen=True)
class DataLines:
    """Every data line of the readable files, in delivery then line order."""

    files: list[ParsedFile]
    texts: list[str]
    file_index: np.ndarray
    """Per line: its file's position in ``files``."""
    line_numbers: np.ndarray
    """Per line: its 1-based line number in its file."""
    malformed: dict[int, str]
    """Line index -> reason, for the lines that hold no record of the contract."""
    well_formed: np.ndarray
    candidates: np.ndarray
    """Indexes of the well-formed lines: the rows of the text columns."""
    candidate_file: np.ndarray
    """Per candidate: its file's position in ``files``."""


@dataclass(frozen=True)
class Triage:
    """What becomes of each line."""

    keep: np.ndarray
    """Per candidate: valid and the last delivered with its key (a snapshot row)."""
    duplicate: np.ndarray
    """Per line: a repeat of an earlier row's content (or text, for a malformed line)."""
    reasons: dict[int, str]
    """Line index -> quarantine reason, for the quarantined lines."""
    counts: Counter[str]
    """Quarantined lines by reason, without the offending value."""


def data_lines(parsed_files: list[ParsedFile]) -> DataLines:
    """The readable files' lines, numbered, with the well-formed ones marked."""
    line_counts = [len(f.lines) for f in parsed_files]
    line_offsets = np.cumsum([0, *line_counts])
    line_file = np.repeat(np.arange(len(parsed_files)), line_counts)
    line_numbers = np.concatenate(
        [np.arange(len(f.lines), dtype=np.int64) + f.first_line_number for f in parsed_files]
    )
    all_lines = list(itertools.chain.from_iterable(f.lines for f in parsed_files))
    malformed = {
        int(line_offsets[i]) + index: reason
        for i, f in enumerate(parsed_files)
        for index, reason in f.malformed.items()
    }
    well_formed = np.ones(len(all_lines), dtype=bool)
    well_formed[list(malformed)] = False
    candidates = np.flatnonzero(well_formed)
    return DataLines(parsed_files, all_lines, line_file, line_numbers, malformed, well_formed,
                     candidates, line_file[candidates])


def typed_columns(
    contract: SourceContract, lines: DataLines
) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """The well-formed lines as text columns, and typed; raises `SchemaChangeError` when a
    file's column no longer parses as its contract type."""
    values = {
        name: pa.concat_arrays([f.columns[name] for f in lines.files])
        for name in contract.column_names
    }
    parsed = {c.name: parse_values(values[c.name], c.type) for c in contract.columns}
    check_type_changes(contract, lines.files, lines.candidate_file, values, parsed)
    return values, parsed


def triage(
    contract: SourceContract,
    lines: DataLines,
    values: dict[str, pa.Array],
    parsed: dict[str, pa.Array],
    partition_date: date,
) -> Triage:
    """Check every candidate against the contract, find the duplicates, give the reasons."""
    checks = [
        check
        for column in contract.columns
        for check in column_checks(
            column, values[column.name], parsed[column.name], partition_date
        )
    ]
    first_failed = np.full(len(lines.candidates), -1, dtype=np.int64)
    for position in reversed(range(len(checks))):
        first_failed[checks[position].failed] = position
    valid = first_failed < 0
    duplicate, keep, superseded = deliveries(contract, lines, values, valid)
    candidate_duplicate = duplicate[lines.candidates]

    # Reasons of the quarantined lines (few: per-line Python is fine here).
    reasons: dict[int, str] = {}
    counts: Counter[str] = Counter()
    bad_candidates = np.flatnonzero(~valid & ~candidate_duplicate)
    for position in bad_candidates.tolist():
        check = checks[first_failed[position]]
        reason = check.label
        if check.echo is not None:
            reason += echo_value(check.echo[position].as_py())
        reasons[int(lines.candidates[position])] = reason
        counts[check.label] += 1
    superseded_reason = f"{', '.join(contract.key)}: superseded by a later delivery of its key"
    for position in np.flatnonzero(superseded).tolist():
        reasons[int(lines.candidates[position])] = superseded_reason
        counts[superseded_reason] += 1
    for index in np.flatnonzero(~lines.well_formed & ~duplicate).tolist():
        reasons[index] = lines.malformed[index]
        counts[lines.malformed[index]] += 1
    return Triage(keep, duplicate, reasons, counts)


def deliveries(
    contract: SourceContract, lines: DataLines, values: dict[str, pa.Array], valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which line is a repeat, which row the snapshot keeps, which valid row a later delivery
    corrects.

    A well-formed row that repeats an earlier row's content (every column equal, whatever the
    header's order) is a duplicate, as is a malformed line repeating an earlier line's text.
    Of the other rows of a key, the last valid one delivered is kept: a re-delivery with
    other content is a correction, and the valid rows it supersedes are returned to be
    quarantined with that reason; an invalid row is quarantined with its own, whether or not
    its key has a valid row. So a key first delivered broken and then intact keeps the intact
    row, and no row leaves without a record. Returns per line ``duplicate``, and per candidate
    ``keep`` and ``superseded``."""
    candidates = lines.candidates
    content = pa.table({name: values[name] for name in contract.column_names})
    repeat = ~_first_occurrences(content, np.ones(len(candidates), dtype=bool))
    keyed = np.ones(len(candidates), dtype=bool)
    for key in contract.key:
        keyed &= bools(pc.not_equal(values[key], ""))
    eligible = keyed & valid & ~repeat
    keep = _last_occurrences(content.select(list(contract.key)), eligible)
    superseded = eligible & ~keep
    duplicate = np.zeros(len(lines.texts), dtype=bool)
    duplicate[candidates] = repeat
    seen_texts: set[str] = set()
    for index in np.flatnonzero(~lines.well_formed).tolist():
        if lines.texts[index] in seen_texts:
            duplicate[index] = True
        seen_texts.add(lines.texts[index])
    return duplicate, keep, superseded


def _first_occurrences(table: pa.Table, eligible: np.ndarray) -> np.ndarray:
    return _occurrences(table, eligible, "min")


def _last_occurrences(table: pa.Table, eligible: np.ndarray) -> np.ndarray:
    return _occurrences(table, eligible, "max")


def _occurrences(table: pa.Table, eligible: np.ndarray, which: str) -> np.ndarray:
    """Mask of the eligible rows that are the first (``min``) or last (``max``) of their values
    of ``table``'s columns."""
    positions = np.flatnonzero(eligible)
    mask = np.zeros(len(eligible), dtype=bool)
    if not len(positions):
        return mask
    chosen = table.take(positions).append_column("_pos", pa.array(positions))
    grouped = chosen.group_by(table.column_names, use_threads=False).aggregate([("_pos", which)])
    mask[grouped.column(f"_pos_{which}").to_numpy()] = True
    return mask
