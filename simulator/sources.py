"""The three source systems' deliveries: file names, delivery ids, file contents, writing.

File names follow docs/DATA_CONTRACTS.md: ``<source>_<business date>__<delivery id>.<ext>``
with a delivery id ``dYYYYMMDDTHHMMSS``. Normal delivery times: transactions of day D at
D+1 01:00:00, the CRM snapshot of day D at D+1 02:00:00, fraud reports of day R at R+1 00:30:00.

Every delivery arrives in the night after a business day, so a file's *delivery day* (the day
whose night it arrives in) is the day before its delivery date: the file's business date, unless
it is late or a redelivery. Holding days back (see :class:`Destinations`) goes by delivery day.

The naming, gzip, writing and file-fault helpers take the sources' extensions as a parameter
(default: the three fraud sources), so the churn world (:mod:`simulator.churn`) delivers its own
sources with them.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator import faults
from simulator.config import SECONDS_PER_DAY, WorldConfig
from simulator.world import Transactions

TRANSACTIONS, CUSTOMERS, FRAUD_REPORTS = "transactions", "customers", "fraud_reports"
SOURCES = (TRANSACTIONS, CUSTOMERS, FRAUD_REPORTS)
TRANSACTIONS_HEADER = "transaction_id,tx_datetime,card_number,terminal_id,amount"
FRAUD_REPORTS_HEADER = "transaction_id,card_number,reported_at"
TRANSACTIONS_DELIVERED_AT = (1, 0, 0)
CUSTOMERS_DELIVERED_AT = (2, 0, 0)
FRAUD_REPORTS_DELIVERED_AT = (0, 30, 0)
GZIP_LEVEL = 1
"""Fastest zlib level: the daily full CRM snapshots are most of the bytes written."""
EXTENSIONS = {TRANSACTIONS: "csv.gz", CUSTOMERS: "jsonl.gz", FRAUD_REPORTS: "csv"}
DELIVERED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"
DELIVERY_ID_FORMAT = "d%Y%m%dT%H%M%S"
FILE_NAME = re.compile(
    r"^(?P<source>[a-z_]+)_(?P<date>\d{4}-\d{2}-\d{2})"
    r"__(?P<delivery_id>d\d{8}T\d{6})\.(?P<ext>[a-z.]+)$"
)


class DeliveredFile(NamedTuple):
    """What a file's name says about it."""

    source: str
    business_date: date
    delivered: datetime


def delivery_id(moment: datetime) -> str:
    return moment.strftime(DELIVERY_ID_FORMAT)


def file_name(
    source: str,
    business_date: date,
    delivered: datetime,
    extensions: Mapping[str, str] = EXTENSIONS,
) -> str:
    return f"{source}_{business_date.isoformat()}__{delivery_id(delivered)}.{extensions[source]}"


def parse_file_name(name: str, extensions: Mapping[str, str] = EXTENSIONS) -> DeliveredFile | None:
    """The parts of a file name :func:`file_name` made for one of ``extensions``' sources."""
    match = FILE_NAME.match(name)
    if match is None or extensions.get(match["source"]) != match["ext"]:
        return None
    return DeliveredFile(
        match["source"],
        date.fromisoformat(match["date"]),
        datetime.strptime(match["delivery_id"], DELIVERY_ID_FORMAT),
    )


def delivery_day(delivered: datetime) -> date:
    """The business day whose following night a delivery made at ``delivered`` arrives in."""
    return delivered.date() - timedelta(days=1)


def normal_delivery(config: WorldConfig, source: str, day: int) -> datetime:
    """When a source delivers the file of day index ``day`` when nothing goes wrong."""
    hour, minute, second = {
        TRANSACTIONS: TRANSACTIONS_DELIVERED_AT,
        CUSTOMERS: CUSTOMERS_DELIVERED_AT,
        FRAUD_REPORTS: FRAUD_REPORTS_DELIVERED_AT,
    }[source]
    return config.at(day + 1, hour, minute, second)


def normal_file_name(config: WorldConfig, source: str, day: int) -> str:
    """Name of the file of day index ``day`` delivered at the normal time."""
    return file_name(source, config.day(day), normal_delivery(config, source, day))


def gzip_bytes(data: bytes) -> bytes:
    """Gzip with mtime 0 and no file name in the header: same input, same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", compresslevel=GZIP_LEVEL, mtime=0, fileobj=buffer
    ) as gz:
        gz.write(data)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Destinations:
    """Where the sources' files go: ``landing``, or ``outbox`` if delivered after the hold.

    With ``hold_from`` set, every file whose delivery day is ``hold_from`` or later (delivered at
    or after the midnight that ends day ``hold_from``) goes to ``outbox/<source>/`` instead of
    ``landing/<source>/``, under the same name and with the same bytes. ``extensions`` names the
    sources (source -> file extension).
    """

    landing: Path
    outbox: Path
    hold_from: date | None = None
    extensions: Mapping[str, str] = field(default_factory=lambda: EXTENSIONS)

    def folders(self) -> list[Path]:
        """The folders :meth:`write` writes into (the outbox's only when something is held)."""
        roots = [self.landing] if self.hold_from is None else [self.landing, self.outbox]
        return [root / source for root in roots for source in self.extensions]

    def write(self, source: str, business_date: date, delivered: datetime, data: bytes) -> str:
        """Deliver one file (thread-safe); return its name."""
        name = file_name(source, business_date, delivered, self.extensions)
        held = self.hold_from is not None and delivery_day(delivered) >= self.hold_from
        write_atomic((self.outbox if held else self.landing) / source / name, data)
        return name


class CsvLines:
    """CSV lines (each ending in ``\\n``) built column-wise in Arrow, sliced by row range."""

    def __init__(self, columns: list[pa.Array]):
        # 64-bit offsets: a large world's transactions exceed the 2 GiB of a plain string array
        text = pa.large_string()
        comma, newline = pa.scalar(",", text), pa.scalar("\n", text)
        row = pc.binary_join_element_wise(*(c.cast(text) for c in columns), comma)
        row = pc.binary_join_element_wise(row, pa.scalar("", text), newline)
        self._row = row
        if len(row):
            self._offsets = np.frombuffer(row.buffers()[1], dtype=np.int64)[row.offset :]
            self._data = row.buffers()[2]

    def text(self, first: int, stop: int) -> bytes:
        """Lines ``first`` to ``stop - 1`` as one byte string."""
        if first == stop:
            return b""
        begin, end = int(self._offsets[first]), int(self._offsets[stop])
        return self._data.slice(begin, end - begin).to_pybytes()

    def line(self, index: int) -> str:
        return self._row[index].as_py().rstrip("\n")


def datetime_strings(start: date, day: np.ndarray, second: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD HH:MM:SS`` of ``second`` on day index ``day``."""
    return pc.cast(datetimes(start, day, second), pa.string())


def amount_strings(cents: np.ndarray) -> pa.Array:
    """Integer hundredths as decimal strings with two decimals (``1234`` -> ``12.34``)."""
    units = pc.cast(pa.array(cents // 100), pa.string())
    hundredths = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.binary_join_element_wise(units, hundredths, ".")


def transaction_ids(positions: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise("t-", pc.cast(pa.array(positions), pa.string()), "")


def datetimes(
    start: date, day: np.ndarray, second: np.ndarray, mask: np.ndarray | None = None
) -> pa.Array:
    """Timestamps (second resolution) of ``second`` on day index ``day``; null where ``mask``."""
    moments = np.datetime64(start, "s") + (day * SECONDS_PER_DAY + second).astype("timedelta64[s]")
    return pa.array(moments, mask=mask)


class TransactionFiles:
    """The payment processor: one gzip CSV per day, with the faults of ``plan``."""

    def __init__(
        self,
        config: WorldConfig,
        tx: Transactions,
        card_numbers: pa.Array,
        plan: faults.FaultPlan,
        destinations: Destinations,
    ):
        self._config, self._plan, self._destinations = config, plan, destinations
        self._lines = CsvLines(
            [
                transaction_ids(np.arange(tx.n)),
                datetime_strings(config.start, tx.day, tx.second),
                card_numbers.take(pa.array(tx.customer)),
                pc.cast(pa.array(tx.terminal), pa.string()),
                amount_strings(tx.cents),
            ]
        )
        self._day_start = np.searchsorted(tx.day, np.arange(config.n_days + 1))

    def content(self, day: int) -> tuple[bytes, list[dict[str, Any]]]:
        """The decompressed file of ``day`` and the manifest entries of its malformed rows."""
        first, stop = int(self._day_start[day]), int(self._day_start[day + 1])
        name = normal_file_name(self._config, TRANSACTIONS, day)
        broken = {p: f for p, f in self._plan.malformed_rows.items() if first <= p < stop}
        body = spliced_rows(self._lines, first, stop, broken, faults.corrupt_row)
        entries = [
            {
                "kind": faults.MALFORMED_ROW,
                "reason": broken[position].reason,
                "file": name,
                "line": position - first + 2,
                "transaction_id": f"t-{position}",
                "date": self._config.day(day).isoformat(),
            }
            for position in sorted(broken)
        ]
        return (TRANSACTIONS_HEADER + "\n").encode() + body, entries

    def write(self, day: int, content: bytes) -> list[dict[str, Any]]:
        """Compress and deliver ``day``'s file (thread-safe); return file-level fault entries."""
        return deliver_with_fault(
            self._destinations,
            TRANSACTIONS,
            self._config.day(day),
            normal_delivery(self._config, TRANSACTIONS, day),
            gzip_bytes(content),
            self._plan.day_faults.get(day),
        )


def deliver_with_fault(
    destinations: Destinations,
    source: str,
    business_date: date,
    normal: datetime,
    data: bytes,
    kind: str | None,
) -> list[dict[str, Any]]:
    """Deliver one gzip file due at ``normal`` as the file fault ``kind`` (None: none) says.

    Returns the manifest entries (none without a fault). Thread-safe.
    """
    entry: dict[str, Any] = {"kind": kind, "date": business_date.isoformat()}

    def send(delivered: datetime, payload: bytes) -> str:
        return destinations.write(source, business_date, delivered, payload)

    if kind is None:
        send(normal, data)
        return []
    if kind == faults.DUPLICATE_DELIVERY:
        first = send(normal, data)
        again = send(normal + timedelta(hours=faults.DUPLICATE_AFTER_HOURS), data)
        entry["files"] = [first, again]
    elif kind == faults.LATE_DELIVERY:
        late = normal + timedelta(days=faults.LATE_BY_DAYS)
        entry["file"] = send(late, data)
        entry["delivered_at"] = late.strftime(DELIVERED_AT_FORMAT)
    elif kind == faults.TRUNCATED_GZIP:
        entry["file"] = send(normal, faults.truncate(data))
        again = normal + timedelta(days=faults.REDELIVERY_AFTER_DAYS)
        entry["redelivered_as"] = send(again, data)
    else:
        raise ValueError(f"unknown file fault {kind!r}")
    return [entry]


def spliced_rows(
    lines: CsvLines,
    first: int,
    stop: int,
    broken: Mapping[int, faults.MalformedRow],
    corrupt: Callable[[str, faults.MalformedRow], str],
) -> bytes:
    """Lines ``first`` to ``stop - 1``, those at the positions of ``broken`` corrupted."""
    pieces, cursor = [], first
    for position in sorted(broken):
        pieces.append(lines.text(cursor, position))
        pieces.append((corrupt(lines.line(position), broken[position]) + "\n").encode())
        cursor = position + 1
    pieces.append(lines.text(cursor, stop))
    return b"".join(pieces)


class FraudReportFiles:
    """The disputes system: one plain CSV per report day inside the world."""

    def __init__(
        self,
        config: WorldConfig,
        tx: Transactions,
        card_numbers: pa.Array,
        destinations: Destinations,
    ):
        self._config, self._destinations = config, destinations
        delivered = np.flatnonzero((tx.report_day >= 0) & (tx.report_day < config.n_days))
        order = np.lexsort((delivered, tx.report_second[delivered], tx.report_day[delivered]))
        reports = delivered[order]
        report_day = tx.report_day[reports]
        self._lines = CsvLines(
            [
                transaction_ids(reports),
                card_numbers.take(pa.array(tx.customer[reports])),
                datetime_strings(config.start, report_day, tx.report_second[reports]),
            ]
        )
        self._day_start = np.searchsorted(report_day, np.arange(config.n_days + 1))
        self.n_delivered = len(reports)

    def write(self, day: int) -> None:
        body = self._lines.text(int(self._day_start[day]), int(self._day_start[day + 1]))
        self._destinations.write(
            FRAUD_REPORTS,
            self._config.day(day),
            normal_delivery(self._config, FRAUD_REPORTS, day),
            (FRAUD_REPORTS_HEADER + "\n").encode() + body,
        )


def write_customers(
    config: WorldConfig, day: int, snapshot: bytes, destinations: Destinations
) -> None:
    """Deliver the CRM's full snapshot of ``day``."""
    destinations.write(
        CUSTOMERS, config.day(day), normal_delivery(config, CUSTOMERS, day), gzip_bytes(snapshot)
    )
