"""The personal-data scanner: proves no PII left the raw zone.

What counts as a leak, in any table or file outside the raw zone:
- a PAN: a standalone run of 13–19 digits that passes the Luhn check (a run inside a longer
  token, such as a hex digest, or the digits of a decimal number are not standalone);
- an email address; a phone number (North-American formats, as the CRM holds them) or any
  exact phone number of the CRM;
- a customer's name from the CRM (first and last name next to each other).

Findings never repeat the value they found: they give the location, the kind and a masked hint.

A scan is incremental when given a :class:`ScanCache`: a file that a previous scan found clean
and that has not changed since (same size and modification time) is not read again while the
CRM is the same; when the CRM has learned identifiers since (its raw snapshots are immutable,
so the new identifiers are exactly those of the new snapshots), an unchanged text file is only
searched for the new names, phones and emails, and an unchanged table is scanned again. Only
the CRM-independent patterns (card numbers, addresses, phone formats) are never re-run on an
unchanged file, since their answer cannot change. ``blueprint scan-pii --full`` ignores the cache.
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestration.lib.core.cards import luhn_valid
from orchestration.settings import DBT_PROJECT_DIR, Settings

PAN_PATTERN = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\.)[0-9]{13,19}(?![0-9A-Za-z])(?!\.[0-9])")
"""A standalone digit run: not inside a longer token, nor the fraction of a decimal number."""
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
MAX_GENERIC_TLD = 6
VENDOR_EMAILS = frozenset({"contact@bentoml.com"})
"""Role addresses that libraries write into their own artifacts (BentoML puts its contact
address in every Bento's OpenAPI spec): organizational, not personal, data."""
PHONE_PATTERN = re.compile(
    r"(?<![0-9A-Za-z.-])(?:\+1-|001-)?(?:\(\d{3}\)|\d{3})[-. ]?\d{3}[-. ]\d{4}(?:x\d+)?(?![0-9])"
)
NAME_AFFIXES = {"mr", "mrs", "ms", "miss", "dr", "md", "phd", "dds", "dvm", "jr", "sr", "ii",
                "iii", "iv", "v"}
"""Titles and suffixes, as words (a period after a word is not part of it: "Dr." is "dr", and
a name at the end of a sentence is still a name)."""
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
LOWER_WORD = re.compile(r"[a-z][a-z'\-]*")
"""``WORD`` on lower-cased ASCII text: the same words, lower-cased in one C-level pass."""
DIGIT = re.compile(r"\d")
ASCII_UPPER = re.compile(r"[A-Z]")
TEXT_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".log", ".html", ".htm", ".md", ".sql",
                 ".yml", ".yaml", ".out", ".err", ".gz", ""}
MAX_TEXT_BYTES = 256 * 1024 * 1024


def _mask(value: str) -> str:
    return f"{value[:2]}…{value[-2:]} ({len(value)} chars)" if len(value) > 6 else "…"


def name_key(name: str) -> tuple[str, str] | None:
    """First and last core word of a full name, lower-cased (titles and suffixes dropped)."""
    words = [w.lower() for w in WORD.findall(name) if w.lower() not in NAME_AFFIXES]
    return (words[0], words[-1]) if len(words) >= 2 else None


@dataclass(frozen=True)
class CrmIdentifiers:
    """Values from the CRM that must never appear outside the raw zone."""

    name_keys: frozenset[tuple[str, str]]
    phones: frozenset[str]
    emails: frozenset[str]

    @functools.cached_property
    def last_names(self) -> frozenset[str]:
        """The last words of the names: a text without any of them holds no CRM name."""
        return frozenset(last for _, last in self.name_keys)


@dataclass(frozen=True)
class Finding:
    location: str
    kind: str
    count: int
    hint: str

    def __str__(self) -> str:
        return f"{self.location}: {self.count} × {self.kind} (e.g. {self.hint})"


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    unchanged: int = 0
    """Files skipped as unchanged since a scan found them clean (see :class:`ScanCache`)."""

    @property
    def clean(self) -> bool:
        return not self.findings


def crm_snapshots(raw_customers_dir: Path) -> dict[str, str]:
    """The CRM's raw snapshots: partition folder name -> "size:mtime_ns" of its data file."""
    snapshots = {}
    for path in sorted(raw_customers_dir.glob("*/data.parquet")):
        stat = path.stat()
        snapshots[path.parent.name] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return snapshots


def load_crm_identifiers(
    raw_customers_dir: Path, partitions: Iterable[str] | None = None
) -> CrmIdentifiers:
    """Read every name, phone and email the CRM ever delivered (from the raw zone), or only
    those of the given partition folders."""
    files = sorted(raw_customers_dir.glob("*/data.parquet"))
    if partitions is not None:
        wanted = set(partitions)
        files = [f for f in files if f.parent.name in wanted]
    if not files:
        return CrmIdentifiers(frozenset(), frozenset(), frozenset())
    with duckdb.connect() as con:
        rows = con.execute(
            "select distinct name, phone, email from read_parquet(?)",
            [[str(f) for f in files]],
        ).fetchall()
    keys = {k for name, _, _ in rows if name and (k := name_key(name))}
    return CrmIdentifiers(
        name_keys=frozenset(keys),
        phones=frozenset(p for _, p, _ in rows if p),
        emails=frozenset(e.lower() for _, _, e in rows if e),
    )


def scan_values(values: Iterable[str], location: str, crm: CrmIdentifiers) -> list[Finding]:
    """Scan text values; one finding per kind with a count."""
    counts: dict[str, int] = {}
    hints: dict[str, str] = {}

    def hit(kind: str, value: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        hints.setdefault(kind, _mask(value))

    for value in values:
        if not value:
            continue
        ascii_text = value.isascii()
        if DIGIT.search(value):
            for match in PAN_PATTERN.findall(value):
                if luhn_valid(match):
                    hit("card number (PAN)", match)
            for match in PHONE_PATTERN.findall(value):
                hit("phone number", match)
                if match in crm.phones:
                    hit("CRM phone number", match)
        if "@" in value:
            for match in EMAIL_PATTERN.findall(value):
                # A long "top-level domain" is more often code (module@package.definitions)
                # than mail: those count only when the CRM knows the address.
                if match.lower() in VENDOR_EMAILS and match.lower() not in crm.emails:
                    continue
                if len(match.rsplit(".", 1)[1]) <= MAX_GENERIC_TLD or match.lower() in crm.emails:
                    hit("email address", match)
        if crm.phones and value in crm.phones and "CRM phone number" not in counts:
            hit("CRM phone number", value)
        if crm.name_keys and (
            ASCII_UPPER.search(value) if ascii_text else any(c.isupper() for c in value)
        ):
            if ascii_text:  # the common case, in C: most texts hold no CRM last name at all
                words = LOWER_WORD.findall(value.lower())
                if crm.last_names.isdisjoint(words):
                    continue
            else:
                words = [w.lower() for w in WORD.findall(value)]
            words = [w for w in words if w not in NAME_AFFIXES]
            for pair in zip(words, words[1:], strict=False):
                if pair in crm.name_keys:
                    hit("CRM customer name", " ".join(pair))
    return [Finding(location, kind, counts[kind], hints[kind]) for kind in counts]


CANDIDATE_SQL_PATTERN = (
    r"[0-9]{10}|@|[0-9]{3}[^0-9]{0,2}[0-9]{3}[^0-9][0-9]{4}|[A-Za-z]{2,}[^A-Za-z0-9]+[A-Za-z]{2,}"
)
"""A value that matches none of these cannot hold a PAN, email, phone or name: DuckDB filters
with it so Python only looks at candidates (a cheap superset of what ``scan_values`` finds)."""


def _distinct_text(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> Iterator[str]:
    """Distinct candidate values of one column as text, in chunks (values are cast, so a PAN
    stored as a number is caught too)."""
    value = f'cast("{column}" as varchar)'
    cursor = con.execute(
        f"select distinct {value} from {relation} "
        f"where {value} is not null and regexp_matches({value}, ?)",
        [CANDIDATE_SQL_PATTERN],
    )
    while chunk := cursor.fetchmany(100_000):
        for (text,) in chunk:
            yield text


_SCANNED_TYPES = ("VARCHAR", "BIGINT", "HUGEINT", "UBIGINT", "DECIMAL", "JSON", "BLOB")


def scan_duckdb_database(path: Path, crm: CrmIdentifiers) -> ScanReport:
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
            report.findings += scan_values(_distinct_text(con, relation, column), location, crm)
    return report


_THREAD = threading.local()


def _memory_connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB connection: opening one costs about 20 ms, as much as
    scanning a small Parquet file, and a home holds thousands of them."""
    con = getattr(_THREAD, "connection", None)
    if con is None:
        con = _THREAD.connection = duckdb.connect()
    return con


def scan_parquet(path: Path, crm: CrmIdentifiers) -> ScanReport:
    report = ScanReport()
    con = _memory_connection()
    relation = f"read_parquet('{path}')"
    schema = con.execute(f"describe select * from {relation}").fetchall()
    for column, data_type, *_ in schema:
        if data_type.upper().startswith(_SCANNED_TYPES):
            location = f"{path}:{column}"
            report.scanned.append(location)
            report.findings += scan_values(_distinct_text(con, relation, column), location, crm)
    return report


def scan_sqlite(path: Path, crm: CrmIdentifiers) -> ScanReport:
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
            report.findings += scan_values(values, location, crm)
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


VENDOR_BUNDLES = (("evidently", "nbextension", "static", "index.js"),)
"""Library code that reports embed verbatim (Evidently inlines its 3.5 MB JavaScript bundle in
every HTML report). Its digit runs and its authors' addresses are the library's, not anyone's
personal data: an HTML file is scanned with these byte-identical bundles cut out, and
everything else in it (the report's data) is scanned as usual."""


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
            bundles.append(path.read_text(encoding="utf-8", errors="replace"))
    return tuple(bundles)


def scan_text_file(path: Path, crm: CrmIdentifiers) -> ScanReport:
    report = ScanReport(scanned=[str(path)])
    if path.stat().st_size > MAX_TEXT_BYTES:
        report.findings.append(Finding(str(path), "file too large to scan", 1, "split it"))
        return report
    text = _scanned_text(path)
    if text is not None:  # None: a corrupt archive holds nothing readable
        report.findings += scan_values(text.splitlines(), str(path), crm)
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


_WORD_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _has_word(lowered: str, word: str) -> bool:
    """Whether ``word`` occurs where :data:`LOWER_WORD` could cut it out of ``lowered`` as a
    whole word: not after a letter, not before a letter, an apostrophe or a hyphen (after an
    apostrophe or a hyphen it may be part of a longer word: a superset). A C-level search for
    the word and what follows; Python looks only at what precedes those matches."""
    if word not in lowered:
        return False
    for match in re.finditer(re.escape(word) + r"(?![a-z'\-])", lowered):
        if match.start() == 0 or lowered[match.start() - 1] not in _WORD_LETTERS:
            return True
    return False


def mentions_any(text: str, crm: CrmIdentifiers) -> bool:
    """Whether ``text`` may hold one of these identifiers: a superset of what ``scan_values``
    finds with them (a CRM name needs its last name as a word; a CRM phone or email appears
    verbatim, an email up to case)."""
    lowered = text.lower()
    if any(phone in text for phone in crm.phones) or any(e in lowered for e in crm.emails):
        return True
    if not text.isascii():  # lower-casing may turn other letters into ASCII ones: substrings
        return any(name in lowered for name in crm.last_names)
    return any(_has_word(lowered, name) for name in crm.last_names)


def _minus(current: CrmIdentifiers, known: CrmIdentifiers) -> CrmIdentifiers:
    return CrmIdentifiers(
        name_keys=current.name_keys - known.name_keys,
        phones=current.phones - known.phones,
        emails=current.emails - known.emails,
    )


def _empty(crm: CrmIdentifiers) -> bool:
    return not (crm.name_keys or crm.phones or crm.emails)


class ScanCache:
    """The files earlier scans found clean, with the CRM snapshots they were checked against.

    Kept as JSON (paths, sizes, times and snapshot names: no personal data) and rewritten
    atomically after each scan; a missing or unreadable cache means a full scan.
    """

    VERSION = 1

    def __init__(
        self,
        path: Path,
        raw_customers_dir: Path,
        crm: CrmIdentifiers,
        snapshots: Mapping[str, str],
    ) -> None:
        self.path, self.raw_customers_dir, self.crm = path, raw_customers_dir, crm
        self.snapshots = dict(snapshots)
        self.generation = _generation_id(self.snapshots)
        self.generations: dict[str, dict[str, str]] = {}
        self.files: dict[str, dict[str, object]] = {}
        self._kept: dict[str, dict[str, object]] = {}
        self._deltas: dict[str, CrmIdentifiers | None] = {}
        try:
            data = json.loads(path.read_text())
            if data.get("version") == self.VERSION:
                self.generations = {str(k): dict(v) for k, v in data["generations"].items()}
                self.files = {str(k): dict(v) for k, v in data["files"].items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            pass  # no usable cache: everything is scanned

    def _delta(self, generation: str) -> CrmIdentifiers | None:
        """What the CRM knows now and did not when ``generation`` was current; None when that
        generation's snapshots are not all still there unchanged (then scan again)."""
        if generation not in self._deltas:
            known = self.generations.get(generation)
            if known is None or any(self.snapshots.get(k) != v for k, v in known.items()):
                self._deltas[generation] = None
            elif generation == self.generation:
                self._deltas[generation] = CrmIdentifiers(frozenset(), frozenset(), frozenset())
            else:
                before = load_crm_identifiers(self.raw_customers_dir, known)
                self._deltas[generation] = _minus(self.crm, before)
        return self._deltas[generation]

    def still_clean(self, path: Path, stat: os.stat_result) -> bool:
        """Whether ``path`` was found clean, has not changed and cannot hold what the CRM
        learned since; then it is kept in the cache as checked against today's CRM."""
        entry = self.files.get(str(path))
        if entry is None or entry.get("size") != stat.st_size:
            return False
        if entry.get("mtime_ns") != stat.st_mtime_ns:
            return False
        delta = self._delta(str(entry.get("crm")))
        if delta is None:
            return False
        if not _empty(delta):
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
                "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "crm": self.generation,
            }

    def save(self) -> None:
        from orchestration.lib.core.atomic import atomic_write_bytes

        data = {
            "version": self.VERSION,
            "generations": {self.generation: self.snapshots} if self._kept else {},
            "files": self._kept,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(data, sort_keys=True) + "\n").encode())


def _scanner_for(path: Path) -> Callable[[Path, CrmIdentifiers], ScanReport] | None:
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


def _generation_id(snapshots: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(snapshots.items())).encode()).hexdigest()[:16]


def scan_paths(
    roots: Iterable[Path],
    excluded: Iterable[Path],
    crm: CrmIdentifiers,
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
            part = scan(path, crm) if scan else ScanReport(scanned=[f"{path} (skipped: binary)"])
            report.findings += part.findings
            report.scanned += part.scanned
            if cache is not None and scan is not None:
                cache.record(path, stat, clean=not part.findings)
    return report


def scan_outside_raw_zone(
    settings: Settings, incremental: bool = True
) -> tuple[ScanReport, CrmIdentifiers]:
    """Everything Blueprint writes outside the raw zone: BLUEPRINT_HOME and dbt's target/logs.

    Incremental by default (see the module's docstring); the cache lives in
    ``BLUEPRINT_HOME/quality/pii-scan-cache.json``.
    """
    customers = settings.raw_dir / "customers"
    snapshots = crm_snapshots(customers)
    crm = load_crm_identifiers(customers, snapshots)
    cache = ScanCache(settings.pii_scan_cache_path, customers, crm, snapshots) if incremental \
        else None
    report = scan_paths(
        roots=[settings.home, DBT_PROJECT_DIR / "target", DBT_PROJECT_DIR / "logs"],
        # the cache is the scanner's own, made of paths and numbers (its nanosecond times are
        # 19-digit runs, some Luhn-valid: not card numbers)
        excluded=[*settings.raw_zone_dirs, settings.pii_scan_cache_path],
        crm=crm,
        cache=cache,
    )
    if cache is not None:
        cache.save()
    return report, crm
