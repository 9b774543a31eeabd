"""Readers of a churn world's files, strict about the contracts in docs/DATA_CONTRACTS.md."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd

CHURN_SMALL = {"n_accounts": 1000, "n_days": 75}
"""Size of the shared churn test worlds: each is simulated in about a second."""
CHURN_DRIFT_FROM = 35
SOURCES = ("accounts", "usage", "billing", "tickets", "cancellations")
EXTENSIONS = {
    "accounts": "jsonl.gz",
    "usage": "csv.gz",
    "billing": "csv",
    "tickets": "csv",
    "cancellations": "csv",
}
HEADERS = {
    "usage": ["session_id", "account_id", "started_at", "minutes", "device"],
    "billing": ["billing_event_id", "account_id", "event_at", "event_type", "amount"],
    "tickets": ["ticket_id", "account_id", "opened_at", "category"],
    "cancellations": ["account_id", "cancelled_at", "channel"],
}
ACCOUNT_KEYS = [
    "account_id",
    "name",
    "email",
    "address",
    "iban",
    "plan",
    "monthly_price",
    "signup_date",
    "updated_at",
]
NAME = re.compile(
    r"^(?P<source>accounts|usage|billing|tickets|cancellations)_(?P<date>\d{4}-\d{2}-\d{2})"
    r"__d(?P<delivered>\d{8}T\d{6})\.(?P<ext>csv\.gz|jsonl\.gz|csv)$"
)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
AMOUNT = re.compile(r"\d+\.\d{2}")
ACCOUNT_ID = re.compile(r"A\d{7}")


def landing_files(home: Path, source: str, root: str = "landing") -> dict[str, re.Match]:
    """File name -> its parsed name, for every file of ``source``; fails on any other name."""
    names = sorted(p.name for p in (home / root / source).iterdir())
    matches = {name: NAME.match(name) for name in names}
    bad = [n for n, m in matches.items() if m is None or m["ext"] != EXTENSIONS[m["source"]]]
    assert not bad, f"file names outside the contract: {bad}"
    return matches


def delivered_at(match: re.Match) -> datetime:
    return datetime.strptime(match["delivered"], "%Y%m%dT%H%M%S")


def parse_timestamp(value: str) -> datetime:
    """A ``YYYY-MM-DD HH:MM:SS`` timestamp; ValueError for anything else."""
    if not TIMESTAMP.fullmatch(value):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value)


def csv_rows(data: bytes) -> list[list[str]]:
    text = data.decode()
    assert "\r" not in text
    return list(csv.reader(io.StringIO(text)))


def usage_row_problem(fields: list[str], business_date: date) -> str | None:
    """Why a usage row breaks the contract, or None for a valid row."""
    if len(fields) != len(HEADERS["usage"]):
        return "field_count"
    session_id, account_id, started_at, minutes, device = fields
    if not re.fullmatch(r"s-\d+", session_id):
        return "session_id"
    if not ACCOUNT_ID.fullmatch(account_id):
        return "account_id"
    try:
        moment = parse_timestamp(started_at)
    except ValueError:
        return "started_at"
    if moment.date() != business_date:
        return "started_at_date"
    if not AMOUNT.fullmatch(minutes):
        return "minutes"
    if device not in ("tv", "mobile", "web"):
        return "device"
    return None


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV source file (gzip or not) as strings, the header checked against the contract."""
    data = path.read_bytes()
    rows = csv_rows(gzip.decompress(data) if path.name.endswith(".gz") else data)
    source = NAME.match(path.name)["source"]
    assert rows[0] == HEADERS[source], path.name
    return pd.DataFrame(rows[1:], columns=HEADERS[source], dtype=str)


def read_source(home: Path, source: str) -> pd.DataFrame:
    """Every file of a CSV source (one per business date, no faults), with ``file_date``."""
    frames = []
    for name, match in landing_files(home, source).items():
        frame = read_csv(home / "landing" / source / name)
        frame["file_date"] = match["date"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def read_accounts(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def churn_record(home: Path) -> Path:
    return home / "simulator" / "churn"


def truth(home: Path) -> pd.DataFrame:
    return pd.read_parquet(churn_record(home) / "truth.parquet")


def world_json(home: Path) -> dict:
    return json.loads((churn_record(home) / "world.json").read_text())


def faults_json(home: Path) -> list[dict]:
    return json.loads((churn_record(home) / "faults.json").read_text())


def hashes(root: Path, skip: tuple[str, ...] = ("world.json",)) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (but those named in ``skip``)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name not in skip
    }
