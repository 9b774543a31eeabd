"""The personal-data scanner: proves no PII left the raw zone.

What counts as a leak, in any table or file outside the raw zone:
- a PAN: a standalone run of 13–19 digits that passes the Luhn check (a run inside a longer
  token, such as a hex digest, or the digits of a decimal number are not standalone);
- an IBAN (ISO 13616: country, check digits, account; compact or in groups of four) whose
  mod-97 check holds;
- an email address; a phone number (North-American formats);
- a value of a personal-data column (``pii: true``) of any source of any declared use case,
  as the raw zone holds it. The caller says which columns those are (:data:`PiiColumns`). A
  value of words only (a name) is found by its first and last word side by side, titles and
  suffixes aside, in text with a capital letter; any other value (it holds a digit or an @: an
  email, a phone, an address, a date, an account number) verbatim: its run of letters and digits,
  in any case, whatever separates them.

Findings never repeat the value they found: they give the location, the kind and a masked hint.

A scan is incremental when given a :class:`ScanCache`: a file that a previous scan found clean
and that has not changed since (same size and modification time) is not read again while the
personal data is the same; when the raw zone has learned values since (its snapshots are
immutable, so the new values are exactly those of the new snapshots, or of a newly declared
column), an unchanged text file is only searched for the new values, and an unchanged table is
scanned again. Only the generic patterns (card numbers, IBANs, addresses, phone formats) are
never re-run on an unchanged file, since their answer cannot change. ``blueprint scan-pii
--full`` ignores the cache.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import duckdb

from orchestration.lib.quality.personal_data import (
    NO_PERSONAL_DATA,
    Finding,
    PersonalData,
    ScanReport,
    mentions_any,
    scan_values,
)
from orchestration.settings import DBT_PROJECT_DIR, Settings

PiiColumns = Mapping[str, Collection[str]]
"""Source name -> its personal-data columns (the union over every declared use case)."""

TEXT_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".log", ".html", ".htm", ".md", ".sql",
                 ".yml", ".yaml", ".out", ".err", ".gz", ""}
MAX_TEXT_BYTES = 256 * 1024 * 1024


















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
    snapshot = _memory_connection().read_parquet([str(f) for f in files], union_by_name=True)
    for column in sorted(set(columns) & set(snapshot.columns)):
        text = f'cast("{column}" as varchar)'
        for (value,) in snapshot.filter(f"{text} is not null").project(text).distinct().fetchall():
            yield column, value












def _distinct_text(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, personal: PersonalData
) -> Iterator[str]:
    """Distinct candidate values of one column as text, in chunks (values are cast, so a PAN
    stored as a number is caught too)."""
    value = f'cast("{column}" as varchar)'
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
            relation = f'"{schema}"."{table}"'
            location = f"{path.name}:{schema}.{table}.{column}"
            report.scanned.append(location)
            report.findings += scan_values(
                _distinct_text(con, relation, column, personal), location, personal
            )
    return report


_THREAD = threading.local()


def _memory_connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection: opening one costs about 20 ms, as much as
    scanning a small Parquet file, and a home holds thousands of them."""
    con = getattr(_THREAD, "connection", None)
    if con is None:
        con = _THREAD.connection = duckdb.connect()
    return con


def scan_parquet(path: Path, personal: PersonalData) -> ScanReport:
    report = ScanReport()
    con = _memory_connection()
    relation = f"read_parquet('{path}')"
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
                for row in con.execute(f'select * from "{table}"')
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
    text = _scanned_text(path)
    if text is not None:  # None: a corrupt archive holds nothing readable
        report.findings += scan_values(text.splitlines(), str(path), personal)
    return report


def _scanned_text(path: Path) -> str | None:
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










class ScanCache:
    """The files earlier scans found clean, with the personal data they were checked against
    (the raw snapshots and the personal-data columns of that time).

    Kept as JSON (paths, sizes, times, snapshot and column names: no personal data) and
    rewritten atomically after each scan; a missing or unreadable cache means a full scan.
    """

    VERSION = 2

    def __init__(
        self,
        path: Path,
        raw_dir: Path,
        pii_columns: PiiColumns,
        personal: PersonalData,
        snapshots: Mapping[str, str],
    ) -> None:
        self.path, self.raw_dir, self.personal = path, raw_dir, personal
        self.state = {
            "snapshots": dict(snapshots),
            "columns": {source: sorted(columns) for source, columns in pii_columns.items()},
        }
        self.generation = _generation_id(self.state)
        self.generations: dict[str, dict[str, dict]] = {}
        self.files: dict[str, dict[str, object]] = {}
        self._kept: dict[str, dict[str, object]] = {}
        self._deltas: dict[str, PersonalData | None] = {}
        try:
            data = json.loads(path.read_text())
            if data.get("version") == self.VERSION:
                self.generations = {
                    str(k): {"snapshots": dict(v["snapshots"]), "columns": dict(v["columns"])}
                    for k, v in data["generations"].items()
                }
                self.files = {str(k): dict(v) for k, v in data["files"].items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            pass  # no usable cache: everything is scanned

    def _delta(self, generation: str) -> PersonalData | None:
        """What the raw zone's personal data holds now and did not when ``generation`` was
        current; None when that generation's snapshots are not all still there unchanged (then
        scan again)."""
        if generation not in self._deltas:
            known = self.generations.get(generation)
            current = self.state["snapshots"]
            if known is None or any(current.get(k) != v for k, v in known["snapshots"].items()):
                self._deltas[generation] = None
            elif generation == self.generation:
                self._deltas[generation] = NO_PERSONAL_DATA
            else:
                before = load_personal_data(self.raw_dir, known["columns"], known["snapshots"])
                self._deltas[generation] = self.personal - before
        return self._deltas[generation]

    def still_clean(self, path: Path, stat: os.stat_result) -> bool:
        """Whether ``path`` was found clean, has not changed and cannot hold what the raw zone
        learned since; then it is kept in the cache as checked against today's data."""
        entry = self.files.get(str(path))
        if entry is None or entry.get("size") != stat.st_size:
            return False
        if entry.get("mtime_ns") != stat.st_mtime_ns:
            return False
        delta = self._delta(str(entry.get("generation")))
        if delta is None:
            return False
        if delta:
            if _scanner_for(path) is not scan_text_file:
                return False  # a table: scanned again in full (as cheap as a check here)
            if stat.st_size > MAX_TEXT_BYTES:
                return False
            text = _scanned_text(path)
            if text is None or mentions_any(text, delta):
                return False
        self.record(path, stat, clean=True)
        return True

    def record(self, path: Path, stat: os.stat_result, clean: bool) -> None:
        if clean:
            self._kept[str(path)] = {
                "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "generation": self.generation,
            }

    def save(self) -> None:
        from orchestration.lib.core.atomic import atomic_write_bytes

        data = {
            "version": self.VERSION,
            "generations": {self.generation: self.state} if self._kept else {},
            "files": self._kept,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(data, sort_keys=True) + "\n").encode())


def _scanner_for(path: Path) -> Callable[[Path, PersonalData], ScanReport] | None:
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


def _generation_id(state: Mapping[str, Mapping[str, object]]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def scan_paths(
    roots: Iterable[Path],
    excluded: Iterable[Path],
    personal: PersonalData,
    cache: ScanCache | None = None,
) -> ScanReport:
    """Scan every file under ``roots`` except those under ``excluded`` folders; with a cache,
    files it vouches for are skipped (and listed as such) and the clean ones recorded."""
    excluded = [e.resolve() for e in excluded]
    report = ScanReport()
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            resolved = path.resolve()
            if any(resolved.is_relative_to(e) for e in excluded):
                continue
            if path.name.endswith((".wal", ".lock", ".tmp")) or path.suffix in {".png", ".pyc"}:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted since the listing (a pruned report, a temp file)
                continue
            if cache is not None and cache.still_clean(path, stat):
                report.scanned.append(f"{path} (unchanged since a clean scan)")
                report.unchanged += 1
                continue
            scan = _scanner_for(path)
            part = scan(path, personal) if scan else ScanReport(
                scanned=[f"{path} (skipped: binary)"]
            )
            report.findings += part.findings
            report.scanned += part.scanned
            if cache is not None and scan is not None:
                cache.record(path, stat, clean=not part.findings)
    return report


def scan_outside_raw_zone(
    settings: Settings, pii_columns: PiiColumns, incremental: bool = True,
    others: Sequence[Path] = (),
) -> tuple[ScanReport, PersonalData]:
    """Everything Blueprint writes outside the raw zone: BLUEPRINT_HOME and dbt's target/logs,
    searched for the values ``pii_columns`` held in the raw zone and for the generic patterns.

    ``pii_columns`` are those of every declared use case, not only the one running: the home
    is shared. ``others`` are left out: the other use cases' warehouses, which their own checks
    scan inside their own pools (opening one here could collide with its writer). Incremental
    by default (see the module's docstring); the cache lives in
    ``BLUEPRINT_HOME/quality/pii-scan-cache.json``.
    """
    snapshots = personal_data_snapshots(settings.raw_dir, pii_columns)
    personal = load_personal_data(settings.raw_dir, pii_columns, snapshots)
    cache = (
        ScanCache(settings.pii_scan_cache_path, settings.raw_dir, pii_columns, personal, snapshots)
        if incremental else None
    )
    report = scan_paths(
        roots=[settings.home, DBT_PROJECT_DIR / "target", DBT_PROJECT_DIR / "logs"],
        # the cache is the scanner's own, made of paths and numbers (its nanosecond times are
        # 19-digit runs, some Luhn-valid: not card numbers)
        excluded=[*settings.raw_zone_dirs, settings.pii_scan_cache_path, *others],
        personal=personal,
        cache=cache,
    )
    if cache is not None:
        cache.save()
    return report, personal
