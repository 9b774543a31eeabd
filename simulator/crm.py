"""The CRM: who the customers are (Faker PII), when they signed up, where they live.

Every customer's JSON line is serialized once and cached; a line is rebuilt only when the
customer changes, so a daily full snapshot is a join of cached bytes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import numpy as np
from faker import Faker

from simulator.config import SECONDS_PER_DAY, WorldConfig
from simulator.luhn import is_valid

FAKER_LOCALE = "en_US"
CARD_TYPES = ("visa16", "mastercard")
PAN_LENGTH = 16
MIN_AGE_YEARS, MAX_AGE_YEARS = 18, 90
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def customer_ids(n_customers: int) -> list[str]:
    """``c-<n>`` zero-padded to the width of the largest index."""
    width = len(str(n_customers - 1))
    return [f"c-{i:0{width}d}" for i in range(n_customers)]


def _single_line(address: str) -> str:
    return address.replace("\n", ", ")


class Crm:
    """The CRM's state, advanced one day at a time by :meth:`end_of_day`."""

    def __init__(self, config: WorldConfig, signup_day: np.ndarray, rng: np.random.Generator):
        self._config = config
        self._rng = rng
        self._fake = Faker(FAKER_LOCALE)
        self._fake.seed_instance(config.seed)
        self._signup_day = signup_day
        self.n_address_changes = 0
        n = len(signup_day)
        self.ids = customer_ids(n)
        self.card_numbers = self._card_numbers(n)
        oldest = config.start - timedelta(days=round(MAX_AGE_YEARS * 365.25))
        youngest = config.start - timedelta(days=round(MIN_AGE_YEARS * 365.25))
        signup_seconds = rng.integers(0, SECONDS_PER_DAY, n)
        self._records = []
        for i in range(n):
            signup = config.day(int(signup_day[i]))
            self._records.append(
                {
                    "customer_id": self.ids[i],
                    "name": self._fake.name(),
                    "email": self._fake.email(),
                    "phone": self._fake.phone_number(),
                    "address": _single_line(self._fake.address()),
                    "date_of_birth": self._fake.date_between_dates(oldest, youngest).isoformat(),
                    "card_number": self.card_numbers[i],
                    "signup_date": signup.isoformat(),
                    "updated_at": _timestamp(signup, int(signup_seconds[i])),
                }
            )
        self._lines = [_serialize(record) for record in self._records]

    def _card_numbers(self, n: int) -> list[str]:
        """Unique 16-digit PANs from Faker, each checked against Luhn."""
        seen: set[str] = set()
        numbers = []
        while len(numbers) < n:
            number = self._fake.credit_card_number(self._fake.random_element(CARD_TYPES))
            if len(number) != PAN_LENGTH or not is_valid(number):
                raise ValueError(f"Faker produced an invalid card number for {CARD_TYPES}")
            if number not in seen:
                seen.add(number)
                numbers.append(number)
        return numbers

    def end_of_day(self, day: int) -> bytes:
        """Apply day ``day``'s address changes; return that day's full JSONL snapshot."""
        signed_up = int(np.searchsorted(self._signup_day, day, side="right"))
        moves = self._rng.random(signed_up) < self._config.address_change_prob
        # a customer can only move after the day they signed up
        movers = np.flatnonzero(moves & (self._signup_day[:signed_up] < day))
        seconds = self._rng.integers(0, SECONDS_PER_DAY, len(movers))
        for customer, second in zip(movers.tolist(), seconds.tolist(), strict=True):
            record = self._records[customer]
            record["address"] = _single_line(self._fake.address())
            record["updated_at"] = _timestamp(self._config.day(day), second)
            self._lines[customer] = _serialize(record)
        self.n_address_changes += len(movers)
        return b"".join(self._lines[:signed_up])


def _timestamp(day: date, second: int) -> str:
    return (datetime.combine(day, datetime.min.time()) + timedelta(seconds=second)).strftime(
        TIMESTAMP_FORMAT
    )


def _serialize(record: dict[str, str]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
