"""The churn world's five sources without faults: names, delivery times, every value, ids."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from churn_files import (
    ACCOUNT_ID,
    ACCOUNT_KEYS,
    AMOUNT,
    SOURCES,
    delivered_at,
    landing_files,
    parse_timestamp,
    read_accounts,
    read_source,
    truth,
    usage_row_problem,
    world_json,
)

from simulator.churn import ChurnConfig
from simulator.iban import is_valid as is_valid_iban

DELIVERED_AFTER = {
    "cancellations": timedelta(days=1, minutes=30),
    "tickets": timedelta(days=1, minutes=45),
    "usage": timedelta(days=1, hours=1),
    "accounts": timedelta(days=1, hours=2),
    "billing": timedelta(days=1, hours=3),
}


@pytest.fixture(scope="module")
def snapshots(churn_world: Path) -> dict[date, list[dict[str, str]]]:
    folder = churn_world / "landing" / "accounts"
    return {
        date.fromisoformat(match["date"]): read_accounts(folder / name)
        for name, match in landing_files(churn_world, "accounts").items()
    }


@pytest.fixture(scope="module")
def events(churn_world: Path) -> dict[str, pd.DataFrame]:
    """The CSV sources, each with ``account_id``, ``at`` (the row's moment) and ``file_date``."""
    moments = {
        "usage": "started_at",
        "billing": "event_at",
        "tickets": "opened_at",
        "cancellations": "cancelled_at",
    }
    frames = {}
    for source, column in moments.items():
        frame = read_source(churn_world, source)
        frame["at"] = pd.to_datetime(frame[column], format="%Y-%m-%d %H:%M:%S")
        frames[source] = frame
    return frames


@pytest.mark.parametrize("source", SOURCES)
def test_one_file_per_day_delivered_at_the_normal_time(churn_world, churn_config, source):
    files = landing_files(churn_world, source)
    days = [churn_config.day(i).isoformat() for i in range(churn_config.n_days)]
    assert [m["date"] for m in files.values()] == days
    for match in files.values():
        business = datetime.combine(date.fromisoformat(match["date"]), datetime.min.time())
        assert delivered_at(match) == business + DELIVERED_AFTER[source]


def test_no_faults_and_no_manifest_without_faults(churn_world):
    assert not (churn_world / "simulator" / "churn" / "faults.json").exists()
    summary = world_json(churn_world)["summary"]
    assert summary["n_faults_by_kind"] == dict.fromkeys(summary["n_faults_by_kind"], 0)
    assert not [p for p in churn_world.rglob("*") if p.name.startswith(".")]


def test_every_usage_row_follows_the_contract(churn_world, events):
    usage = events["usage"]
    problems = [
        usage_row_problem(list(row[:5]), date.fromisoformat(row[5]))
        for row in usage.itertuples(index=False)
    ]
    assert set(problems) == {None}
    assert usage["session_id"].is_unique
    assert (usage["minutes"].astype(float) >= 0).all()
    assert set(usage["device"]) == {"tv", "mobile", "web"}
    summary = world_json(churn_world)["summary"]
    assert summary["rows"]["usage"] == len(usage)
    active = len(
        pd.DataFrame(read_accounts(next((churn_world / "landing" / "accounts").iterdir())))
    )
    assert len(usage) / summary["n_days"] / active > 1, "usage is not the big source"


def test_billing_tickets_and_cancellations_follow_the_contract(churn_config, events):
    for source, column in (("billing", "event_at"), ("tickets", "opened_at")):
        frame = events[source]
        assert (frame[column].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")).all()
        assert (frame["at"].dt.date.astype(str) == frame["file_date"]).all(), source
    billing = events["billing"]
    assert billing["billing_event_id"].is_unique
    assert set(billing["event_type"]) == {
        "payment",
        "payment_failed",
        "price_change",
        "plan_change",
    }
    assert billing["amount"].str.fullmatch(AMOUNT.pattern).all()
    prices = {f"{p:.2f}" for p in (*churn_config.plan_prices, churn_config.price_increase_to)}
    assert set(billing["amount"]) <= prices
    raised = billing[billing["event_type"] == "price_change"]
    assert set(raised["amount"]) == {f"{churn_config.price_increase_to:.2f}"}
    assert set(raised["file_date"]) == {
        churn_config.day(churn_config.price_increase_day).isoformat()
    }
    tickets = events["tickets"]
    assert tickets["ticket_id"].is_unique
    assert set(tickets["category"]) == {"billing", "technical", "content", "cancellation_intent"}
    cancellations = events["cancellations"]
    assert cancellations["account_id"].is_unique, "an account cancelled twice"
    assert set(cancellations["channel"]) == {"web", "phone", "app"}
    assert (cancellations["at"].dt.date.astype(str) == cancellations["file_date"]).all()


def test_accounts_snapshots_hold_every_signed_up_account_with_contract_fields(
    snapshots, churn_config
):
    sizes = []
    prices = {f"{p:.2f}" for p in (*churn_config.plan_prices, churn_config.price_increase_to)}
    for snapshot_date, accounts in snapshots.items():
        sizes.append(len(accounts))
        for account in accounts:
            assert list(account) == ACCOUNT_KEYS
            assert all(isinstance(v, str) and v for v in account.values())
            assert ACCOUNT_ID.fullmatch(account["account_id"])
            assert is_valid_iban(account["iban"]) and len(account["iban"]) == 22
            assert account["iban"].startswith("DE")
            assert account["plan"] in ("basic", "standard", "premium")
            assert account["monthly_price"] in prices
            assert date.fromisoformat(account["signup_date"]) <= snapshot_date
            assert parse_timestamp(account["updated_at"]).date() <= snapshot_date
            assert "@" in account["email"] and "\n" not in account["address"]
        ids = [a["account_id"] for a in accounts]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    last = snapshots[max(snapshots)]
    assert len({a["email"] for a in last}) == len({a["iban"] for a in last}) == len(last)


def test_an_invalid_iban_is_refused_by_the_check():
    assert is_valid_iban("DE89370400440532013000")
    assert not is_valid_iban("DE88370400440532013000")
    assert not is_valid_iban("DE8937040044053201300X")


def test_accounts_change_plan_price_and_address_with_updated_at(snapshots, events):
    first, last = snapshots[min(snapshots)], snapshots[max(snapshots)]
    before = {a["account_id"]: a for a in first}
    changed = {
        field: [
            a
            for a in last
            if a["account_id"] in before and a[field] != before[a["account_id"]][field]
        ]
        for field in ("plan", "monthly_price", "address")
    }
    assert all(changed.values()), {k: len(v) for k, v in changed.items()}
    for account in (a for accounts in changed.values() for a in accounts):
        assert account["updated_at"] > before[account["account_id"]]["updated_at"]
        for field in ("name", "email", "iban", "signup_date"):
            assert account[field] == before[account["account_id"]][field]
    # the monthly price is the one the last price or plan change set
    billing = events["billing"]
    priced = billing[billing["event_type"].isin(["price_change", "plan_change"])]
    last_price = priced.groupby("account_id")["amount"].last()
    by_id = {a["account_id"]: a for a in last}
    assert len(last_price) > 0
    assert all(by_id[i]["monthly_price"] == amount for i, amount in last_price.items())


def test_every_account_in_the_sources_is_known_in_that_days_snapshot(snapshots, events):
    for source, frame in events.items():
        for file_date, rows in frame.groupby("file_date"):
            known = {a["account_id"] for a in snapshots[date.fromisoformat(file_date)]}
            assert set(rows["account_id"]) <= known, (source, file_date)


def test_no_activity_before_signup_or_after_cancellation(snapshots, events):
    last = pd.DataFrame(snapshots[max(snapshots)]).set_index("account_id")
    cancelled = events["cancellations"].set_index("account_id")["at"]
    assert set(cancelled.index) <= set(last.index), "a cancelled account left the snapshot"
    for source in ("usage", "billing", "tickets"):
        frame = events[source]
        end = frame["account_id"].map(cancelled)
        assert not (frame["at"] >= end).any(), f"{source} after a cancellation"
        signup = pd.to_datetime(frame["account_id"].map(last["signup_date"]))
        assert (frame["at"] >= signup).all(), f"{source} before the signup date"


def test_accounts_are_billed_monthly_on_their_signup_day(churn_config, snapshots, events):
    billing = events["billing"]
    paid = billing[billing["event_type"].isin(["payment", "payment_failed"])]
    signup = pd.DataFrame(snapshots[max(snapshots)]).set_index("account_id")["signup_date"]
    anchor = pd.to_datetime(paid["account_id"].map(signup)).dt.day
    on_anchor = (paid["at"].dt.day == anchor) | (
        (anchor > paid["at"].dt.days_in_month) & (paid["at"].dt.day == paid["at"].dt.days_in_month)
    )
    regular = paid[on_anchor]
    assert on_anchor.mean() > 0.9
    # every account alive for a whole month is billed once on its anchor day of that month
    monthly = regular.groupby(["account_id", regular["at"].dt.to_period("M")]).size()
    assert (monthly == 1).all()
    # the rest are retries, a few days after a failed payment of the same account (in the
    # first days, maybe after one before the world)
    first_days = pd.Timestamp(churn_config.day(churn_config.retry_after_days * 2))
    failed = (
        billing[billing["event_type"] == "payment_failed"].groupby("account_id")["at"].apply(list)
    )
    retries = paid[~on_anchor & (paid["at"] >= first_days)]
    assert len(retries) > 0
    for row in retries.itertuples():
        gaps = [(row.at.normalize() - f.normalize()).days for f in failed.get(row.account_id, [])]
        assert churn_config.retry_after_days in gaps, row


def test_truth_matches_the_cancellations(churn_world, events):
    record = truth(churn_world).set_index("account_id")
    cancellations = events["cancellations"].set_index("account_id")
    churned = record[record["churn_date"].notna()]
    assert set(churned.index) == set(cancellations.index)
    assert (churned["cancelled_at"] == cancellations.loc[churned.index, "at"]).all()
    assert (
        churned["churn_driver"].notna().all()
        and record.loc[record["churn_date"].isna(), "churn_driver"].isna().all()
    )
    faded = churned[churned["churn_driver"] != "no_warning"]
    assert faded["disengaged_from"].notna().all()
    lead = (pd.to_datetime(faded["churn_date"]) - pd.to_datetime(faded["disengaged_from"])).dt.days
    dunned = faded["churn_driver"] == "failed_payment"
    assert lead[~dunned].between(14, 42).all()
    assert lead[dunned].between(2, 42).all() and (lead[dunned] <= 7).any()
    assert churned.loc[churned["churn_driver"] == "no_warning", "disengaged_from"].isna().all()
    summary = world_json(churn_world)["summary"]
    assert summary["rows"]["cancellations"] == len(cancellations)
    assert sum(summary["n_cancellations_by_driver"].values()) == len(cancellations)


def test_config_is_validated():
    for bad in (
        {"n_days": 60, "drift_from": 60},
        {"n_accounts": 0},
        {"price_increase_plan": "gold"},
        {"plan_shares": (0.5, 0.5, 0.5)},
        {"lead_days": (10, 5)},
        {"recovery_share": 1.5},
    ):
        with pytest.raises(ValueError):
            ChurnConfig(**bad)
