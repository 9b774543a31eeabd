"""A request staged as dbt's staging models stage a delivered row (the card number replaced by its
keyed pseudonym, the types of the staged tables), and how far back each staged table's history
must reach for the feature windows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestration.lib.features.pseudonymize import card_key

TRANSACTIONS, FRAUD_REPORTS = "stg_transactions", "stg_fraud_reports"



class TransactionConflictError(ValueError):
    """A transaction id the store knows arrived again with different content."""


def _timestamp(value: datetime | str) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        raise ValueError(f"timestamp {value!r} has a time zone; the contract's are local, naive")
    return datetime(*when.timetuple()[:6], when.microsecond)  # a plain datetime, not a subclass


def stage_transaction(tx: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A raw payment ``{transaction_id, timestamp, card_number, terminal_id, amount}`` as the row
    ``stg_transactions`` holds for it (the card number replaced by its ``card_key``)."""
    return _staged_transaction(
        tx["transaction_id"],
        tx["timestamp"],
        card_key(str(tx["card_number"]), key),
        tx["terminal_id"],
        tx["amount"],
    )


def restage_transaction(row: Mapping[str, Any]) -> dict[str, Any]:
    """A payment staged before ``{transaction_id, tx_datetime, card_key, terminal_id, amount}``
    (as the prediction log keeps it: no card number) as the row ``stg_transactions`` holds."""
    return _staged_transaction(
        row["transaction_id"],
        row["tx_datetime"],
        str(row["card_key"]),
        row["terminal_id"],
        row["amount"],
    )


def _staged_transaction(
    transaction_id: Any, timestamp: datetime | str, card: str, terminal_id: Any, amount: Any
) -> dict[str, Any]:
    when = _timestamp(timestamp)
    value = float(amount)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"amount {amount!r} is not a finite amount >= 0")
    return {
        "transaction_id": str(transaction_id),
        "tx_datetime": when,
        "tx_date": when.date(),
        "card_key": card,
        "terminal_id": str(terminal_id),
        "amount": value,
        "_source_file": None,  # lineage of the raw zone; an online payment has no file
    }


def stage_fraud_report(report: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """A raw fraud report ``{transaction_id, card_number, reported_at}`` as in
    ``stg_fraud_reports``."""
    return _staged_report(
        report["transaction_id"], card_key(str(report["card_number"]), key), report["reported_at"]
    )


def restage_fraud_report(row: Mapping[str, Any]) -> dict[str, Any]:
    """A fraud report staged before ``{transaction_id, card_key, reported_at}`` as in
    ``stg_fraud_reports``."""
    return _staged_report(row["transaction_id"], str(row["card_key"]), row["reported_at"])


def _staged_report(transaction_id: Any, card: str, reported_at: datetime | str) -> dict[str, Any]:
    when = _timestamp(reported_at)
    return {
        "transaction_id": str(transaction_id),
        "card_key": card,
        "reported_at": when,
        "report_date": when.date(),
    }

_EXAMPLE_TRANSACTION = {
    "transaction_id": "t",
    "timestamp": datetime.min,
    "card_number": "",
    "terminal_id": "",
    "amount": 0.0,
}

_EXAMPLE_REPORT = {"transaction_id": "t", "card_number": "", "reported_at": datetime.min}

STAGED_COLUMNS = {
    TRANSACTIONS: tuple(stage_transaction(_EXAMPLE_TRANSACTION, b"")),
    FRAUD_REPORTS: tuple(stage_fraud_report(_EXAMPLE_REPORT, b"")),
}
"""The columns online staging produces; a snapshot must have exactly these."""
