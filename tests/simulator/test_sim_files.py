"""The files of a world without faults: names, formats, PII, signups, reports, the record."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sim_files import (
    delivered_at,
    faults_json,
    is_pan,
    landing_files,
    read_customers,
    read_reports,
    read_transactions,
    truth,
    world_json,
)

from simulator import WorldConfig, simulate

SOURCES = {
    "transactions": timedelta(days=1, hours=1),
    "customers": timedelta(days=1, hours=2),
    "fraud_reports": timedelta(days=1, minutes=30),
}


def _days(config: WorldConfig) -> list[date]:
    return [config.start + timedelta(days=i) for i in range(config.n_days)]


@pytest.fixture(scope="module")
def transactions(clean_world: Path) -> pd.DataFrame:
    folder = clean_world / "landing" / "transactions"
    frames = [
        read_transactions(folder / name) for name in landing_files(clean_world, "transactions")
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def snapshots(clean_world: Path) -> dict[date, list[dict[str, str]]]:
    folder = clean_world / "landing" / "customers"
    return {
        date.fromisoformat(match["date"]): read_customers(folder / name)
        for name, match in landing_files(clean_world, "customers").items()
    }


@pytest.fixture(scope="module")
def reports(clean_world: Path) -> pd.DataFrame:
    folder = clean_world / "landing" / "fraud_reports"
    frames = []
    for name, match in landing_files(clean_world, "fraud_reports").items():
        frame = read_reports(folder / name)
        frame["file_date"] = match["date"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("source", SOURCES)
def test_one_file_per_day_delivered_at_the_normal_time(clean_world, clean_config, source):
    files = landing_files(clean_world, source)
    assert [m["date"] for m in files.values()] == [d.isoformat() for d in _days(clean_config)]
    for match in files.values():
        business = datetime.combine(date.fromisoformat(match["date"]), datetime.min.time())
        assert delivered_at(match) == business + SOURCES[source]


def test_no_temporary_files_are_left_behind(clean_world):
    assert not [p for p in clean_world.rglob("*") if p.name.startswith(".")]


def test_gzip_headers_carry_no_time_and_no_file_name(clean_world):
    path = next((clean_world / "landing" / "transactions").iterdir())
    header = path.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b"
    assert header[3] & 0x08 == 0, "FNAME flag set"
    assert header[4:8] == b"\0\0\0\0", "mtime is not 0"


def test_every_transaction_file_parses_and_matches_the_truth(clean_world, transactions):
    assert faults_json(clean_world) == []
    record = truth(clean_world)
    assert transactions["transaction_id"].is_unique
    assert transactions["transaction_id"].tolist() == record["transaction_id"].tolist()
    assert transactions["terminal_id"].tolist() == record["terminal_id"].tolist()
    assert (transactions["amount"].astype(float) == record["amount"]).all()
    assert (pd.to_datetime(transactions["tx_datetime"]) == record["tx_datetime"]).all()
    summary = world_json(clean_world)["summary"]
    assert summary["n_transactions"] == len(record)
    assert summary["n_frauds"] == record["is_fraud"].sum()
    assert summary["fraud_rate"] == pytest.approx(record["is_fraud"].mean(), abs=1e-6)
    assert 0.003 <= summary["fraud_rate"] <= 0.013
    assert sum(summary["n_frauds_by_scenario"].values()) == summary["n_frauds"]
    assert summary["n_faults_by_kind"] == dict.fromkeys(summary["n_faults_by_kind"], 0)


def test_truth_table_has_the_contract_columns(clean_world):
    record = truth(clean_world)
    assert list(record.columns) == [
        "transaction_id",
        "tx_datetime",
        "customer_id",
        "terminal_id",
        "amount",
        "is_fraud",
        "fraud_scenario",
        "report_date",
        "reported_at",
    ]
    assert (record["is_fraud"] == (record["fraud_scenario"] > 0)).all()
    assert record.loc[~record["is_fraud"], ["report_date", "reported_at"]].isna().all().all()
    assert record.loc[record["is_fraud"], ["report_date", "reported_at"]].notna().all().all()


def test_card_numbers_are_unique_luhn_pans(snapshots):
    last = snapshots[max(snapshots)]
    cards = [c["card_number"] for c in last]
    assert all(is_pan(card) for card in cards)
    assert len(set(cards)) == len(cards)
    assert len({c["customer_id"] for c in last}) == len(last)


def test_every_transaction_card_belongs_to_a_customer_known_that_day(
    clean_world, transactions, snapshots
):
    record = truth(clean_world)
    day = pd.to_datetime(transactions["tx_datetime"]).dt.date
    for snapshot_date, customers in snapshots.items():
        known = {c["card_number"]: c["customer_id"] for c in customers}
        today = transactions[day == snapshot_date]
        owners = today["card_number"].map(known)
        assert owners.notna().all(), snapshot_date
        assert owners.tolist() == record.loc[today.index, "customer_id"].tolist()


def test_customers_make_no_transaction_before_signing_up(clean_world, snapshots):
    last = pd.DataFrame(snapshots[max(snapshots)])
    signup = pd.to_datetime(last.set_index("customer_id")["signup_date"])
    start = pd.Timestamp(min(snapshots))
    new = signup[signup >= start]
    assert len(new) == round(0.05 * len(last))
    record = truth(clean_world)
    first_payment = record.groupby("customer_id")["tx_datetime"].min()
    assert (first_payment.dt.normalize() >= signup.reindex(first_payment.index)).all()
    assert first_payment.reindex(new.index).notna().any(), "no new customer ever paid"


def test_snapshots_hold_every_signed_up_customer_with_contract_fields(snapshots):
    fields = [
        "customer_id",
        "name",
        "email",
        "phone",
        "address",
        "date_of_birth",
        "card_number",
        "signup_date",
        "updated_at",
    ]
    sizes = []
    for snapshot_date, customers in snapshots.items():
        sizes.append(len(customers))
        for customer in customers:
            assert list(customer) == fields
            assert all(isinstance(v, str) and v for v in customer.values())
            assert "\n" not in customer["address"]
            assert date.fromisoformat(customer["signup_date"]) <= snapshot_date
            date.fromisoformat(customer["date_of_birth"])
            assert datetime.strptime(customer["updated_at"], "%Y-%m-%d %H:%M:%S").date() <= (
                snapshot_date
            )
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_some_customers_change_address(snapshots):
    first, last = snapshots[min(snapshots)], snapshots[max(snapshots)]
    before = {c["customer_id"]: c for c in first}
    moved = [
        c
        for c in last
        if c["customer_id"] in before and c["address"] != before[c["customer_id"]]["address"]
    ]
    assert moved
    for customer in moved:
        old = before[customer["customer_id"]]
        assert customer["updated_at"] > old["updated_at"]
        assert {k: v for k, v in customer.items() if k not in ("address", "updated_at")} == {
            k: v for k, v in old.items() if k not in ("address", "updated_at")
        }


def test_every_fraud_is_reported_once_within_seven_days(clean_world, clean_config, reports):
    record = truth(clean_world).set_index("transaction_id")
    record["report_date"] = pd.to_datetime(record["report_date"])
    last_day = pd.Timestamp(_days(clean_config)[-1])
    assert reports["transaction_id"].is_unique
    assert record.loc[reports["transaction_id"], "is_fraud"].all(), "a genuine payment reported"
    reported_frauds = record[record["is_fraud"] & (record["report_date"] <= last_day)]
    assert set(reports["transaction_id"]) == set(reported_frauds.index)
    undelivered = record[record["is_fraud"] & (record["report_date"] > last_day)]
    assert len(undelivered) == world_json(clean_world)["summary"]["n_reports_after_end"] > 0

    reported_at = pd.to_datetime(reports["reported_at"])
    assert (reported_at.dt.date.astype(str) == reports["file_date"]).all()
    rows = record.loc[reports["transaction_id"]]
    assert (reported_at.to_numpy() == rows["reported_at"].to_numpy()).all()
    delay = (reported_at.dt.normalize() - rows["tx_datetime"].dt.normalize().to_numpy()).dt.days
    assert delay.between(1, 7).all() and set(delay) == set(range(1, 8))


def test_reports_carry_the_card_of_the_transaction(reports, transactions):
    card = transactions.set_index("transaction_id")["card_number"]
    assert (
        reports["card_number"].to_numpy() == card.loc[reports["transaction_id"]].to_numpy()
    ).all()


def test_an_existing_world_is_not_overwritten_unless_asked(tmp_path):
    config = WorldConfig(n_customers=50, n_terminals=100, n_days=3)
    simulate(config, tmp_path, progress=False)
    with pytest.raises(FileExistsError, match=str(tmp_path / "landing")):
        simulate(config, tmp_path, progress=False)
    stray = tmp_path / "landing" / "transactions" / "stray.txt"
    stray.write_text("left over from another world")
    summary = simulate(config, tmp_path, progress=False, overwrite=True)["summary"]
    assert not stray.exists()
    assert summary["n_days"] == 3


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    simulate(WorldConfig(n_customers=20, n_terminals=50, n_days=2), tmp_path, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "simulating" in captured.err


def test_gzip_files_decompress_completely(clean_world):
    for path in (clean_world / "landing" / "customers").iterdir():
        gzip.decompress(path.read_bytes())
