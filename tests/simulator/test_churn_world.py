"""The churn world as a whole: determinism, its churn rate, the learnable signal, drift, and
its neighbour the fraud world."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from churn_files import hashes, landing_files, read_source, truth, world_json

from simulator import WorldConfig
from simulator import simulate as simulate_fraud
from simulator.churn import ChurnConfig, simulate

DRIFT_PAIR = {"n_accounts": 1500, "n_days": 70, "seed": 9}
DRIFT_FROM = 30


def _without_timing(home: Path) -> dict:
    world = world_json(home)
    del world["summary"]["elapsed_seconds"]
    return world


def test_same_config_gives_byte_identical_files(tmp_path, churn_faulty_world, churn_faulty_config):
    simulate(tmp_path, churn_faulty_config)
    assert hashes(tmp_path) == hashes(churn_faulty_world)
    assert _without_timing(tmp_path) == _without_timing(churn_faulty_world)
    assert world_json(tmp_path)["summary"]["elapsed_seconds"] > 0


def test_another_seed_gives_another_world(tmp_path, churn_world, churn_config):
    simulate(tmp_path, dataclasses.replace(churn_config, seed=churn_config.seed + 1))
    ours, theirs = hashes(tmp_path), hashes(churn_world)
    assert set(ours) == set(theirs)
    same = [name for name in ours if ours[name] == theirs[name]]
    # only header-only cancellation or ticket files (days without any) may coincide
    assert all(name.startswith(("landing/cancellations/", "landing/tickets/")) for name in same)


def test_world_json_records_the_config(churn_faulty_world, churn_faulty_config):
    world = world_json(churn_faulty_world)
    assert world["config"]["n_accounts"] == churn_faulty_config.n_accounts
    assert world["config"]["start"] == "2018-04-01"
    assert world["summary"]["drift_from_date"] == churn_faulty_config.day(35).isoformat()
    assert world["summary"]["price_increase_date"] == "2018-05-11"


def _churn_rate_from_files(home: Path, n_days: int, horizon: int = 30) -> float:
    """The mean share of the accounts active at the end of a day that cancel in ``horizon``."""
    folder = home / "landing" / "accounts"
    last = max(landing_files(home, "accounts"))
    accounts = pd.read_json(folder / last, lines=True, dtype=False)
    signup = pd.to_datetime(accounts.set_index("account_id")["signup_date"])
    cancelled = read_source(home, "cancellations").set_index("account_id")["cancelled_at"]
    cancel = pd.to_datetime(cancelled).dt.normalize().reindex(signup.index)
    start = (
        signup.min() if signup.min() > pd.Timestamp("2018-04-01") else pd.Timestamp("2018-04-01")
    )
    rates = []
    for offset in range(n_days - horizon):
        day = start + timedelta(days=offset)
        active = (signup <= day) & ~(cancel <= day)
        leaving = active & (cancel > day) & (cancel <= day + timedelta(days=horizon))
        rates.append(leaving.sum() / active.sum())
    return float(np.mean(rates))


def test_the_30_day_churn_rate_is_between_3_and_6_percent(churn_world, churn_config):
    rate = world_json(churn_world)["summary"]["churn_rate_30d"]
    assert 0.03 <= rate <= 0.06
    assert rate == pytest.approx(_churn_rate_from_files(churn_world, churn_config.n_days), abs=1e-6)


@pytest.fixture(scope="module")
def usage_by_day(churn_world: Path, churn_config: ChurnConfig) -> pd.DataFrame:
    """Sessions per account (rows) and day index (columns), from the usage files."""
    usage = read_source(churn_world, "usage")
    day = (pd.to_datetime(usage["file_date"]) - pd.Timestamp(churn_config.start)).dt.days
    counts = usage.groupby([usage["account_id"], day]).size().unstack(fill_value=0)
    return counts.reindex(columns=range(churn_config.n_days), fill_value=0)


def test_cancelling_accounts_use_the_service_less_in_the_weeks_before(
    churn_world, churn_config, usage_by_day
):
    """Sessions in the 2 weeks before a day, against the same account's 2 weeks a month before."""
    cancellations = read_source(churn_world, "cancellations")
    cancel_day = (
        pd.to_datetime(cancellations["file_date"]) - pd.Timestamp(churn_config.start)
    ).dt.days
    cancel_day.index = cancellations["account_id"]
    late = cancel_day[cancel_day >= 42]
    assert len(late) >= 30

    def trend(account: str, day: int) -> float:
        row = usage_by_day.loc[account].to_numpy()
        return (row[day - 14 : day].sum() + 1) / (row[day - 42 : day - 28].sum() + 1)

    leaving = np.median([trend(a, d) for a, d in late.items()])
    staying_ids = usage_by_day.index.difference(cancel_day.index)
    staying_ids = [a for a in staying_ids if usage_by_day.loc[a, :27].sum() > 0]
    staying = np.median([trend(a, churn_config.n_days - 1) for a in staying_ids])
    assert leaving < 0.6 * staying, (leaving, staying)


def _churn_within(days: pd.Series, cancel: pd.Series, horizon: int = 30) -> float:
    """Share of the (account, day) pairs in ``days`` whose account cancels within ``horizon``."""
    left = cancel.reindex(days.index)
    return float(((left > days) & (left <= days + horizon)).mean())


def test_failed_payments_and_cancellation_intent_tickets_raise_churn(churn_world, churn_config):
    start = pd.Timestamp(churn_config.start)
    cancellations = read_source(churn_world, "cancellations")
    cancel = (pd.to_datetime(cancellations["cancelled_at"]) - start).dt.days
    cancel.index = cancellations["account_id"]
    base = world_json(churn_world)["summary"]["churn_rate_30d"]
    billing = read_source(churn_world, "billing")
    failed = billing[billing["event_type"] == "payment_failed"].drop_duplicates("account_id")
    failed_day = (pd.to_datetime(failed["event_at"]) - start).dt.days
    failed_day.index = failed["account_id"]
    tickets = read_source(churn_world, "tickets")
    intent = tickets[tickets["category"] == "cancellation_intent"].drop_duplicates("account_id")
    intent_day = (pd.to_datetime(intent["opened_at"]) - start).dt.days
    intent_day.index = intent["account_id"]
    window = churn_config.n_days - 30
    assert _churn_within(failed_day[failed_day < window], cancel) > 2 * base
    assert _churn_within(intent_day[intent_day < window], cancel) > 4 * base


def test_usage_alone_is_a_weak_signal_some_churn_comes_without_warning(churn_world):
    drivers = world_json(churn_world)["summary"]["n_cancellations_by_driver"]
    total = sum(drivers.values())
    assert 0.05 < drivers["no_warning"] / total < 0.4
    assert drivers["organic"] < total, "every cancellation organic: the boosts do nothing"
    assert drivers["price_increase"] > 0 and drivers["failed_payment"] > 0
    assert drivers["competitor"] == 0, "a competitor without drift"


@pytest.fixture(scope="module")
def drift_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same world without and with drift from day 30."""
    calm, drifted = tmp_path_factory.mktemp("calm"), tmp_path_factory.mktemp("drifted")
    simulate(calm, ChurnConfig(**DRIFT_PAIR))
    simulate(drifted, ChurnConfig(**DRIFT_PAIR, drift_from=DRIFT_FROM))
    return calm, drifted


def test_drift_leaves_the_days_before_it_as_they_were(drift_pair):
    calm, drifted = (hashes(home / "landing") for home in drift_pair)
    assert set(calm) == set(drifted)
    first_drifted = ChurnConfig(**DRIFT_PAIR).day(DRIFT_FROM).isoformat()
    before = [n for n in calm if n.split("_")[-3][-10:] < first_drifted]
    after = [n for n in calm if n.split("_")[-3][-10:] >= first_drifted]
    assert len(before) == 5 * DRIFT_FROM
    assert all(calm[n] == drifted[n] for n in before)
    assert sum(calm[n] != drifted[n] for n in after) > len(after) / 2


def test_drift_makes_mobile_viewers_leave_sooner(drift_pair):
    calm, drifted = (truth(home) for home in drift_pair)
    start = pd.Timestamp(ChurnConfig(**DRIFT_PAIR).day(DRIFT_FROM))
    mobile = calm["main_device"] == "mobile"

    def leaving_after(record: pd.DataFrame) -> tuple[int, int]:
        """Cancellations from the drift day on: all, and of mobile viewers."""
        left = record["churn_date"].notna() & (pd.to_datetime(record["churn_date"]) >= start)
        return int(left.sum()), int((left & mobile).sum())

    (calm_all, calm_mobile), (drift_all, drift_mobile) = map(leaving_after, (calm, drifted))
    assert drift_mobile > 2 * calm_mobile
    assert drift_mobile / drift_all > 1.2 * calm_mobile / calm_all
    faded = drifted[drifted["disengaged_from"].notna()]
    lead = (pd.to_datetime(faded["churn_date"]) - pd.to_datetime(faded["disengaged_from"])).dt.days
    late_start = (pd.to_datetime(faded["disengaged_from"]) >= start) & (
        faded["churn_driver"] != "failed_payment"  # the dunning process keeps its own delay
    )
    assert lead[late_start].between(4, 12).all() and late_start.sum() > 10
    assert (drifted.loc[drifted["churn_driver"] == "competitor", "main_device"] == "mobile").all()


def test_a_churn_world_never_touches_the_fraud_world(tmp_path):
    fraud = WorldConfig(n_customers=50, n_terminals=100, n_days=5)
    simulate_fraud(fraud, tmp_path, progress=False, hold_from=3)
    before = hashes(tmp_path, skip=())
    churn = ChurnConfig(n_accounts=60, n_days=12)
    simulate(tmp_path, churn, hold_from=churn.day(8))
    with pytest.raises(FileExistsError, match="churn world"):
        simulate(tmp_path, churn)
    simulate(tmp_path, dataclasses.replace(churn, seed=1, faults=True), overwrite=True)
    after = hashes(tmp_path, skip=())
    churn_owned = ("landing/accounts/", "landing/usage/", "landing/billing/", "landing/tickets/")
    churn_owned += ("landing/cancellations/", "simulator/churn/")
    assert {k: v for k, v in after.items() if not k.startswith(churn_owned)} == before
    assert not (tmp_path / "simulator" / "churn" / "outbox").exists()
    # and the fraud world, simulated again, leaves the churn world alone
    simulate_fraud(fraud, tmp_path, progress=False, overwrite=True)
    assert {k: v for k, v in hashes(tmp_path, skip=()).items() if k.startswith(churn_owned)} == {
        k: v for k, v in after.items() if k.startswith(churn_owned)
    }


def test_overwriting_replaces_only_the_churn_folders(tmp_path):
    config = ChurnConfig(n_accounts=40, n_days=4)
    simulate(tmp_path, config)
    stray = tmp_path / "landing" / "usage" / "stray.txt"
    stray.write_text("left over")
    neighbour = tmp_path / "landing" / "somebody_else" / "keep.txt"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("not ours")
    summary = simulate(tmp_path, config, overwrite=True)
    assert not stray.exists() and neighbour.read_text() == "not ours"
    assert summary["n_days"] == 4 and summary["churn_rate_30d"] is None
