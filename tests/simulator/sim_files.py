"""Readers of a simulated world's files, strict about docs/DATA_CONTRACTS.md."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import math
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from simulator.luhn import is_valid

SMALL = {"n_customers": 500, "n_terminals": 1000, "n_days": 60}
"""Size of the shared test worlds: each is simulated in well under a second."""
DRIFT_FROM = 30

NAME = re.compile(
    r"^(?P<source>transactions|customers|fraud_reports)_(?P<date>\d{4}-\d{2}-\d{2})"
    r"__d(?P<delivered>\d{8}T\d{6})\.(?P<ext>csv\.gz|jsonl\.gz|csv)$"
)
TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
TRANSACTION_COLUMNS = ["transaction_id", "tx_datetime", "card_number", "terminal_id", "amount"]
REPORT_COLUMNS = ["transaction_id", "card_number", "reported_at"]


def landing_files(home: Path, source: str) -> dict[str, re.Match]:
    """File name -> its parsed name, for every file of ``source``."""
    names = sorted(p.name for p in (home / "landing" / source).iterdir())
    matches = {name: NAME.match(name) for name in names}
    bad = [name for name, match in matches.items() if match is None]
    assert not bad, f"file names outside the contract: {bad}"
    return matches


def delivered_at(match: re.Match) -> datetime:
    return datetime.strptime(match["delivered"], "%Y%m%dT%H%M%S")


@functools.cache
def is_pan(value: str) -> bool:
    return len(value) == 16 and is_valid(value)


def parse_timestamp(value: str) -> datetime:
    """A ``YYYY-MM-DD HH:MM:SS`` timestamp; ValueError for anything else."""
    if not TIMESTAMP_SHAPE.fullmatch(value):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value)


def csv_rows(text: str) -> list[list[str]]:
    """Every line of a CSV file (header included) split into fields."""
    assert "\r" not in text
    return list(csv.reader(io.StringIO(text)))


def transaction_row_problem(fields: list[str], business_date: date) -> str | None:
    """Why a transactions row breaks the contract, or None for a valid row."""
    if len(fields) != len(TRANSACTION_COLUMNS):
        return "field_count"
    transaction_id, tx_datetime, card_number, terminal_id, amount = fields
    if not re.fullmatch(r"t-\d+", transaction_id):
        return "transaction_id"
    try:
        moment = parse_timestamp(tx_datetime)
    except ValueError:
        return "tx_datetime"
    if moment.date() != business_date:
        return "tx_datetime_date"
    if not is_pan(card_number):
        return "card_number"
    if not terminal_id.isdigit():
        return "terminal_id"
    if not re.fullmatch(r"\d+\.\d{2}", amount):
        return "amount"
    value = float(amount)
    if not math.isfinite(value) or value < 0:
        return "amount_value"
    return None


def read_transactions(path: Path) -> pd.DataFrame:
    """A transactions file whose every row is valid, as strings plus ``line``."""
    business_date = date.fromisoformat(NAME.match(path.name)["date"])
    rows = csv_rows(gzip.decompress(path.read_bytes()).decode())
    assert rows[0] == TRANSACTION_COLUMNS
    problems = [(i + 2, transaction_row_problem(r, business_date)) for i, r in enumerate(rows[1:])]
    assert not [p for p in problems if p[1]], f"{path.name}: invalid rows {problems[:5]}"
    frame = pd.DataFrame(rows[1:], columns=TRANSACTION_COLUMNS, dtype=str)
    frame["line"] = range(2, len(frame) + 2)
    return frame


def read_reports(path: Path) -> pd.DataFrame:
    rows = csv_rows(path.read_text())
    assert rows[0] == REPORT_COLUMNS
    return pd.DataFrame(rows[1:], columns=REPORT_COLUMNS, dtype=str)


def read_customers(path: Path) -> list[dict[str, str]]:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return [json.loads(line) for line in lines]


def truth(home: Path) -> pd.DataFrame:
    return pd.read_parquet(home / "simulator" / "transactions_truth.parquet")


def world_json(home: Path) -> dict:
    return json.loads((home / "simulator" / "world.json").read_text())


def faults_json(home: Path) -> list[dict]:
    return json.loads((home / "simulator" / "faults.json").read_text())
