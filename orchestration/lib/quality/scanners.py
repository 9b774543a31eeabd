"""One file's scan for personal data, by its kind: a DuckDB database, a Parquet file, a SQLite
database (Dagster's storage) or a text file (with the library code that pages embed cut out)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from orchestration.lib.core.sql import quote_identifier, quote_literal
from orchestration.lib.quality.personal_data import Finding, PersonalData, ScanReport, scan_values

TEXT_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".log", ".html", ".htm", ".md", ".sql",
                 ".yml", ".yaml", ".out", ".err", ".gz", ""}
MAX_TEXT_BYTES = 256 * 1024 * 1024


def _distinct_text(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, personal: PersonalData
) -> Iterator[str]:
    """Distinct candidate values of one column as text, in chunks (values are cast, so a PAN
    stored as a number is caught too)."""
    value = f"cast({quote_identifier(column)} as varchar)"
    cursor = con.execute(
        f"select distinct {value} from {relation} "
        f"where {value} is not null and regexp_matches({value}, ?)",
        [personal.candidate_pattern],
    )
    while chunk := cursor.fetchmany(100_000):
        for (text,) in chunk:
            yield text


_SCANNED_TYPES = ("VARCHAR", "BIGINT", "HUGEINT", "UBIGINT", "DECIMAL", "JSON", "BLOB")


def scan_duckdb_database(path: Path, personal: PersonalData) -> ScanReport:
    """Every text or integer column of every table and view in a DuckDB file (read-only)."""
    report = ScanReport()
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns order by 1, 2, 3"
        ).fetchall()
        for schema, table, column, data_type in columns:
            if not data_type.upper().startswith(_SCANNED_TYPES):
                continue
            relation = f"{quote_identifier(schema)}.{quote_identifier(table)}"
            location = f"{path.name}:{schema}.{table}.{column}"
            report.scanned.append(location)
            report.findings += scan_values(
                _distinct_text(con, relation, column, personal), location, personal
            )
    return report


_THREAD = threading.local()


def memory_connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection: opening one costs as much as scanning a small
    Parquet file, and a home holds thousands of them (figures: docs/OPERATING_NOTES.md)."""
    con = getattr(_THREAD, "connection", None)
    if con is None:
        con = _THREAD.connection = duckdb.connect()
    return con


def scan_parquet(path: Path, personal: PersonalData) -> ScanReport:
    report = ScanReport()
    con = memory_connection()
    relation = f"read_parquet({quote_literal(str(path))})"
    schema = con.execute(f"describe select * from {relation}").fetchall()
    for column, data_type, *_ in schema:
        if data_type.upper().startswith(_SCANNED_TYPES):
            location = f"{path}:{column}"
            report.scanned.append(location)
            report.findings += scan_values(
                _distinct_text(con, relation, column, personal), location, personal
            )
    return report


def scan_sqlite(path: Path, personal: PersonalData) -> ScanReport:
    """Text of every table of a SQLite file (Dagster's run and event-log storage)."""
    report = ScanReport()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            location = f"{path}:{table}"
            report.scanned.append(location)
            values = (
                str(v)
                for row in con.execute(f"select * from {quote_identifier(table)}")
                for v in row
                if isinstance(v, str | int) and not isinstance(v, bool)
            )
            report.findings += scan_values(values, location, personal)
    finally:
        con.close()
    return report


def _package_file(package: str, *parts: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


VENDOR_BUNDLES = (
    ("evidently", "nbextension", "static", "index.js"),
    ("dbt", "task", "docs", "index.html"),
)
"""Library code that pages embed verbatim (Evidently inlines its 3.5 MB JavaScript bundle in
every HTML report; dbt's static docs page, the feature catalog, is its docs app with the
project's manifest and catalog put in place of two placeholders). Their digit runs and their
authors' addresses are the library's, not anyone's personal data: an HTML file is scanned with
these byte-identical pieces cut out, and everything else in it (the report's data, the
manifest and the catalog) is scanned as usual."""
INLINED_DATA = ('"MANIFEST.JSON INLINE DATA"', '"CATALOG.JSON INLINE DATA"')
"""Where dbt's static docs page puts the project's manifest and catalog in its docs app."""
MIN_BUNDLE_PIECE = 1024
"""A bundle's piece shorter than this is not cut out: it could match the data around it."""


TRACE_CONTEXT = re.compile(r"\(trace=[0-9a-f]{32},span=[0-9a-f]{16},")
"""BentoML's access log writes each request's OpenTelemetry ids in exactly this form. A span id
is 16 random hex digits: now and then all decimal and Luhn-valid (about once in 20,000 lines),
so it looked like a card number. Random ids are not data: they are cut out before scanning."""


@functools.cache
def _vendor_bundles() -> tuple[str, ...]:
    bundles = []
    for package, *parts in VENDOR_BUNDLES:
        path = _package_file(package, *parts)
        if path is not None:
            pieces = [path.read_text(encoding="utf-8", errors="replace")]
            for placeholder in INLINED_DATA:
                pieces = [part for piece in pieces for part in piece.split(placeholder)]
            bundles += [piece for piece in pieces if len(piece) >= MIN_BUNDLE_PIECE]
    return tuple(bundles)


def scan_text_file(path: Path, personal: PersonalData) -> ScanReport:
    report = ScanReport(scanned=[str(path)])
    if path.stat().st_size > MAX_TEXT_BYTES:
        report.findings.append(Finding(str(path), "file too large to scan", 1, "split it"))
        return report
    text = scanned_text(path)
    if text is not None:  # None: a corrupt archive holds nothing readable
        report.findings += scan_values(text.splitlines(), str(path), personal)
    return report


def scanned_text(path: Path) -> str | None:
    """What the scan reads of a text file: its text without the vendor bundles an HTML report
    inlines and without the access log's trace ids."""
    text = _read_text(path)
    if text is None:
        return None
    if path.suffix in {".html", ".htm"}:
        for bundle in _vendor_bundles():
            text = text.replace(bundle, "")
    return TRACE_CONTEXT.sub("(", text)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _is_duckdb(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(12)[8:12] == b"DUCK"


def _read_text(path: Path) -> str | None:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except (OSError, EOFError):
        return None


def _is_text(path: Path) -> bool:
    return path.suffix in TEXT_SUFFIXES or path.suffix.startswith(".log")


def scanner_for(path: Path) -> Callable[[Path, PersonalData], ScanReport] | None:
    """How a file is scanned, by its content's kind; None for a binary file."""
    if path.suffix == ".parquet":
        return scan_parquet
    if _is_duckdb(path):
        return scan_duckdb_database
    if _is_sqlite(path):
        return scan_sqlite
    if _is_text(path):
        return scan_text_file
    return None
