"""Builders of small, hand-made landing files for the ingestion tests (no simulator involved)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from orchestration.lib.ingestion.contracts import SourceContract
from orchestration.lib.ingestion.ingest import IngestResult, ingest_partition
from tests.support import declared_contracts

CONTRACTS = declared_contracts("fraud")
"""The fraud use case's sources, as declared: the contracts the files built here follow."""
TRANSACTIONS, FRAUD_REPORTS, CUSTOMERS = (
    CONTRACTS[name] for name in ("transactions", "fraud_reports", "customers")
)

DAY = date(2018, 4, 1)
TRANSACTION_HEADER = ["transaction_id", "tx_datetime", "card_number", "terminal_id", "amount"]
FRAUD_REPORT_HEADER = ["transaction_id", "card_number", "reported_at"]
NOW = datetime(2018, 4, 2, 3, 0, 0)


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # doubled: these sit at odd positions once the check digit is added
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def make_pan(number: int) -> str:
    """A valid 16-digit card number, distinct for each ``number``."""
    payload = f"4{number:014d}"
    return payload + luhn_check_digit(payload)


def transaction_rows(day: date, count: int, first_id: int = 0) -> list[list[str]]:
    """``count`` valid transactions on ``day``."""
    start = datetime.combine(day, datetime.min.time())
    step = 86_000 / max(count, 1)
    return [
        [
            f"t-{first_id + i}",
            (start + timedelta(seconds=int(i * step))).strftime("%Y-%m-%d %H:%M:%S"),
            make_pan(i % 5000),
            str(100 + i % 1000),
            f"{(i * 7.31) % 500:.2f}",
        ]
        for i in range(count)
    ]


def customer_records(day: date, count: int) -> list[dict]:
    """``count`` valid customers of a snapshot taken on ``day``."""
    return [
        {
            "customer_id": f"c-{i}",
            "name": f"Customer {i}",
            "email": f"customer{i}@example.com",
            "phone": f"+1-555-{i:04d}",
            "address": f"{i} Main Street",
            "date_of_birth": "1980-02-29",
            "card_number": make_pan(10_000 + i),
            "signup_date": (day - timedelta(days=i)).isoformat(),
            "updated_at": f"{day.isoformat()} 01:00:00",
        }
        for i in range(count)
    ]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    """CSV with ``\\n`` line ends; fields holding a comma or a quote are quoted."""

    def field(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if "," in value or '"' in value else value

    return "".join(",".join(field(v) for v in row) + "\n" for row in [header, *rows])


def gzipped(text: str) -> bytes:
    """``text`` gzipped with no time stamp: the same text always gives the same file (and
    fingerprint)."""
    return gzip.compress(text.encode(), mtime=0)


def delivery_id(day: date, hour: int = 2) -> str:
    return f"d{(day + timedelta(days=1)).strftime('%Y%m%d')}T{hour:02d}0000"


@dataclass
class Zones:
    """A BLUEPRINT_HOME of its own: landing, raw and quarantine zones."""

    home: Path

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    def deliver(
        self, source: str, day: date, extension: str, payload: bytes, hour: int = 2
    ) -> Path:
        folder = self.landing / source
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{source}_{day.isoformat()}__{delivery_id(day, hour)}.{extension}"
        path.write_bytes(payload)
        return path

    def deliver_transactions(
        self, rows: list[list[str]], day: date = DAY, hour: int = 2, header: list[str] | None = None
    ) -> Path:
        text = csv_text(header or TRANSACTION_HEADER, rows)
        return self.deliver("transactions", day, "csv.gz", gzipped(text), hour)

    def deliver_fraud_reports(self, rows: list[list[str]], day: date = DAY, hour: int = 2) -> Path:
        text = csv_text(FRAUD_REPORT_HEADER, rows)
        return self.deliver("fraud_reports", day, "csv", text.encode(), hour)

    def deliver_customers(self, records: list[dict], day: date = DAY, hour: int = 2) -> Path:
        text = "".join(json.dumps(r) + "\n" for r in records)
        return self.deliver("customers", day, "jsonl.gz", gzipped(text), hour)

    def ingest(self, contract: SourceContract, day: date = DAY) -> IngestResult:
        return ingest_partition(contract, day, self.landing, self.raw, self.quarantine, now=NOW)
