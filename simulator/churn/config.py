"""The parameters of a simulated subscription-streaming world (simulator/churn/README.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

PLANS = ("basic", "standard", "premium")
DEVICES = ("tv", "mobile", "web")
CHANNELS = ("web", "phone", "app")


@dataclass(frozen=True)
class ChurnConfig:
    """Everything that determines a churn world: the same config gives byte-identical files."""

    n_accounts: int = 5000
    """Accounts alive at the start plus those who sign up during the world."""
    n_days: int = 120
    start: date = date(2018, 4, 1)
    seed: int = 0
    faults: bool = False
    """Inject faults into the usage files (malformed rows, duplicate, late, truncated files)."""
    drift_from: int | None = None
    """Day index from which a competitor launches (None: no drift)."""

    signup_share: float = 0.25
    """Share of the accounts who sign up during the world (the others exist at the start)."""
    plan_shares: tuple[float, float, float] = (0.45, 0.35, 0.20)
    """Shares of basic, standard and premium at signup."""
    plan_prices: tuple[float, float, float] = (7.99, 11.99, 15.99)
    price_increase_day: int | None = 40
    """Day index of the price increase (None, or a day after the world: no increase)."""
    price_increase_plan: str = "standard"
    price_increase_to: float = 13.99

    sessions_per_day: float = 2.0
    """Mean viewing sessions per engaged account and day."""
    minutes_per_session: float = 38.0

    disengagement_hazard: float = 0.001
    """Daily probability that an engaged account starts to disengage, before the boosts."""
    no_warning_hazard: float = 0.00022
    """Daily probability that an account cancels at once, without disengaging first."""
    lead_days: tuple[int, int] = (14, 42)
    """A disengaged account cancels this many days (inclusive range) after it starts to fade."""
    recovery_share: float = 0.2
    """Share of disengagements that end with the account engaged again instead of cancelling."""
    failed_payment_boost: float = 6.0
    """Extra hazard (times the base) in the ``boost_days`` after a failed payment."""
    technical_ticket_boost: float = 2.5
    """Extra hazard in the ``boost_days`` after a technical ticket."""
    boost_days: int = 21
    price_increase_boost: float = 10.0
    """Extra hazard times the account's price sensitivity (0..1) after a price increase."""
    price_increase_days: int = 45

    shaky_payer_share: float = 0.12
    shaky_failure_prob: float = 0.3
    reliable_failure_prob: float = 0.01
    retry_after_days: int = 3
    max_retries: int = 2
    dunning_cancel_share: float = 0.4
    """Share of the accounts whose last retry fails that cancel soon after (involuntary churn)."""
    dunning_days: tuple[int, int] = (2, 7)
    """They cancel this many days (inclusive range) after the last failed retry."""

    technical_prone_share: float = 0.1
    technical_ticket_rate: tuple[float, float] = (0.0008, 0.01)
    """Daily technical-ticket probability of an ordinary and of a technical-prone account."""
    content_ticket_rate: float = 0.0006
    billing_ticket_rate: float = 0.0002
    billing_ticket_after_failure: float = 0.3
    """Probability that a failed payment brings a billing ticket the same day."""
    cancellation_intent_rate: float = 0.0002
    """Daily cancellation-intent tickets of an engaged account (noise)."""
    cancellation_intent_fading: float = 0.06
    """Daily cancellation-intent probability of a disengaged account at the end of its fade."""

    plan_change_rate: float = 0.0015
    address_change_rate: float = 0.0005

    competitor_boost: float = 3.0
    """Drift: extra hazard of accounts who watch mostly on mobile."""
    drift_lead_days: tuple[int, int] = (4, 12)
    """Drift: the lead time of disengagements that start from ``drift_from``."""

    malformed_row_rate: float = 0.0005
    """Share of usage rows written malformed (with ``faults``)."""
    duplicate_delivery_rate: float = 0.01
    late_delivery_rate: float = 0.01
    truncated_gzip_rate: float = 0.01
    min_days_for_every_fault: int = 10
    """Worlds at least this long get at least one fault of each kind (with ``faults``)."""

    def __post_init__(self) -> None:
        if self.n_accounts < 1 or self.n_days < 1:
            raise ValueError("n_accounts and n_days must be at least 1")
        if self.drift_from is not None and not 0 <= self.drift_from < self.n_days:
            raise ValueError(f"drift_from must be a day index in [0, {self.n_days})")
        if self.price_increase_day is not None and self.price_increase_day < 0:
            raise ValueError("price_increase_day must be a day index (at least 0)")
        if self.price_increase_plan not in PLANS:
            raise ValueError(f"price_increase_plan must be one of {PLANS}")
        if abs(sum(self.plan_shares) - 1) > 1e-9 or min(self.plan_shares) < 0:
            raise ValueError("plan_shares must be three non-negative shares summing to 1")
        for name in ("lead_days", "drift_lead_days", "dunning_days"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} needs 1 <= low <= high")
        probabilities = {
            name: getattr(self, name)
            for name in (
                "signup_share",
                "disengagement_hazard",
                "no_warning_hazard",
                "recovery_share",
                "shaky_payer_share",
                "dunning_cancel_share",
                "shaky_failure_prob",
                "reliable_failure_prob",
                "technical_prone_share",
                "content_ticket_rate",
                "billing_ticket_rate",
                "billing_ticket_after_failure",
                "cancellation_intent_rate",
                "cancellation_intent_fading",
                "plan_change_rate",
                "address_change_rate",
                "malformed_row_rate",
                "duplicate_delivery_rate",
                "late_delivery_rate",
                "truncated_gzip_rate",
            )
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")

    def day(self, index: int) -> date:
        """The calendar date of day ``index`` (0 is ``start``)."""
        return self.start + timedelta(days=index)

    def at(self, index: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """A wall-clock time on day ``index`` (which may lie after the simulated period)."""
        return datetime.combine(self.day(index), time(hour, minute, second))

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values (dates as ISO strings, tuples as lists)."""
        values = dataclasses.asdict(self)
        values["start"] = self.start.isoformat()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
