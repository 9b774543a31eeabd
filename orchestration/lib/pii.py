"""The personal-data scanner: proves no PII left the raw zone.

What counts as a leak, in any table or file outside the raw zone:
- a PAN: a standalone run of 13–19 digits that passes the Luhn check (a run inside a longer
  token, such as a hex digest, or the digits of a decimal number are not standalone);
- an email address; a phone number (North-American formats, as the CRM holds them) or any
  exact phone number of the CRM;
- a customer's name from the CRM (first and last name next to each other).

Findings never repeat the value they found: they give the location, the kind and a masked hint.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

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
NAME_AFFIXES = {"mr.", "mrs.", "ms.", "miss", "dr.", "md", "phd", "dds", "dvm", "jr.", "sr.",
                "ii", "iii", "iv", "v"}
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*\.?")
TEXT_SUFFIXES = {".csv", ".json", ".jsonl", ".txt", ".log", ".html", ".htm", ".md", ".sql",
                 ".yml", ".yaml", ".out", ".err", ".gz", ""}
MAX_TEXT_BYTES = 256 * 1024 * 1024


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


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

    @property
    def clean(self) -> bool:
        return not self.findings


def load_crm_identifiers(raw_customers_dir: Path) -> CrmIdentifiers:
    """Read every name, phone and email the CRM ever delivered (from the raw zone)."""
    files = sorted(raw_customers_dir.glob("*/data.parquet"))
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
        if any(c.isdigit() for c in value):
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
        if crm.name_keys and any(c.isupper() for c in value):
            words = [w.lower() for w in WORD.findall(value) if w.lower() not in NAME_AFFIXES]
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


def scan_parquet(path: Path, crm: CrmIdentifiers) -> ScanReport:
    report = ScanReport()
    with duckdb.connect() as con:
        relation = f"read_parquet('{path}')"
        schema = con.execute(f"describe select * from {relation}").fetchall()
        for column, data_type, *_ in schema:
            if data_type.upper().startswith(_SCANNED_TYPES):
                location = f"{path}:{column}"
                report.scanned.append(location)
                report.findings += scan_values(
                    _distinct_text(con, relation, column), location, crm
                )
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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        try:
            text = handle.read().decode("utf-8", errors="replace")
        except (OSError, EOFError):
            return report  # a corrupt archive holds nothing readable
    if path.suffix in {".html", ".htm"}:
        for bundle in _vendor_bundles():
            text = text.replace(bundle, "")
    text = TRACE_CONTEXT.sub("(", text)
    report.findings += scan_values(text.splitlines(), str(path), crm)
    return report


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _is_duckdb(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(12)[8:12] == b"DUCK"


def scan_paths(roots: Iterable[Path], excluded: Iterable[Path], crm: CrmIdentifiers) -> ScanReport:
    """Scan every file under ``roots`` except those under ``excluded`` folders."""
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
            if path.suffix == ".parquet":
                part = scan_parquet(path, crm)
            elif _is_duckdb(path):
                part = scan_duckdb_database(path, crm)
            elif _is_sqlite(path):
                part = scan_sqlite(path, crm)
            elif path.suffix in TEXT_SUFFIXES or path.suffix.startswith(".log"):
                part = scan_text_file(path, crm)
            else:
                part = ScanReport(scanned=[f"{path} (skipped: binary)"])
            report.findings += part.findings
            report.scanned += part.scanned
    return report


def scan_outside_raw_zone(settings: Settings) -> tuple[ScanReport, CrmIdentifiers]:
    """Everything Blueprint writes outside the raw zone: BLUEPRINT_HOME and dbt's target/logs."""
    crm = load_crm_identifiers(settings.raw_dir / "customers")
    report = scan_paths(
        roots=[settings.home, DBT_PROJECT_DIR / "target", DBT_PROJECT_DIR / "logs"],
        excluded=settings.raw_zone_dirs,
        crm=crm,
    )
    return report, crm
