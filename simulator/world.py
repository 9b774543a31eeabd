"""The generative process of the Fraud Detection Handbook (Le Borgne et al.), vectorized.

Customers and terminals live on a 100 x 100 square; a customer pays at the terminals within
``radius``. Transactions are drawn for all days at once; the three fraud scenarios of the
handbook are applied in its order (1, 2, then 3), and with drift a fourth one (card testing).
Amounts are kept as integer cents so that rounding never drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import REFERENCE_CUSTOMERS, REFERENCE_TERMINALS, SECONDS_PER_DAY, WorldConfig

GRID_SIZE = 100.0
TX_TIME_MEAN_S = SECONDS_PER_DAY / 2
TX_TIME_STD_S = 20000.0
MIN_MEAN_AMOUNT, MAX_MEAN_AMOUNT = 5.0, 100.0
MAX_MEAN_TX_PER_DAY = 4.0
PAST_SIGNUP_MAX_DAYS = 3 * 365
"""Customers who signed up before the start did so up to three years earlier."""
CARD_TESTING_WINDOW_S = 3600
CARD_TESTING_MIN_CENTS, CARD_TESTING_MAX_CENTS = 50, 500

STREAMS = ("terminals", "customers", "transactions", "frauds", "drift", "reports", "crm", "faults")
"""Independent random streams: turning faults or drift on leaves the rest of the world as is."""

NO_FRAUD, SCENARIO_AMOUNT, SCENARIO_TERMINAL, SCENARIO_CUSTOMER, SCENARIO_CARD_TESTING = range(5)


@dataclass(frozen=True)
class Customers:
    """Customer profiles, indexed by customer number (which is also signup order)."""

    x: np.ndarray
    y: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray
    signup_day: np.ndarray
    """Day index of signup; negative for customers who signed up before the start."""
    terminal_offsets: np.ndarray
    """Customer i uses ``terminal_index[terminal_offsets[i]:terminal_offsets[i + 1]]``."""
    terminal_index: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def n_usable_terminals(self) -> np.ndarray:
        return np.diff(self.terminal_offsets)

    def usable_terminals(self, customer: int) -> np.ndarray:
        first, stop = self.terminal_offsets[customer], self.terminal_offsets[customer + 1]
        return self.terminal_index[first:stop]


@dataclass(frozen=True)
class Terminals:
    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Transactions:
    """All transactions in time order; position ``n`` is transaction ``t-<n>``."""

    day: np.ndarray
    second: np.ndarray
    """Second of the day, 0..86399."""
    customer: np.ndarray
    terminal: np.ndarray
    cents: np.ndarray
    scenario: np.ndarray
    """0 for a genuine transaction, else the fraud scenario (1..4)."""
    report_day: np.ndarray
    """Day index the fraud is reported (may lie after the world), -1 for genuine ones."""
    report_second: np.ndarray

    @property
    def n(self) -> int:
        return len(self.day)

    @property
    def is_fraud(self) -> np.ndarray:
        return self.scenario != NO_FRAUD


def daily_counts(rng: np.random.Generator, per_day: float, n_days: int) -> np.ndarray:
    """``per_day`` rounded stochastically for each day (0.4 becomes 1 with probability 0.4)."""
    whole = int(np.floor(per_day))
    return whole + (rng.random(n_days) < per_day - whole).astype(np.int64)


def generate_terminals(config: WorldConfig, rng: np.random.Generator) -> Terminals:
    locations = rng.uniform(0, GRID_SIZE, size=(config.n_terminals, 2))
    return Terminals(x=locations[:, 0], y=locations[:, 1])


def _usable_terminals(
    cx: np.ndarray, cy: np.ndarray, terminals: Terminals, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the terminals within ``radius`` of each customer, by blocks of customers."""
    block = max(1, 4_000_000 // terminals.n)
    counts, indices = [], []
    for first in range(0, len(cx), block):
        dx = cx[first : first + block, None] - terminals.x[None, :]
        dy = cy[first : first + block, None] - terminals.y[None, :]
        rows, cols = np.nonzero(dx * dx + dy * dy < radius * radius)
        counts.append(np.bincount(rows, minlength=dx.shape[0]))
        indices.append(cols)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return offsets, np.concatenate(indices).astype(np.int64)


def generate_customers(
    config: WorldConfig, terminals: Terminals, rng: np.random.Generator
) -> Customers:
    n = config.n_customers
    locations = rng.uniform(0, GRID_SIZE, size=(n, 2))
    mean_amount = rng.uniform(MIN_MEAN_AMOUNT, MAX_MEAN_AMOUNT, n)
    mean_tx_per_day = rng.uniform(0, MAX_MEAN_TX_PER_DAY, n)
    n_new = round(config.signup_share * n)
    signup_day = np.sort(
        np.concatenate(
            [
                -rng.integers(1, PAST_SIGNUP_MAX_DAYS + 1, n - n_new),
                rng.integers(0, config.n_days, n_new),
            ]
        )
    )
    offsets, index = _usable_terminals(locations[:, 0], locations[:, 1], terminals, config.radius)
    return Customers(
        x=locations[:, 0],
        y=locations[:, 1],
        mean_amount=mean_amount,
        std_amount=mean_amount / 2,
        mean_tx_per_day=mean_tx_per_day,
        signup_day=signup_day,
        terminal_offsets=offsets,
        terminal_index=index,
    )


def _spending_factor(config: WorldConfig, day: np.ndarray) -> np.ndarray:
    if config.drift_from is None:
        return np.ones(len(day))
    return np.where(day >= config.drift_from, config.spending_shift, 1.0)


def _genuine_transactions(
    config: WorldConfig, customers: Customers, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Handbook step: Poisson counts per customer-day, normal times and amounts."""
    n_days, n_customers = config.n_days, customers.n
    counts = rng.poisson(customers.mean_tx_per_day, size=(n_days, n_customers))
    days = np.arange(n_days)
    has_terminals = customers.n_usable_terminals > 0
    active = (days[:, None] >= customers.signup_day[None, :]) & has_terminals[None, :]
    counts = np.where(active, counts, 0).ravel()
    day = np.repeat(np.repeat(days, n_customers), counts)
    customer = np.repeat(np.tile(np.arange(n_customers), n_days), counts)

    second = np.floor(rng.normal(TX_TIME_MEAN_S, TX_TIME_STD_S, len(day))).astype(np.int64)
    inside = (second >= 0) & (second < SECONDS_PER_DAY)
    day, customer, second = day[inside], customer[inside], second[inside]

    factor = _spending_factor(config, day)
    mean = customers.mean_amount[customer] * factor
    amount = mean + customers.std_amount[customer] * factor * rng.standard_normal(len(day))
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    cents = np.rint(amount * 100).astype(np.int64)

    offsets = customers.terminal_offsets[customer]
    pick = rng.integers(0, customers.n_usable_terminals[customer])
    terminal = customers.terminal_index[offsets + pick]

    order = np.argsort(day * SECONDS_PER_DAY + second, kind="stable")
    return {
        "day": day[order],
        "second": second[order],
        "customer": customer[order],
        "terminal": terminal[order],
        "cents": cents[order],
    }


def _apply_handbook_frauds(
    config: WorldConfig,
    tx: dict[str, np.ndarray],
    n_customers: int,
    n_terminals: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Scenarios 1, 2 and 3 in the handbook's order; scales ``tx['cents']`` in place."""
    n_days = config.n_days
    scenario = np.zeros(len(tx["day"]), dtype=np.int8)
    scenario[tx["cents"] > round(config.fraud_amount_threshold * 100)] = SCENARIO_AMOUNT

    compromised = np.zeros((n_days, n_terminals), dtype=bool)
    per_day = config.compromised_terminals_per_day * n_terminals / REFERENCE_TERMINALS
    for day, k in enumerate(daily_counts(rng, per_day, n_days)):
        chosen = rng.choice(n_terminals, size=min(k, n_terminals), replace=False)
        compromised[day : day + config.terminal_compromise_days, chosen] = True
    scenario[compromised[tx["day"], tx["terminal"]]] = SCENARIO_TERMINAL

    by_customer = np.argsort(tx["customer"], kind="stable")
    first = np.searchsorted(tx["customer"][by_customer], np.arange(n_customers + 1))
    per_day = config.compromised_customers_per_day * n_customers / REFERENCE_CUSTOMERS
    for day, k in enumerate(daily_counts(rng, per_day, n_days)):
        for customer in rng.choice(n_customers, size=min(k, n_customers), replace=False):
            own = by_customer[first[customer] : first[customer + 1]]
            in_window = own[
                (tx["day"][own] >= day) & (tx["day"][own] < day + config.customer_compromise_days)
            ]
            n_fraud = int(len(in_window) * config.customer_fraud_share)
            chosen = rng.choice(in_window, size=n_fraud, replace=False)
            tx["cents"][chosen] *= config.customer_fraud_multiplier
            scenario[chosen] = SCENARIO_CUSTOMER
    return scenario


def _card_testing(
    config: WorldConfig,
    customers: Customers,
    n_terminals: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Drift scenario 4: stolen cards tested with bursts of small payments at foreign terminals."""
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("day", "second", "customer", "terminal", "cents")
    }
    if config.drift_from is None:
        return {k: np.zeros(0, dtype=np.int64) for k in parts}
    days = np.arange(config.drift_from, config.n_days)
    per_day = config.card_testing_cards_per_day * customers.n / REFERENCE_CUSTOMERS
    for day, k in zip(days, daily_counts(rng, per_day, len(days)), strict=True):
        eligible = np.flatnonzero(customers.signup_day <= day)
        for customer in rng.choice(eligible, size=min(k, len(eligible)), replace=False):
            size = int(
                rng.integers(config.card_testing_burst_min, config.card_testing_burst_max + 1)
            )
            begin = rng.integers(0, SECONDS_PER_DAY - CARD_TESTING_WINDOW_S)
            terminal = rng.integers(0, n_terminals, size)
            usual = customers.usable_terminals(customer)
            if len(usual) < n_terminals:
                while (clash := np.isin(terminal, usual)).any():
                    terminal[clash] = rng.integers(0, n_terminals, int(clash.sum()))
            parts["day"].append(np.full(size, day))
            parts["second"].append(begin + rng.integers(0, CARD_TESTING_WINDOW_S, size))
            parts["customer"].append(np.full(size, customer))
            parts["terminal"].append(terminal)
            parts["cents"].append(
                rng.integers(CARD_TESTING_MIN_CENTS, CARD_TESTING_MAX_CENTS + 1, size)
            )
    return {
        k: np.concatenate(v).astype(np.int64) if v else np.zeros(0, dtype=np.int64)
        for k, v in parts.items()
    }


def generate_transactions(
    config: WorldConfig,
    customers: Customers,
    terminals: Terminals,
    rngs: dict[str, np.random.Generator],
) -> Transactions:
    """All transactions of the world, labelled, with their report day and second.

    ``rngs`` holds independent streams ``transactions``, ``frauds``, ``drift`` and ``reports``,
    so that turning drift on leaves the days before ``drift_from`` unchanged.
    """
    tx = _genuine_transactions(config, customers, rngs["transactions"])
    scenario = _apply_handbook_frauds(config, tx, customers.n, terminals.n, rngs["frauds"])
    testing = _card_testing(config, customers, terminals.n, rngs["drift"])
    merged = {k: np.concatenate([tx[k], testing[k]]) for k in tx}
    scenario = np.concatenate(
        [scenario, np.full(len(testing["day"]), SCENARIO_CARD_TESTING, dtype=np.int8)]
    )
    order = np.argsort(merged["day"] * SECONDS_PER_DAY + merged["second"], kind="stable")
    merged = {k: v[order] for k, v in merged.items()}
    scenario = scenario[order]

    fraud = np.flatnonzero(scenario != NO_FRAUD)
    rng = rngs["reports"]
    report_day = np.full(len(scenario), -1, dtype=np.int64)
    report_second = np.full(len(scenario), -1, dtype=np.int64)
    # one (delay, second) pair per fraud in time order: earlier frauds never depend on later ones
    draws = rng.integers(
        [1, 0], [config.max_report_delay_days + 1, SECONDS_PER_DAY], size=(len(fraud), 2)
    )
    report_day[fraud] = merged["day"][fraud] + draws[:, 0]
    report_second[fraud] = draws[:, 1]
    return Transactions(
        day=merged["day"],
        second=merged["second"],
        customer=merged["customer"],
        terminal=merged["terminal"],
        cents=merged["cents"],
        scenario=scenario,
        report_day=report_day,
        report_second=report_second,
    )


@dataclass(frozen=True)
class World:
    terminals: Terminals
    customers: Customers
    transactions: Transactions


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per name in :data:`STREAMS`, all derived from ``seed``."""
    seeds = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(STREAMS, seeds, strict=True)}


def generate_world(config: WorldConfig, rngs: dict[str, np.random.Generator]) -> World:
    """Terminals, customers and labelled transactions (no PII, no files)."""
    terminals = generate_terminals(config, rngs["terminals"])
    customers = generate_customers(config, terminals, rngs["customers"])
    return World(terminals, customers, generate_transactions(config, customers, terminals, rngs))
