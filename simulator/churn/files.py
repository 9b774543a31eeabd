"""The five source systems' files: names, headers, delivery times, contents.

Names follow :mod:`simulator.sources` (``<source>_<business date>__d<delivery id>.<ext>``). Normal
delivery times: cancellations of day D at D+1 00:30:00, tickets at 00:45:00, usage at 01:00:00,
the accounts snapshot at 02:00:00, billing at 03:00:00. Faults hit the usage files only.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator import faults, sources
from simulator.churn.accounts import account_ids
from simulator.churn.config import CHANNELS, DEVICES, ChurnConfig
from simulator.churn.world import CATEGORIES, EVENT_TYPES, Behaviour, Sessions

ACCOUNTS, USAGE, BILLING, TICKETS, CANCELLATIONS = (
    "accounts",
    "usage",
    "billing",
    "tickets",
    "cancellations",
)
SOURCES = (ACCOUNTS, USAGE, BILLING, TICKETS, CANCELLATIONS)
EXTENSIONS = {
    ACCOUNTS: "jsonl.gz",
    USAGE: "csv.gz",
    BILLING: "csv",
    TICKETS: "csv",
    CANCELLATIONS: "csv",
}
DELIVERED_AT = {
    CANCELLATIONS: (0, 30, 0),
    TICKETS: (0, 45, 0),
    USAGE: (1, 0, 0),
    ACCOUNTS: (2, 0, 0),
    BILLING: (3, 0, 0),
}
HEADERS = {
    USAGE: "session_id,account_id,started_at,minutes,device",
    BILLING: "billing_event_id,account_id,event_at,event_type,amount",
    TICKETS: "ticket_id,account_id,opened_at,category",
    CANCELLATIONS: "account_id,cancelled_at,channel",
}
ID_PREFIXES = {USAGE: "s-", BILLING: "b-", TICKETS: "tk-"}
STARTED_AT_FIELD, MINUTES_FIELD = 2, 3
"""The usage fields a malformed row breaks (the timestamp and the decimal)."""


def normal_delivery(config: ChurnConfig, source: str, day: int) -> datetime:
    """When ``source`` delivers the file of day index ``day`` when nothing goes wrong."""
    return config.at(day + 1, *DELIVERED_AT[source])


def row_ids(source: str, positions: np.ndarray) -> pa.Array:
    """``<prefix><position>``: a row's id is its position in the source's time order."""
    return pc.binary_join_element_wise(
        ID_PREFIXES[source], pc.cast(pa.array(positions), pa.string()), ""
    )


def _names(names: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(index))


class DailyCsvFiles:
    """One plain CSV file per business day of rows sorted by day."""

    def __init__(
        self,
        config: ChurnConfig,
        source: str,
        day: np.ndarray,
        columns: list[pa.Array],
        destinations: sources.Destinations,
    ):
        self._config, self._source, self._destinations = config, source, destinations
        self.lines = sources.CsvLines(columns)
        self.day_start = np.searchsorted(day, np.arange(config.n_days + 1))
        self.n_rows = len(day)

    def rows(self, day: int) -> tuple[int, int]:
        return int(self.day_start[day]), int(self.day_start[day + 1])

    def write(self, day: int) -> None:
        body = self.lines.text(*self.rows(day))
        self._destinations.write(
            self._source,
            self._config.day(day),
            normal_delivery(self._config, self._source, day),
            (HEADERS[self._source] + "\n").encode() + body,
        )


def billing_files(
    config: ChurnConfig, behaviour: Behaviour, destinations: sources.Destinations
) -> DailyCsvFiles:
    events = behaviour.billing
    columns = [
        row_ids(BILLING, np.arange(len(events["day"]))),
        account_ids(events["account"]),
        sources.datetime_strings(config.start, events["day"], events["second"]),
        _names(EVENT_TYPES, events["type"]),
        sources.amount_strings(events["cents"]),
    ]
    return DailyCsvFiles(config, BILLING, events["day"], columns, destinations)


def ticket_files(
    config: ChurnConfig, behaviour: Behaviour, destinations: sources.Destinations
) -> DailyCsvFiles:
    tickets = behaviour.tickets
    columns = [
        row_ids(TICKETS, np.arange(len(tickets["day"]))),
        account_ids(tickets["account"]),
        sources.datetime_strings(config.start, tickets["day"], tickets["second"]),
        _names(CATEGORIES, tickets["category"]),
    ]
    return DailyCsvFiles(config, TICKETS, tickets["day"], columns, destinations)


def cancellation_files(
    config: ChurnConfig, behaviour: Behaviour, destinations: sources.Destinations
) -> DailyCsvFiles:
    cancelled = np.flatnonzero(behaviour.cancel_day < config.n_days)
    in_time = np.lexsort(
        (cancelled, behaviour.cancel_second[cancelled], behaviour.cancel_day[cancelled])
    )
    order = cancelled[in_time]
    day, second = behaviour.cancel_day[order], behaviour.cancel_second[order]
    columns = [
        account_ids(order),
        sources.datetime_strings(config.start, day, second),
        _names(CHANNELS, behaviour.channel[order]),
    ]
    return DailyCsvFiles(config, CANCELLATIONS, day, columns, destinations)


class UsageFiles(DailyCsvFiles):
    """The streaming platform: one gzip CSV per day, with the faults of ``plan``."""

    def __init__(
        self,
        config: ChurnConfig,
        sessions: Sessions,
        plan: faults.FaultPlan,
        destinations: sources.Destinations,
    ):
        columns = [
            row_ids(USAGE, np.arange(sessions.n)),
            account_ids(sessions.account),
            sources.datetime_strings(config.start, sessions.day, sessions.second),
            sources.amount_strings(sessions.centiminutes),
            _names(DEVICES, sessions.device),
        ]
        super().__init__(config, USAGE, sessions.day, columns, destinations)
        self._plan = plan
        self._corrupt = partial(
            faults.corrupt_row, amount_field=MINUTES_FIELD, timestamp_field=STARTED_AT_FIELD
        )

    def content(self, day: int) -> tuple[bytes, list[dict[str, Any]]]:
        """The decompressed file of ``day`` and the manifest entries of its malformed rows."""
        first, stop = self.rows(day)
        name = sources.file_name(
            USAGE, self._config.day(day), normal_delivery(self._config, USAGE, day), EXTENSIONS
        )
        broken = {p: f for p, f in self._plan.malformed_rows.items() if first <= p < stop}
        body = sources.spliced_rows(self.lines, first, stop, broken, self._corrupt)
        entries = [
            {
                "kind": faults.MALFORMED_ROW,
                "reason": broken[position].reason,
                "file": name,
                "line": position - first + 2,
                "session_id": f"{ID_PREFIXES[USAGE]}{position}",
                "date": self._config.day(day).isoformat(),
            }
            for position in sorted(broken)
        ]
        return (HEADERS[USAGE] + "\n").encode() + body, entries

    def write_content(self, day: int, content: bytes) -> list[dict[str, Any]]:
        """Compress and deliver ``day``'s file (thread-safe); return file-level fault entries."""
        return sources.deliver_with_fault(
            self._destinations,
            USAGE,
            self._config.day(day),
            normal_delivery(self._config, USAGE, day),
            sources.gzip_bytes(content),
            self._plan.day_faults.get(day),
        )


def write_accounts(
    config: ChurnConfig, day: int, snapshot: bytes, destinations: sources.Destinations
) -> None:
    """Deliver the account system's full snapshot of ``day``."""
    destinations.write(
        ACCOUNTS,
        config.day(day),
        normal_delivery(config, ACCOUNTS, day),
        sources.gzip_bytes(snapshot),
    )
