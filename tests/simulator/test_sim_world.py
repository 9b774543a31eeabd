"""The generative process itself (arrays only, no files): volumes, fraud band, drift."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import WorldConfig
from simulator.luhn import check_digit, is_valid
from simulator.world import (
    CARD_TESTING_WINDOW_S,
    SCENARIO_CARD_TESTING,
    TX_TIME_MEAN_S,
    TX_TIME_STD_S,
    World,
    daily_counts,
    generate_world,
    random_streams,
)

BAND = {"n_customers": 1000, "n_terminals": 2000, "n_days": 90}
SEEDS = range(5)
# share of normal(12:00, 20000 s) times that fall inside the day
P_INSIDE_DAY = math.erf(TX_TIME_MEAN_S / TX_TIME_STD_S / math.sqrt(2))


def _world(config: WorldConfig) -> World:
    return generate_world(config, random_streams(config.seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_fraud_rate_and_frauds_per_day_stay_in_the_handbook_band(seed: int):
    config = WorldConfig(**BAND, seed=seed)
    tx = _world(config).transactions
    assert 0.005 <= tx.is_fraud.mean() <= 0.013
    # the handbook world has about 80 frauds a day per 5,000 customers
    frauds_per_day_at_reference_size = tx.is_fraud.sum() / config.n_days * 5000 / config.n_customers
    assert 40 <= frauds_per_day_at_reference_size <= 130
    assert set(np.unique(tx.scenario)) <= {0, 1, 2, 3}


def test_transactions_per_day_match_the_customer_profiles():
    config = WorldConfig(**BAND)
    world = _world(config)
    customers, tx = world.customers, world.transactions
    days = np.arange(config.n_days)
    has_terminals = customers.n_usable_terminals > 0
    active = (days[:, None] >= customers.signup_day[None, :]) & has_terminals
    expected = (active * customers.mean_tx_per_day).sum() * P_INSIDE_DAY
    assert tx.n == pytest.approx(expected, rel=0.02)
    # and roughly the handbook's 2 transactions per customer and day
    per_day = tx.n / config.n_days
    assert per_day == pytest.approx(2 * P_INSIDE_DAY * config.n_customers, rel=0.1)
    assert np.bincount(tx.day, minlength=config.n_days).min() > 0.8 * per_day


def test_transactions_are_in_time_order_on_whole_seconds():
    tx = _world(WorldConfig(**BAND)).transactions
    moments = tx.day * 86400 + tx.second
    assert (np.diff(moments) >= 0).all()
    assert tx.second.min() >= 0 and tx.second.max() < 86400
    assert tx.cents.min() >= 0


def test_customers_pay_only_at_terminals_within_the_radius():
    config = WorldConfig(**BAND)
    world = _world(config)
    customers, terminals, tx = world.customers, world.terminals, world.transactions
    distance = np.hypot(
        customers.x[tx.customer] - terminals.x[tx.terminal],
        customers.y[tx.customer] - terminals.y[tx.terminal],
    )
    assert distance.max() < config.radius


def test_amounts_above_the_threshold_are_fraud():
    tx = _world(WorldConfig(**BAND)).transactions
    assert tx.is_fraud[tx.cents > 22000].all()


def test_daily_counts_are_exact_at_whole_values_and_stochastic_in_between():
    rng = np.random.default_rng(0)
    assert (daily_counts(rng, 2.0, 1000) == 2).all()
    fractional = daily_counts(rng, 0.4, 10000)
    assert set(np.unique(fractional)) == {0, 1}
    assert fractional.mean() == pytest.approx(0.4, abs=0.03)


def test_drift_leaves_the_days_before_it_unchanged():
    base = _world(WorldConfig(**BAND)).transactions
    drifted = _world(WorldConfig(**BAND, drift_from=45)).transactions
    before_base, before_drift = base.day < 45, drifted.day < 45
    for name in (
        "day",
        "second",
        "customer",
        "terminal",
        "cents",
        "scenario",
        "report_day",
        "report_second",
    ):
        assert np.array_equal(
            getattr(base, name)[before_base], getattr(drifted, name)[before_drift]
        ), name


def test_drift_adds_card_testing_bursts_and_a_spending_shift():
    config = WorldConfig(**BAND, drift_from=45)
    world = _world(config)
    customers, tx = world.customers, world.transactions
    testing = tx.scenario == SCENARIO_CARD_TESTING
    assert testing.any() and (tx.day[testing] >= 45).all()
    assert tx.cents[testing].min() >= 50 and tx.cents[testing].max() <= 500
    for customer, day in set(zip(tx.customer[testing], tx.day[testing], strict=True)):
        burst = testing & (tx.customer == customer) & (tx.day == day)
        assert 5 <= burst.sum() <= 15
        assert np.ptp(tx.second[burst]) < CARD_TESTING_WINDOW_S
        assert not np.isin(tx.terminal[burst], customers.usable_terminals(customer)).any()

    genuine = tx.scenario == 0
    ratio = tx.cents[genuine & (tx.day >= 45)].mean() / tx.cents[genuine & (tx.day < 45)].mean()
    assert ratio == pytest.approx(config.spending_shift, abs=0.08)


def test_luhn():
    assert check_digit("7992739871") == "3"
    assert is_valid("79927398713")
    assert not is_valid("79927398714")
    assert not is_valid("7992739871a")
