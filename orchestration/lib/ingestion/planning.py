"""What needs ingesting: partitions that have data and are missing or stale in the raw zone."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.landing import partition_status


@dataclass(frozen=True)
class IngestionPlan:
    stale: dict[str, list[date]]
    """Per source, the ready partitions with no snapshot or an outdated one."""
    waiting: dict[str, list[date]]
    """Per source, partitions whose only deliveries cannot be read (waiting for re-delivery)."""
    fingerprint: str
    """Identifies this plan's inputs: the same landing files give the same fingerprint."""

    @property
    def days(self) -> list[date]:
        return sorted({day for days in self.stale.values() for day in days})

    @property
    def range(self) -> tuple[date, date] | None:
        days = self.days
        return (days[0], days[-1]) if days else None


def plan_ingestion(
    contracts: Iterable[SourceContract], landing_dir: Path, raw_dir: Path
) -> IngestionPlan:
    stale: dict[str, list[date]] = {}
    waiting: dict[str, list[date]] = {}
    digest = hashlib.sha256()
    for contract in contracts:
        status: Mapping[date, object] = partition_status(contract, landing_dir, raw_dir)
        stale[contract.name] = sorted(d for d, s in status.items() if s.ready and s.stale)
        waiting[contract.name] = sorted(d for d, s in status.items() if not s.ready)
        for day in stale[contract.name]:
            digest.update(f"{contract.name}:{day}:{status[day].fingerprint};".encode())
    return IngestionPlan(stale=stale, waiting=waiting, fingerprint=digest.hexdigest()[:16])
