"""Realistic faults of the payment processor's deliveries, and their manifest.

Four kinds, each recorded in ``simulator/faults.json``:

- ``malformed_row``: ``{kind, reason, file, line, transaction_id, date}``; ``reason`` is
  ``unparseable_amount``, ``missing_field`` or ``bad_timestamp``; ``line`` is 1-based in the
  decompressed file, header = line 1. The transaction is invalid and left out of the truth table.
- ``duplicate_delivery``: ``{kind, date, files}``: the same bytes delivered twice.
- ``late_delivery``: ``{kind, date, file, delivered_at}``: delivered 3 days after the normal time.
- ``truncated_gzip``: ``{kind, date, file, redelivered_as}``: the file is cut mid-stream and the
  intact file is delivered again a day later.

A day is hit by at most one kind. Malformed rows are chosen among genuine transactions, so no
fraud report ever points at a transaction the pipeline cannot read.

The churn world (:mod:`simulator.churn`) injects the same kinds into its usage files: its config
carries the same rate fields (:class:`FaultRates`) and its rows name the corrupted fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

MALFORMED_ROW = "malformed_row"
DUPLICATE_DELIVERY = "duplicate_delivery"
LATE_DELIVERY = "late_delivery"
TRUNCATED_GZIP = "truncated_gzip"
KINDS = (MALFORMED_ROW, DUPLICATE_DELIVERY, LATE_DELIVERY, TRUNCATED_GZIP)

UNPARSEABLE_AMOUNT = "unparseable_amount"
MISSING_FIELD = "missing_field"
BAD_TIMESTAMP = "bad_timestamp"
REASONS = (UNPARSEABLE_AMOUNT, MISSING_FIELD, BAD_TIMESTAMP)

LATE_BY_DAYS = 3
DUPLICATE_AFTER_HOURS = 3
REDELIVERY_AFTER_DAYS = 1
TRUNCATE_AT = 0.6
"""A truncated file keeps this share of its compressed bytes."""

AMOUNT_FIELD, TIMESTAMP_FIELD = 4, 1


class FaultRates(Protocol):
    """What :func:`plan_faults` reads of a world's config."""

    faults: bool
    n_days: int
    min_days_for_every_fault: int
    malformed_row_rate: float
    duplicate_delivery_rate: float
    late_delivery_rate: float
    truncated_gzip_rate: float


@dataclass(frozen=True)
class MalformedRow:
    reason: str
    dropped_field: int
    """For ``missing_field``: index of the field left out (never the first field, the row's id)."""


@dataclass(frozen=True)
class FaultPlan:
    """Which days and rows are hit; decided up front so writing files draws no randomness."""

    day_faults: dict[int, str] = field(default_factory=dict)
    """Day index -> one of the file-level kinds."""
    malformed_rows: dict[int, MalformedRow] = field(default_factory=dict)
    """Row position (in the source's row order) -> how its row is broken."""


def _n_faults(rng: np.random.Generator, trials: int, rate: float, force: bool) -> int:
    drawn = int(rng.binomial(trials, rate)) if trials else 0
    return max(drawn, 1) if force and trials else drawn


def plan_faults(
    config: FaultRates, tx_day: np.ndarray, protected: np.ndarray, rng: np.random.Generator
) -> FaultPlan:
    """Draw the faults of a world; an empty plan unless ``config.faults``.

    ``tx_day`` is the day index of every row of the faulty source, in row order; rows where
    ``protected`` is true (fraud's frauds) are never malformed.
    """
    if not config.faults:
        return FaultPlan()
    n_days = config.n_days
    force = n_days >= config.min_days_for_every_fault
    day_faults: dict[int, str] = {}
    # most constrained first: a late file must arrive inside the world, so must a redelivery
    kinds = (
        (TRUNCATED_GZIP, config.truncated_gzip_rate, n_days - REDELIVERY_AFTER_DAYS),
        (LATE_DELIVERY, config.late_delivery_rate, n_days - LATE_BY_DAYS),
        (DUPLICATE_DELIVERY, config.duplicate_delivery_rate, n_days),
    )
    for kind, rate, n_eligible in kinds:
        free = np.array([d for d in range(max(n_eligible, 0)) if d not in day_faults], dtype=int)
        count = min(_n_faults(rng, len(free), rate, force), len(free))
        for day in rng.choice(free, size=count, replace=False).tolist():
            day_faults[day] = kind

    hit_days = np.array(sorted(day_faults), dtype=np.int64)
    candidates = np.flatnonzero(~protected & ~np.isin(tx_day, hit_days))
    count = _n_faults(rng, len(candidates), config.malformed_row_rate, force)
    positions = np.sort(rng.choice(candidates, size=count, replace=False))
    reasons = rng.choice(len(REASONS), size=count)
    dropped = rng.integers(1, AMOUNT_FIELD + 1, size=count)
    malformed = {
        int(p): MalformedRow(REASONS[r], int(d))
        for p, r, d in zip(positions.tolist(), reasons.tolist(), dropped.tolist(), strict=True)
    }
    return FaultPlan(day_faults=day_faults, malformed_rows=malformed)


def corrupt_row(
    row: str,
    fault: MalformedRow,
    amount_field: int = AMOUNT_FIELD,
    timestamp_field: int = TIMESTAMP_FIELD,
) -> str:
    """The CSV line ``row`` (no line end) broken as ``fault`` says.

    ``amount_field`` and ``timestamp_field`` are the indexes of the decimal and the timestamp
    the faults break (default: the transactions file's).
    """
    fields = row.split(",")
    if fault.reason == UNPARSEABLE_AMOUNT:
        # a decimal comma and a letter O typed for a zero, quoted as a CSV writer would
        fields[amount_field] = '"' + fields[amount_field].replace(".", ",")[:-1] + 'O"'
    elif fault.reason == MISSING_FIELD:
        del fields[fault.dropped_field]
    elif fault.reason == BAD_TIMESTAMP:
        fields[timestamp_field] = fields[timestamp_field][:4] + "-13-45 25:61:00"
    else:
        raise ValueError(f"unknown malformed-row reason {fault.reason!r}")
    return ",".join(fields)


def truncate(data: bytes) -> bytes:
    """The first :data:`TRUNCATE_AT` of a file's bytes: a gzip stream cut in the middle."""
    return data[: int(len(data) * TRUNCATE_AT)]


def sort_manifest(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Manifest order: by date, kind, then line."""
    return sorted(entries, key=lambda e: (e["date"], e["kind"], e.get("line", 0)))
