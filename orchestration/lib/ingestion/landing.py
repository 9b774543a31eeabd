"""The landing zone and the raw zone's paths: which files a source delivered for a day, what a
partition's snapshot was made from, and whether it is missing, stale or waiting for a readable
re-delivery."""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from orchestration.lib.ingestion.contracts import (
    SourceContract,
)

DATA_FILE = "data.parquet"

RECORDS_FILE = "records.parquet"

ROWS_FILE = "rows.parquet"

FINGERPRINT_KEY = b"blueprint.input_fingerprint"

UNREADABLE_FILE = "unreadable file"


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
            LandingFile(Path(entry.path), partition_date, match.group(2), file_stamp(entry.stat()))
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


class UnreadableFileError(Exception):
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


def decode_file(contract: SourceContract, name: str, data: bytes) -> bytes:
    """The decompressed UTF-8 bytes of a landing file; `UnreadableFileError` says why not."""
    if contract.gzip:
        try:
            data = _gunzip(data)
        except (EOFError, zlib.error) as error:
            raise UnreadableFileError(f"{UNREADABLE_FILE}: {name}: {error!r}") from error
    data = data.removeprefix(codecs.BOM_UTF8)
    if not data.isascii():  # ASCII is valid UTF-8, and far quicker to check
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            detail = f"not UTF-8 ({error})"
            raise UnreadableFileError(f"{UNREADABLE_FILE}: {name}: {detail}") from error
    if not data or data.isspace():
        raise UnreadableFileError(f"{UNREADABLE_FILE}: {name}: empty")
    return data


@dataclass(frozen=True)
class _Probe:
    sha256: str
    unreadable_reason: str | None

# In-memory caches for partition_status, which a sensor calls every few seconds: keyed by path
# and valid while the file's stamp is unchanged (an atomic replace gives a new inode).
_probe_cache: dict[Path, tuple[tuple[int, int, int], _Probe]] = {}

snapshot_cache: dict[Path, tuple[tuple[int, int, int], dict[bytes, bytes]]] = {}


def file_stamp(stat: os.stat_result) -> tuple[int, int, int]:
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
        decode_file(contract, landing_file.name, data)
        reason = None
    except UnreadableFileError as error:
        reason = str(error)
    probe = _Probe(hashlib.sha256(data).hexdigest(), reason)
    _probe_cache[landing_file.path] = (landing_file.stamp, probe)
    return probe


def snapshot_metadata(path: Path) -> dict[bytes, bytes] | None:
    """Key-value metadata of a raw snapshot, cached by path and stamp; None if absent."""
    try:
        stamp = file_stamp(path.stat())
    except FileNotFoundError:
        return None
    cached = snapshot_cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    metadata = dict(pq.read_metadata(path).metadata or {})
    snapshot_cache[path] = (stamp, metadata)
    return metadata


def read_snapshot_fingerprint(path: Path) -> str | None:
    """The input fingerprint stored in a raw snapshot, or None when there is no snapshot."""
    metadata = snapshot_metadata(Path(path))
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
