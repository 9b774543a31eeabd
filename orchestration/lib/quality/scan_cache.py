"""The files earlier personal-data scans found clean, so that an unchanged file is not read
again (see ``orchestration.lib.quality.pii`` for when a file is scanned again)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from orchestration.lib.quality.personal_data import (
    GENERIC_PATTERNS_DIGEST,
    NO_PERSONAL_DATA,
    PersonalData,
    mentions_any,
)
from orchestration.lib.quality.raw_zone import PiiColumns, load_personal_data
from orchestration.lib.quality.scanners import (
    MAX_TEXT_BYTES,
    scan_text_file,
    scanned_text,
    scanner_for,
)


class ScanCache:
    """The files earlier scans found clean, with the personal data they were checked against
    (the raw snapshots and the personal-data columns of that time).

    Kept as JSON (paths, sizes, times, snapshot and column names: no personal data) and
    rewritten atomically after each scan; a missing or unreadable cache, or one made with other
    generic patterns (:data:`GENERIC_PATTERNS_DIGEST`), means a full scan.
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
            if (data.get("version"), data.get("patterns")) == (
                self.VERSION, GENERIC_PATTERNS_DIGEST
            ):
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
            if scanner_for(path) is not scan_text_file:
                return False  # a table: scanned again in full (as cheap as a check here)
            if stat.st_size > MAX_TEXT_BYTES:
                return False
            text = scanned_text(path)
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
            "patterns": GENERIC_PATTERNS_DIGEST,
            "generations": {self.generation: self.state} if self._kept else {},
            "files": self._kept,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(data, sort_keys=True) + "\n").encode())


def _generation_id(state: Mapping[str, Mapping[str, object]]) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]
