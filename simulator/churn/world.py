"""How the accounts behave: signups, billing, tickets, plan changes, disengagement, cancellation.

The process is simulated day by day, vectorized over the accounts, because a day depends on the
days before it (a failed payment raises the hazard, a cancellation ends billing). Every day
draws the same number of random numbers whatever happens, so the days before ``drift_from`` are
the same with and without drift. Viewing sessions are drawn afterwards, for all days at once,
from the daily engagement the loop records. The loop starts :data:`WARMUP_DAYS` before the world
so that on day 0 some accounts are already fading, as in a business that has run for years.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.churn.config import DEVICES, PLANS, ChurnConfig
from simulator.config import SECONDS_PER_DAY

WARMUP_DAYS = 60
"""Longer than the longest lead time: the fading accounts on day 0 are in steady state."""
PAST_SIGNUP_MAX_DAYS = 3 * 365
NEVER = np.iinfo(np.int64).max // 4
"""Day index of something that does not happen."""
LONG_AGO = -NEVER

FADE_DEPTH = 0.85
"""A fading account's usage falls linearly to 1 - FADE_DEPTH of its usual level."""
PLAN_CHANGE_WHEN_FADING = 3.0
"""A fading account changes plan this many times as often (always down)."""
SESSION_RATE_SIGMA = 0.6
MINUTES_ACCOUNT_SIGMA = 0.4
MINUTES_SESSION_SIGMA = 0.7
FRAILTY_SIGMA = 0.5
LIGHT_USER_EXPONENT = 0.3
"""Hazard grows as (usual sessions / mean) ** -LIGHT_USER_EXPONENT: light users leave more."""
WEEKEND_FACTOR = 1.25
MAIN_DEVICE_SHARES = (0.45, 0.35, 0.20)
MAIN_DEVICE_WEIGHT = 0.7
"""Share of an account's sessions on its main device; the rest is split evenly."""
CHANNEL_SHARES = {False: (0.5, 0.2, 0.3), True: (0.3, 0.1, 0.6)}
"""Cancellation channel shares (web, phone, app) by whether the account watches on mobile."""
SENSITIVITY_BETA = (0.5, 2.0)
BILLING_RUN_S = (3 * 3600, 4 * 3600)
"""The nightly billing run: start second and length."""
PRICE_RUN_S = 3600
"""Price changes take effect in the first hour of the day."""
SIGNUP_PAYMENT_DELAY_S = 60
SESSION_PEAK_S, SESSION_SPREAD_S = 20.5 * 3600, 3.5 * 3600
MOBILE = DEVICES.index("mobile")

EVENT_TYPES = ("payment", "payment_failed", "price_change", "plan_change")
PAYMENT, PAYMENT_FAILED, PRICE_CHANGE, PLAN_CHANGE = range(len(EVENT_TYPES))
CATEGORIES = ("billing", "technical", "content", "cancellation_intent")
BILLING, TECHNICAL, CONTENT, CANCELLATION_INTENT = range(len(CATEGORIES))
DRIVERS = (
    "organic",
    "failed_payment",
    "technical_problems",
    "price_increase",
    "competitor",
    "no_warning",
)
NO_WARNING, FAILED_PAYMENT = DRIVERS.index("no_warning"), DRIVERS.index("failed_payment")
CHANGES = ("price", "plan", "address")
PRICE, PLAN, ADDRESS = range(len(CHANGES))

STREAMS = (
    "accounts",
    "behaviour",
    "usage",
    "session_times",
    "session_minutes",
    "session_devices",
    "pii",
    "faults",
)
"""Independent random streams: turning faults on leaves the rest of the world as is."""

DRAWS = (
    "no_warning",
    "cancel_second",
    "channel",
    "payment",
    "payment_second",
    "dunning",
    "dunning_lead",
    "billing_ticket",
    "billing_ticket_second",
    "ticket",
    "ticket_category",
    "ticket_second",
    "plan",
    "plan_choice",
    "plan_second",
    "address",
    "address_second",
    "price_second",
    "onset",
    "lead",
    "recovery",
    "driver",
)
"""The uniform numbers every account draws every day, by purpose (one row each)."""
_ROW = {name: row for row, name in enumerate(DRAWS)}


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per name in :data:`STREAMS`, all derived from ``seed``."""
    seeds = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, seeds, strict=True)}


@dataclass(frozen=True)
class Accounts:
    """Who the accounts are, in signup order (account ``i`` is ``A<i>``)."""

    signup_day: np.ndarray
    """Day index of signup; negative for accounts older than the world."""
    signup_second: np.ndarray
    plan: np.ndarray
    """Plan at signup (index into PLANS)."""
    sessions_per_day: np.ndarray
    minutes_per_session: np.ndarray
    device_shares: np.ndarray
    """(n, 3): the share of sessions on tv, mobile and web."""
    main_device: np.ndarray
    price_sensitivity: np.ndarray
    failure_prob: np.ndarray
    technical_rate: np.ndarray
    frailty: np.ndarray
    """Multiplies every hazard of the account."""

    @property
    def n(self) -> int:
        return len(self.signup_day)


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """Lognormal draws with the given mean (not median)."""
    return rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n)


def generate_accounts(config: ChurnConfig, rng: np.random.Generator) -> Accounts:
    n = config.n_accounts
    n_new = round(config.signup_share * n)
    signup_day = np.concatenate(
        [
            -rng.integers(1, PAST_SIGNUP_MAX_DAYS + 1, n - n_new),
            rng.integers(0, config.n_days, n_new),
        ]
    )
    signup_second = rng.integers(0, SECONDS_PER_DAY, n)
    order = np.lexsort((signup_second, signup_day))
    sessions = _lognormal(rng, config.sessions_per_day, SESSION_RATE_SIGMA, n)
    main_device = rng.choice(len(DEVICES), size=n, p=MAIN_DEVICE_SHARES)
    shares = np.full((n, len(DEVICES)), (1 - MAIN_DEVICE_WEIGHT) / (len(DEVICES) - 1))
    shares[np.arange(n), main_device] = MAIN_DEVICE_WEIGHT
    shaky = rng.random(n) < config.shaky_payer_share
    prone = rng.random(n) < config.technical_prone_share
    frailty = _lognormal(rng, 1.0, FRAILTY_SIGMA, n)
    frailty *= (sessions / config.sessions_per_day) ** -LIGHT_USER_EXPONENT
    return Accounts(
        signup_day=signup_day[order],
        signup_second=signup_second[order],
        plan=rng.choice(len(PLANS), size=n, p=config.plan_shares),
        sessions_per_day=sessions,
        minutes_per_session=_lognormal(rng, config.minutes_per_session, MINUTES_ACCOUNT_SIGMA, n),
        device_shares=shares,
        main_device=main_device,
        price_sensitivity=rng.beta(*SENSITIVITY_BETA, n),
        failure_prob=np.where(shaky, config.shaky_failure_prob, config.reliable_failure_prob),
        technical_rate=np.array(config.technical_ticket_rate)[prone.astype(int)],
        frailty=frailty,
    )


class Prices:
    """Monthly price in cents of each plan on each day."""

    def __init__(self, config: ChurnConfig):
        self.cents = np.rint(np.array(config.plan_prices) * 100).astype(np.int64)
        self.increase_day = (
            NEVER if config.price_increase_day is None else config.price_increase_day
        )
        self.increased_plan = PLANS.index(config.price_increase_plan)
        self.increased_cents = round(config.price_increase_to * 100)

    def of(self, plan: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        raised = (plan == self.increased_plan) & (day >= self.increase_day)
        return np.where(raised, self.increased_cents, self.cents[plan])


class EventLog:
    """Rows of one kind of event, appended day by day, as columns."""

    def __init__(self, *columns: str):
        self._parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add(self, **values: np.ndarray | int) -> None:
        size = len(values["account"])
        for column, parts in self._parts.items():
            parts.append(np.broadcast_to(np.asarray(values[column], dtype=np.int64), size))

    def columns(self) -> dict[str, np.ndarray]:
        """Every column, rows sorted by (day, second, account), ties kept in appending order."""
        merged = {
            c: np.concatenate(p) if p else np.zeros(0, dtype=np.int64)
            for c, p in self._parts.items()
        }
        order = np.lexsort((merged["account"], merged["second"], merged["day"]))
        return {c: v[order] for c, v in merged.items()}


@dataclass(frozen=True)
class Behaviour:
    """What the accounts did: the loop's events and per-account outcomes."""

    billing: dict[str, np.ndarray]
    """day, second, account, type (EVENT_TYPES), cents."""
    tickets: dict[str, np.ndarray]
    """day, second, account, category (CATEGORIES)."""
    changes: dict[str, np.ndarray]
    """day, second, account, kind (CHANGES), plan, cents: what the account system records."""
    cancel_day: np.ndarray
    """Day index of the cancellation (NEVER if none inside the world)."""
    cancel_second: np.ndarray
    channel: np.ndarray
    driver: np.ndarray
    """Why the account cancelled (DRIVERS), -1 if it did not."""
    faded_from: np.ndarray
    """Day index the account started to fade before cancelling (NEVER for none)."""
    engagement: np.ndarray
    """(n_days, n): the account's usual usage multiplier on each day, 0 when it cannot watch."""


class _Life:
    """The state of every account, advanced one day at a time by :meth:`live`."""

    def __init__(self, config: ChurnConfig, accounts: Accounts):
        self.config, self.accounts, self.prices = config, accounts, Prices(config)
        n = accounts.n
        self.plan = accounts.plan.copy()
        self.cancel_day = np.full(n, NEVER)
        self.cancel_second = np.zeros(n, dtype=np.int64)
        self.channel = np.zeros(n, dtype=np.int64)
        self.driver = np.full(n, -1)
        self.faded_from = np.full(n, NEVER)
        self.fade_start = np.full(n, NEVER)
        self.fade_end = np.full(n, NEVER)
        self.fade_driver = np.zeros(n, dtype=np.int64)
        self.recovers = np.zeros(n, dtype=bool)
        self.last_failure = np.full(n, LONG_AGO)
        self.retry_day = np.full(n, NEVER)
        self.retries = np.zeros(n, dtype=np.int64)
        self.last_technical = np.full(n, LONG_AGO)
        self.price_hit = np.full(n, LONG_AGO)
        self.engagement = np.zeros((config.n_days, n))
        self.billing = EventLog("day", "second", "account", "type", "cents")
        self.tickets = EventLog("day", "second", "account", "category")
        self.changes = EventLog("day", "second", "account", "kind", "plan", "cents")
        signup = np.datetime64(config.start, "D") + accounts.signup_day.astype("timedelta64[D]")
        self.anchor = _day_of_month(signup)

    @property
    def fading(self) -> np.ndarray:
        return self.fade_start != NEVER

    def live(self, rng: np.random.Generator) -> Behaviour:
        config = self.config
        dates = np.datetime64(config.start, "D") + np.arange(-WARMUP_DAYS, config.n_days)
        day_of_month, month_length = _day_of_month(dates), _month_length(dates)
        for i, day in enumerate(range(-WARMUP_DAYS, config.n_days)):
            u = rng.random((len(DRAWS), self.accounts.n))
            self._day(
                day, {name: u[row] for name, row in _ROW.items()}, day_of_month[i], month_length[i]
            )
        return Behaviour(
            billing=self.billing.columns(),
            tickets=self.tickets.columns(),
            changes=self.changes.columns(),
            cancel_day=self.cancel_day,
            cancel_second=self.cancel_second,
            channel=self.channel,
            driver=self.driver,
            faded_from=self.faded_from,
            engagement=self.engagement,
        )

    def _day(
        self, day: int, u: dict[str, np.ndarray], day_of_month: int, month_length: int
    ) -> None:
        """One day: cancellations, then what active accounts do, then who starts to fade."""
        signed_up = self.accounts.signup_day <= day
        self._cancellations(day, u, signed_up)
        if day >= 0:
            self._record_engagement(day, signed_up)
        active = signed_up & (self.cancel_day == NEVER)
        veteran = active & (self.accounts.signup_day < day)
        self._price_increase(day, u, active)
        due = active & (
            (self.anchor == day_of_month)
            | ((self.anchor > month_length) & (day_of_month == month_length))
            | (self.retry_day == day)
        )
        self._billing(day, u, due)
        if day >= 0:
            self._tickets(day, u, veteran)
            self._plan_changes(day, u, veteran)
            self._address_changes(day, u, veteran)
        self._onsets(day, u, veteran & ~self.fading)

    def _cancellations(self, day: int, u: dict[str, np.ndarray], signed_up: np.ndarray) -> None:
        ending = self.fade_end == day
        # before the world nobody cancels: its accounts are those alive on day 0
        recovering = ending & (self.recovers | (day < 0))
        self.fade_start[recovering] = self.fade_end[recovering] = NEVER
        faded = ending & ~recovering
        alive = signed_up & (self.cancel_day == NEVER) & (self.accounts.signup_day < day)
        hazard = self.config.no_warning_hazard * self.accounts.frailty
        hazard = hazard * (1 + self._failure_boost(day))
        sudden = alive & ~self.fading & (u["no_warning"] < hazard) & (day >= 0)
        cancelling = faded | sudden
        self.cancel_day[cancelling] = day
        self.cancel_second[cancelling] = (u["cancel_second"][cancelling] * SECONDS_PER_DAY).astype(
            np.int64
        )
        self.driver[faded] = self.fade_driver[faded]
        self.faded_from[faded] = self.fade_start[faded]
        self.driver[sudden] = NO_WARNING
        mobile = self.accounts.main_device == MOBILE
        for is_mobile, shares in CHANNEL_SHARES.items():
            chosen = cancelling & (mobile == is_mobile)
            self.channel[chosen] = _pick(u["channel"][chosen], shares)

    def _record_engagement(self, day: int, signed_up: np.ndarray) -> None:
        watching = signed_up & ((self.cancel_day == NEVER) | (self.cancel_day == day))
        lead = np.maximum(self.fade_end - self.fade_start, 1)
        progress = np.clip((day - self.fade_start) / lead, 0.0, 1.0)
        level = np.where(self.fading, 1 - FADE_DEPTH * progress, 1.0)
        self.engagement[day] = np.where(watching, level, 0.0)

    def _price_increase(self, day: int, u: dict[str, np.ndarray], active: np.ndarray) -> None:
        if day != self.prices.increase_day:
            return
        hit = np.flatnonzero(active & (self.plan == self.prices.increased_plan))
        self.price_hit[hit] = day
        second = (u["price_second"][hit] * PRICE_RUN_S).astype(np.int64)
        cents = self.prices.of(self.plan[hit], day)
        self.billing.add(day=day, second=second, account=hit, type=PRICE_CHANGE, cents=cents)
        self.changes.add(
            day=day, second=second, account=hit, kind=PRICE, plan=self.plan[hit], cents=cents
        )

    def _billing(self, day: int, u: dict[str, np.ndarray], due: np.ndarray) -> None:
        config, accounts = self.config, self.accounts
        retry = due & (self.retry_day == day)
        failure_prob = np.where(
            retry, np.minimum(1.5 * accounts.failure_prob, 1), accounts.failure_prob
        )
        failed = due & (u["payment"] < failure_prob)
        paid = due & ~failed
        self.retry_day[paid] = NEVER
        self.retries[paid] = 0
        self.last_failure[failed] = day
        again = failed & (self.retries < config.max_retries)
        self.retry_day[again] = day + config.retry_after_days
        self.retries[again] += 1
        exhausted = failed & ~again
        self.retry_day[exhausted] = NEVER
        self.retries[exhausted] = 0
        self._dunning(day, u, exhausted & ~self.fading)
        if day < 0:
            return
        billed = np.flatnonzero(due)
        start, length = BILLING_RUN_S
        second = start + (u["payment_second"][billed] * length).astype(np.int64)
        joined = accounts.signup_day[billed] == day
        second[joined] = np.minimum(
            accounts.signup_second[billed][joined] + SIGNUP_PAYMENT_DELAY_S, SECONDS_PER_DAY - 1
        )
        kind = np.where(failed[billed], PAYMENT_FAILED, PAYMENT)
        cents = self.prices.of(self.plan[billed], day)
        self.billing.add(day=day, second=second, account=billed, type=kind, cents=cents)
        upset = failed[billed] & (u["billing_ticket"][billed] < config.billing_ticket_after_failure)
        # later the same day: the customer calls after the payment failed
        rest = SECONDS_PER_DAY - 1 - second[upset]
        later = (u["billing_ticket_second"][billed][upset] * rest).astype(np.int64)
        opened = np.minimum(second[upset] + 1 + later, SECONDS_PER_DAY - 1)
        self.tickets.add(day=day, second=opened, account=billed[upset], category=BILLING)

    def _dunning(self, day: int, u: dict[str, np.ndarray], exhausted: np.ndarray) -> None:
        """Accounts whose last retry failed: their service is restricted, some cancel soon."""
        low, high = self.config.dunning_days
        lead = low + (u["dunning_lead"][exhausted] * (high - low + 1)).astype(np.int64)
        self.fade_start[exhausted] = day
        self.fade_end[exhausted] = day + lead
        self.recovers[exhausted] = u["dunning"][exhausted] >= self.config.dunning_cancel_share
        self.fade_driver[exhausted] = FAILED_PAYMENT

    def _tickets(self, day: int, u: dict[str, np.ndarray], veteran: np.ndarray) -> None:
        config = self.config
        lead = np.maximum(self.fade_end - self.fade_start, 1)
        progress = np.where(self.fading, np.clip((day - self.fade_start) / lead, 0, 1), 0.0)
        rates = np.stack(
            [
                np.full(self.accounts.n, config.billing_ticket_rate),
                self.accounts.technical_rate,
                np.full(self.accounts.n, config.content_ticket_rate),
                config.cancellation_intent_rate + config.cancellation_intent_fading * progress**2,
            ]
        )
        bounds = np.cumsum(rates, axis=0)
        opened = np.flatnonzero(veteran & (u["ticket"] < bounds[-1]))
        category = (u["ticket_category"][opened] * bounds[-1][opened] >= bounds[:, opened]).sum(
            axis=0
        )
        category = np.minimum(category, len(CATEGORIES) - 1)
        second = (u["ticket_second"][opened] * SECONDS_PER_DAY).astype(np.int64)
        self.tickets.add(day=day, second=second, account=opened, category=category)
        self.last_technical[opened[category == TECHNICAL]] = day

    def _plan_changes(self, day: int, u: dict[str, np.ndarray], veteran: np.ndarray) -> None:
        rate = self.config.plan_change_rate * np.where(self.fading, PLAN_CHANGE_WHEN_FADING, 1.0)
        moving = veteran & (u["plan"] < rate) & ~(self.fading & (self.plan == 0))
        changing = np.flatnonzero(moving)
        other = (self.plan[changing] + 1 + (u["plan_choice"][changing] * 2).astype(np.int64)) % 3
        plan = np.where(self.fading[changing], self.plan[changing] - 1, other)
        self.plan[changing] = plan
        second = (u["plan_second"][changing] * SECONDS_PER_DAY).astype(np.int64)
        cents = self.prices.of(plan, day)
        self.billing.add(day=day, second=second, account=changing, type=PLAN_CHANGE, cents=cents)
        self.changes.add(
            day=day, second=second, account=changing, kind=PLAN, plan=plan, cents=cents
        )

    def _address_changes(self, day: int, u: dict[str, np.ndarray], veteran: np.ndarray) -> None:
        moving = np.flatnonzero(veteran & (u["address"] < self.config.address_change_rate))
        second = (u["address_second"][moving] * SECONDS_PER_DAY).astype(np.int64)
        self.changes.add(
            day=day, second=second, account=moving, kind=ADDRESS, plan=self.plan[moving], cents=0
        )

    def _failure_boost(self, day: int) -> np.ndarray:
        recent = day - self.last_failure <= self.config.boost_days
        return self.config.failed_payment_boost * recent

    def _excess_hazards(self, day: int) -> np.ndarray:
        """(4, n): the boosts of failed payments, technical problems, price and competitor."""
        config = self.config
        technical = day - self.last_technical <= config.boost_days
        since_price = day - self.price_hit
        priced = (since_price >= 0) & (since_price <= config.price_increase_days)
        competing = config.drift_from is not None and day >= config.drift_from
        mobile = self.accounts.main_device == MOBILE
        return np.stack(
            [
                self._failure_boost(day),
                config.technical_ticket_boost * technical,
                config.price_increase_boost * self.accounts.price_sensitivity * priced,
                config.competitor_boost * (mobile & competing),
            ]
        )

    def _onsets(self, day: int, u: dict[str, np.ndarray], candidates: np.ndarray) -> None:
        """Accounts that start to fade at the end of ``day``, with their lead time and driver."""
        config = self.config
        parts = np.vstack([np.ones((1, self.accounts.n)), self._excess_hazards(day)])
        total = parts.sum(axis=0)
        hazard = config.disengagement_hazard * self.accounts.frailty * total
        starting = np.flatnonzero(candidates & (u["onset"] < hazard))
        drifted = config.drift_from is not None and day >= config.drift_from
        low, high = config.drift_lead_days if drifted else config.lead_days
        lead = low + (u["lead"][starting] * (high - low + 1)).astype(np.int64)
        self.fade_start[starting] = day
        self.fade_end[starting] = day + lead
        self.recovers[starting] = u["recovery"][starting] < config.recovery_share
        bounds = np.cumsum(parts[:, starting], axis=0)
        self.fade_driver[starting] = np.minimum(
            (u["driver"][starting] * total[starting] >= bounds).sum(axis=0), len(DRIVERS) - 2
        )


def _pick(u: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    """Index of the share each uniform number ``u`` falls into."""
    return np.minimum(np.searchsorted(np.cumsum(shares), u, side="right"), len(shares) - 1)


def _day_of_month(dates: np.ndarray) -> np.ndarray:
    return (dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1


def _month_length(dates: np.ndarray) -> np.ndarray:
    month = dates.astype("datetime64[M]")
    return ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)


def simulate_behaviour(
    config: ChurnConfig, accounts: Accounts, rng: np.random.Generator
) -> Behaviour:
    """Live the warm-up and the world's days; events before day 0 are not recorded."""
    return _Life(config, accounts).live(rng)


@dataclass(frozen=True)
class Sessions:
    """Every viewing session in time order; position ``n`` is session ``s-<n>``."""

    day: np.ndarray
    second: np.ndarray
    account: np.ndarray
    centiminutes: np.ndarray
    device: np.ndarray

    @property
    def n(self) -> int:
        return len(self.day)


def generate_sessions(
    config: ChurnConfig,
    accounts: Accounts,
    behaviour: Behaviour,
    rngs: dict[str, np.random.Generator],
) -> Sessions:
    """Poisson sessions per account-day at the account's rate times its engagement that day.

    Each attribute comes from its own stream, drawn in day order, so a change from some day on
    leaves the sessions of the days before as they were.
    """
    n_days, n = behaviour.engagement.shape
    days = np.arange(n_days)
    weekday = (np.datetime64(config.start, "D") + days).astype(np.int64) + 3
    weekend = np.where(weekday % 7 >= 5, WEEKEND_FACTOR, 1.0)
    rate = accounts.sessions_per_day[None, :] * behaviour.engagement * weekend[:, None]
    counts = rngs["usage"].poisson(rate).ravel()
    day = np.repeat(np.repeat(days, n), counts)
    account = np.repeat(np.tile(np.arange(n), n_days), counts)
    times = rngs["session_times"].normal(SESSION_PEAK_S, SESSION_SPREAD_S, len(day))
    second = np.floor(times).astype(np.int64) % SECONDS_PER_DAY
    level = behaviour.engagement[day, account]
    minutes = accounts.minutes_per_session[account] * (0.5 + 0.5 * level)
    minutes *= _lognormal(rngs["session_minutes"], 1.0, MINUTES_SESSION_SIGMA, len(day))
    bounds = np.cumsum(accounts.device_shares, axis=1)[account]
    device = (rngs["session_devices"].random(len(day))[:, None] >= bounds).sum(axis=1)
    device = np.minimum(device, len(DEVICES) - 1)
    before_signup = (day == accounts.signup_day[account]) & (
        second < accounts.signup_second[account]
    )
    after_cancel = (day == behaviour.cancel_day[account]) & (
        second >= behaviour.cancel_second[account]
    )
    keep = np.flatnonzero(~before_signup & ~after_cancel)
    order = keep[np.lexsort((account[keep], second[keep], day[keep]))]
    return Sessions(
        day=day[order],
        second=second[order],
        account=account[order],
        centiminutes=np.rint(minutes[order] * 100).astype(np.int64),
        device=device[order],
    )
