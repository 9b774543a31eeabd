"""The parameters of a simulated world; the defaults reproduce the Fraud Detection Handbook."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

REFERENCE_CUSTOMERS = 5000
"""World size the per-day customer counts (scenario 3, card testing) are quoted for."""
REFERENCE_TERMINALS = 10000
"""World size the per-day terminal count (scenario 2) is quoted for."""
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world: the same config gives byte-identical files."""

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    start: date = date(2018, 4, 1)
    seed: int = 0
    faults: bool = False
    """Inject source faults (malformed rows, duplicate, late and truncated deliveries)."""
    drift_from: int | None = None
    """Day index from which card-testing fraud and the spending shift start (None: no drift)."""

    radius: float = 5.0
    """A customer uses the terminals within this Euclidean distance."""
    fraud_amount_threshold: float = 220.0
    """Scenario 1: every amount above this is fraud."""
    compromised_terminals_per_day: float = 2.0
    """Scenario 2: terminals compromised each day, per 10,000 terminals."""
    terminal_compromise_days: int = 28
    compromised_customers_per_day: float = 3.0
    """Scenario 3: customers compromised each day, per 5,000 customers."""
    customer_compromise_days: int = 14
    customer_fraud_share: float = 1 / 3
    customer_fraud_multiplier: int = 5
    signup_share: float = 0.05
    """Share of customers who sign up during the simulated period."""
    address_change_prob: float = 0.001
    """Probability that a customer changes address on a given day."""
    max_report_delay_days: int = 7
    """A fraud is reported 1..max_report_delay_days whole days after the day it happened."""

    malformed_row_rate: float = 0.0005
    """Share of transaction rows written malformed (with ``faults``)."""
    duplicate_delivery_rate: float = 0.01
    """Per day: probability that the transactions file is delivered twice (with ``faults``)."""
    late_delivery_rate: float = 0.01
    """Per day: probability that the transactions file arrives 3 days late (with ``faults``)."""
    truncated_gzip_rate: float = 0.01
    """Per day: probability that the transactions file is truncated, then redelivered."""
    min_days_for_every_fault: int = 10
    """Worlds at least this long get at least one fault of each kind (with ``faults``)."""

    card_testing_cards_per_day: float = 3.0
    """Drift: cards used for card-testing bursts each day, per 5,000 customers."""
    card_testing_burst_min: int = 5
    card_testing_burst_max: int = 15
    spending_shift: float = 1.25
    """Drift: every customer's mean amount is multiplied by this from ``drift_from``."""

    def __post_init__(self) -> None:
        if self.n_customers < 1 or self.n_terminals < 1 or self.n_days < 1:
            raise ValueError("n_customers, n_terminals and n_days must be at least 1")
        if self.drift_from is not None and not 0 <= self.drift_from < self.n_days:
            raise ValueError(f"drift_from must be a day index in [0, {self.n_days})")
        rates = {
            "signup_share": self.signup_share,
            "address_change_prob": self.address_change_prob,
            "malformed_row_rate": self.malformed_row_rate,
            "duplicate_delivery_rate": self.duplicate_delivery_rate,
            "late_delivery_rate": self.late_delivery_rate,
            "truncated_gzip_rate": self.truncated_gzip_rate,
            "customer_fraud_share": self.customer_fraud_share,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.max_report_delay_days < 1:
            raise ValueError("max_report_delay_days must be at least 1")
        if not 1 <= self.card_testing_burst_min <= self.card_testing_burst_max:
            raise ValueError("card testing bursts need 1 <= burst_min <= burst_max")

    def day(self, index: int) -> date:
        """The calendar date of day ``index`` (0 is ``start``)."""
        return self.start + timedelta(days=index)

    def at(self, index: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """A wall-clock time on day ``index`` (which may lie after the simulated period)."""
        return datetime.combine(self.day(index), time(hour, minute, second))

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values (dates as ISO strings)."""
        values = dataclasses.asdict(self)
        values["start"] = self.start.isoformat()
        return values
