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

The scanners of each kind of file are in ``scanners``, the raw zone's personal data in
``raw_zone``, the cache in ``scan_cache``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from orchestration.lib.quality.personal_data import PersonalData, ScanReport
from orchestration.lib.quality.raw_zone import (
    PiiColumns,
    load_personal_data,
    personal_data_snapshots,
)
from orchestration.lib.quality.scan_cache import ScanCache
from orchestration.lib.quality.scanners import scanner_for
from orchestration.settings import DBT_PROJECT_DIR, Settings


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
            scan = scanner_for(path)
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
