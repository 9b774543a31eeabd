"""The churn features: a simulated world, ingested and built by dbt, checked against the
simulator's truth and a pandas computation from the raw snapshots; point-in-time correctness;
no personal data; the GX suites."""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.lib.quality.expectations import read_suite, validate_frame
from orchestration.lib.quality.raw_zone import load_personal_data
from orchestration.lib.quality.scanners import scan_duckdb_database
from orchestration.settings import PROJECT_ROOT
from tests.features import churn_world
from tests.features.churn_world import CONFIG, ChurnDbtRun
from tests.features.raw_world import read_table, warehouse_tables

CUTOFF = CONFIG.day(34)
"""The night of the point-in-time test: a second world holds only the days up to it."""
LABEL_DAYS = 30
NEVER_DAYS = 9999
PLAN_RANKS = {"basic": 1, "standard": 2, "premium": 3}
FEATURES = [
    "tenure_days",
    "plan_rank",
    "monthly_price",
    "price_increase_30d",
    "minutes_7d",
    "minutes_30d",
    "sessions_7d",
    "sessions_30d",
    "usage_trend_7d",
    "days_since_last_session",
    "mobile_share_30d",
    "failed_payments_30d",
    "days_since_failed_payment",
    "tickets_30d",
    "technical_tickets_30d",
    "billing_tickets_30d",
    "cancellation_intent_tickets_14d",
]
SUITES = PROJECT_ROOT / "expectations" / "churn"


@pytest.fixture(scope="module")
def world_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated world: landing files and truth, every day ingested into its raw zone."""
    home = tmp_path_factory.mktemp("churn_home")
    churn_world.simulate_world(home)
    contracts = churn_world.source_contracts(churn_world.declaration())
    churn_world.ingest(contracts, home, home, through=CONFIG.day(CONFIG.n_days - 1))
    return home


@pytest.fixture(scope="module")
def key() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def built(world_home: Path, key: str) -> ChurnDbtRun:
    run = churn_world.dbt_build(world_home, key)
    assert run.returncode == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="module")
def built_at_cutoff(
    world_home: Path, key: str, tmp_path_factory: pytest.TempPathFactory
) -> ChurnDbtRun:
    """The same world as known on the night after CUTOFF: only its days ingested."""
    home = tmp_path_factory.mktemp("churn_home_at_cutoff")
    contracts = churn_world.source_contracts(churn_world.declaration())
    churn_world.ingest(contracts, world_home, home, through=CUTOFF)
    run = churn_world.dbt_build(home, key)
    assert run.returncode == 0, run.output[-5000:]
    return run


def raw(home: Path, source: str) -> pd.DataFrame:
    """Every raw snapshot of a source, with its partition date, read with pandas alone."""
    files = sorted((home / "raw" / source).glob("date=*/data.parquet"))
    return pd.concat(
        pd.read_parquet(f).assign(partition_date=pd.Timestamp(f.parent.name.removeprefix("date=")))
        for f in files
    )


def table(run: ChurnDbtRun, name: str) -> pd.DataFrame:
    frame = read_table(run.warehouse, name)
    for column in ("snapshot_date", "label_date"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame.set_index("snapshot_id") if "snapshot_id" in frame else frame


def test_dbt_build_runs_the_churn_unit_and_data_tests_and_all_pass(built: ChurnDbtRun) -> None:
    results = built.results()
    unit_tests = [uid for uid in results if uid.startswith("unit_test.")]
    data_tests = [uid for uid in results if uid.startswith("test.")]
    models = [uid for uid in results if uid.startswith("model.")]
    assert len(unit_tests) >= 5 and len(data_tests) >= 80 and len(models) == 11
    assert {results[uid] for uid in unit_tests + data_tests} == {"pass"}
    assert {results[uid] for uid in models} == {"success"}
    assert set(warehouse_tables(built.warehouse)) == {
        f"main.{uid.rsplit('.', 1)[1]}" for uid in models
    }


def test_every_churn_model_and_column_is_described(built: ChurnDbtRun) -> None:
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    models = [
        node for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["original_file_path"].startswith(
            "models/churn/"
        )
    ]
    assert len(models) == 11
    for model in models:
        assert len(model["description"]) > 40, model["name"]
        described = {name: c["description"] for name, c in model["columns"].items()}
        assert set(described) == set(read_table(built.warehouse, model["name"]).columns)
        assert all(len(text) > 15 for text in described.values()), model["name"]
    features = next(m for m in models if m["name"] == "account_features")
    assert all(len(features["columns"][f]["description"]) > 100 for f in FEATURES)


def expected_account_days(home: Path) -> pd.DataFrame:
    """(account_id, snapshot_date) of every account active at the end of a day of the world,
    from the simulator's truth: signed up on or before the day, not cancelled on or before it."""
    accounts = churn_world.truth(home)
    days = pd.date_range(CONFIG.start, periods=CONFIG.n_days, freq="D")
    rows = accounts[["account_id", "signup_date", "churn_date"]].merge(
        pd.DataFrame({"snapshot_date": days}), how="cross"
    )
    signup, churn = pd.to_datetime(rows["signup_date"]), pd.to_datetime(rows["churn_date"])
    active = (signup <= rows["snapshot_date"]) & ~(churn <= rows["snapshot_date"])
    return rows.loc[active, ["account_id", "snapshot_date"]]


def test_every_active_account_day_has_exactly_one_row(built: ChurnDbtRun) -> None:
    expected = expected_account_days(built.home)
    for name in ("account_days", "account_features", "churn_training_set"):
        rows = table(built, name).reset_index()
        assert not rows.duplicated(["account_id", "snapshot_date"]).any(), name
        assert sorted(zip(rows["account_id"], rows["snapshot_date"], strict=True)) == sorted(
            zip(expected["account_id"], expected["snapshot_date"], strict=True)
        ), name
    features = table(built, "account_features")
    assert (features.index == features["account_id"] + "|"
            + features["snapshot_date"].dt.strftime("%Y-%m-%d")).all()
    assert (pd.to_datetime(features["snapshot_at"])
            == features["snapshot_date"] + pd.Timedelta(days=1)).all()

    # no cancelled account has a row on or after its cancellation day
    cancellations = raw(built.home, "cancellations")
    assert len(cancellations) >= 10
    rows = features.merge(cancellations, on="account_id")
    assert rows["account_id"].nunique() >= 5  # accounts with rows before they cancelled
    assert (rows["snapshot_date"] < rows["cancelled_at"].dt.normalize()).all()


def as_of(snapshots: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    """An account's latest snapshot on or before ``day``."""
    return snapshots[snapshots["partition_date"] <= day].iloc[-1]


def in_window(dates: pd.Series, day: pd.Timestamp, days: int) -> pd.Series:
    """Days day-days+1 .. day, the day included."""
    return (dates > day - pd.Timedelta(days=days)) & (dates <= day)


def expected_features(home: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Each feature of the given account-days straight from its definition, with pandas."""
    accounts = raw(home, "accounts").sort_values("partition_date").groupby("account_id")
    usage = raw(home, "usage").assign(day=lambda f: f["started_at"].dt.normalize())
    billing = raw(home, "billing").assign(day=lambda f: f["event_at"].dt.normalize())
    tickets = raw(home, "tickets").assign(day=lambda f: f["opened_at"].dt.normalize())
    failed = billing[billing["event_type"] == "payment_failed"]
    usage_of, failed_of, tickets_of = (
        dict(tuple(frame.groupby("account_id"))) for frame in (usage, failed, tickets)
    )
    empty = {"usage": usage.iloc[:0], "failed": failed.iloc[:0], "tickets": tickets.iloc[:0]}
    out = []
    for snapshot_id, row in rows.iterrows():
        account, day = row["account_id"], row["snapshot_date"]
        snapshots = accounts.get_group(account)
        today = as_of(snapshots, day)
        tenure = (day - pd.Timestamp(today["signup_date"])).days
        reference_day = max(day - pd.Timedelta(days=30), snapshots["partition_date"].min())
        price_before = as_of(snapshots, reference_day)["monthly_price"]
        sessions = usage_of.get(account, empty["usage"])
        fails = failed_of.get(account, empty["failed"])
        opened = tickets_of.get(account, empty["tickets"])
        s7, s30 = sessions[in_window(sessions["day"], day, 7)], sessions[
            in_window(sessions["day"], day, 30)
        ]
        m7, m30 = s7["minutes"].sum(), s30["minutes"].sum()
        watched, failed_before = sessions[sessions["day"] <= day], fails[fails["day"] <= day]
        t30 = opened[in_window(opened["day"], day, 30)]
        t14 = opened[in_window(opened["day"], day, 14)]
        out.append(
            {
                "snapshot_id": snapshot_id,
                "tenure_days": tenure,
                "plan_rank": PLAN_RANKS[today["plan"]],
                "monthly_price": today["monthly_price"],
                "price_increase_30d": max(today["monthly_price"] / price_before - 1, 0.0),
                "minutes_7d": m7,
                "minutes_30d": m30,
                "sessions_7d": len(s7),
                "sessions_30d": len(s30),
                "usage_trend_7d": m7 / (m30 * 7 / 30) if m30 > 0 else 1.0,
                "days_since_last_session": (day - watched["day"].max()).days
                if len(watched) else tenure,
                "mobile_share_30d": (s30["device"] == "mobile").mean() if len(s30) else 0.0,
                "failed_payments_30d": int(in_window(fails["day"], day, 30).sum()),
                "days_since_failed_payment": (day - failed_before["day"].max()).days
                if len(failed_before) else NEVER_DAYS,
                "tickets_30d": len(t30),
                "technical_tickets_30d": int((t30["category"] == "technical").sum()),
                "billing_tickets_30d": int((t30["category"] == "billing").sum()),
                "cancellation_intent_tickets_14d": int(
                    (t14["category"] == "cancellation_intent").sum()
                ),
            }
        )
    return pd.DataFrame(out).set_index("snapshot_id")


def sample_rows(features: pd.DataFrame, seed: int = 5, per_case: int = 60) -> pd.DataFrame:
    """Random account-days, plus some of those where a rare feature is not at its usual value."""
    rng = np.random.default_rng(seed)
    cases = [
        features["price_increase_30d"] > 0,
        features["failed_payments_30d"] > 0,
        (features["days_since_failed_payment"] < NEVER_DAYS)
        & (features["failed_payments_30d"] == 0),
        features["technical_tickets_30d"] > 0,
        features["billing_tickets_30d"] > 0,
        features["cancellation_intent_tickets_14d"] > 0,
        features["minutes_30d"] == 0,
        features["usage_trend_7d"] < 0.3,
        pd.Series(True, index=features.index),
    ]
    chosen = set()
    for case in cases:
        ids = features.index[case]
        chosen |= set(rng.choice(ids, size=min(per_case * 4 if case.all() else per_case, len(ids)),
                                 replace=False))
    return features.loc[sorted(chosen)]


def test_features_match_a_pandas_computation_from_the_raw_snapshots(built: ChurnDbtRun) -> None:
    actual = sample_rows(table(built, "account_features"))
    expected = expected_features(built.home, actual)
    # the sample holds what the windows must get right, or this test proves little
    assert len(actual) > 400
    for column in ("price_increase_30d", "failed_payments_30d", "technical_tickets_30d",
                   "cancellation_intent_tickets_14d", "billing_tickets_30d"):
        assert (expected[column] > 0).sum() >= 3, column
    assert (expected["days_since_failed_payment"] < NEVER_DAYS).any()
    assert (expected["days_since_failed_payment"] == NEVER_DAYS).any()
    assert (expected["usage_trend_7d"] < 0.5).any() and (expected["minutes_30d"] == 0).any()
    assert (expected["sessions_7d"] < expected["sessions_30d"]).any()
    pd.testing.assert_frame_equal(
        actual[FEATURES], expected[FEATURES], check_dtype=False, rtol=0, atol=1e-9
    )


def test_features_of_a_day_never_change_when_later_days_are_loaded(
    built: ChurnDbtRun, built_at_cutoff: ChurnDbtRun
) -> None:
    full, early = table(built, "churn_training_set"), table(built_at_cutoff, "churn_training_set")
    assert early["snapshot_date"].max() == pd.Timestamp(CUTOFF)
    known = full.index[full["snapshot_date"] <= pd.Timestamp(CUTOFF)]
    assert sorted(early.index) == sorted(known) and len(known) > 8000
    columns = ["account_id", "snapshot_date", "snapshot_at", *FEATURES, "label_date"]
    # atol: DuckDB may add the same minutes in another order when an account has more days
    # later on (its window sums use a segment tree), a difference of about 1e-12
    pd.testing.assert_frame_equal(
        early.loc[known, columns], full.loc[known, columns], rtol=0, atol=1e-9
    )
    # a label is final on its label_date: the mature ones agree, later ones may still turn to 1
    mature = known[full.loc[known, "label_date"] <= pd.Timestamp(CUTOFF)]
    assert len(mature) > 1000
    assert early.loc[mature, "churned_30d"].equals(full.loc[mature, "churned_30d"])
    assert (early.loc[known, "churned_30d"] < full.loc[known, "churned_30d"]).any()
    assert len(full) > len(known)  # the later days were really loaded


def test_labels_equal_the_simulators_truth(built: ChurnDbtRun) -> None:
    training = table(built, "churn_training_set")
    churn_date = pd.to_datetime(
        training["account_id"].map(churn_world.truth(built.home).set_index("account_id")["churn_date"])
    )
    days_after = (churn_date - training["snapshot_date"]).dt.days
    expected = days_after.between(1, LABEL_DAYS).astype(int)
    assert expected.sum() > 100
    assert (training["churned_30d"] == expected).all()
    assert (training["label_date"] == training["snapshot_date"] + timedelta(days=LABEL_DAYS)).all()


def personal_data(home: Path):
    """The values of the churn sources' personal-data columns in the raw zone."""
    sources = churn_world.declared_sources(churn_world.declaration())
    columns = {name: source.pii_columns for name, source in sources.items() if source.pii_columns}
    assert columns == {"accounts": ["name", "email", "address", "iban"]}
    return load_personal_data(home / "raw", columns)


def test_no_churn_table_holds_personal_data(built: ChurnDbtRun, tmp_path: Path) -> None:
    personal = personal_data(built.home)
    assert len(personal.name_keys) >= CONFIG.n_accounts / 2  # names (some are shared)
    assert len(personal.verbatim) >= CONFIG.n_accounts * 3  # e-mails, addresses, IBANs
    report = scan_duckdb_database(built.warehouse, personal)
    assert report.clean, [str(finding) for finding in report.findings]
    scanned_tables = {location.split(":")[1].rsplit(".", 1)[0] for location in report.scanned}
    assert scanned_tables == set(warehouse_tables(built.warehouse))

    # the same scan finds the accounts snapshot as staging would leak it without its renamed CTE
    leaky = tmp_path / "leaky.duckdb"
    snapshot = sorted((built.home / "raw" / "accounts").glob("date=*/data.parquet"))[-1]
    with duckdb.connect(str(leaky)) as con:
        con.execute(f"create table stg_accounts as select * from read_parquet('{snapshot}')")
    kinds = {f.kind for f in scan_duckdb_database(leaky, personal).findings}
    assert len(kinds) >= 2, kinds


def test_the_compiled_churn_sql_holds_no_date_literal(built: ChurnDbtRun) -> None:
    """The compiled SQL is kept outside the raw zone, where the PII scan searches every use
    case's dates of birth verbatim: day numbers from an epoch written as a date literal failed
    the churn world's gate beside a fraud world with a customer born on 1970-01-01."""
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    compiled = "\n".join(
        node["compiled_code"] for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and "/churn/" in node["original_file_path"]
    )
    assert "day_number" in compiled
    assert not re.search(r"\b\d{4}-\d{2}-\d{2}\b", compiled)


@pytest.mark.parametrize("name", ["account_features", "churn_training_set"])
def test_the_gx_suites_pass_on_the_built_tables(built: ChurnDbtRun, name: str) -> None:
    suite = SUITES / f"{name}.json"
    frame = read_table(built.warehouse, name)
    result = validate_frame(frame, suite)  # raises unless every expectation loaded
    assert result.success, result.failures
    assert result.evaluated == len(read_suite(suite)["expectations"])
    covered = {e["kwargs"].get("column") for e in read_suite(suite)["expectations"]}
    assert set(frame.columns) <= covered


@pytest.mark.parametrize(
    ("name", "column", "bad_value", "failing"),
    [
        ("account_features", "mobile_share_30d", 1.5, "expect_column_values_to_be_between"),
        ("account_features", "days_since_last_session", -1, "expect_column_values_to_be_between"),
        ("account_features", "snapshot_id", "duplicate", "expect_column_values_to_be_unique"),
        ("churn_training_set", "churned_30d", 2, "expect_column_values_to_be_in_set"),
        ("churn_training_set", "minutes_7d", None, "expect_column_values_to_not_be_null"),
    ],
)
def test_a_planted_bad_value_fails_the_suite(
    built: ChurnDbtRun, name: str, column: str, bad_value, failing: str
) -> None:
    frame = read_table(built.warehouse, name)
    if bad_value == "duplicate":
        frame.loc[1, column] = frame.loc[0, column]
    else:
        frame[column] = frame[column].astype(object if bad_value is None else frame[column].dtype)
        frame.loc[1, column] = bad_value
    result = validate_frame(frame, SUITES / f"{name}.json")
    assert not result.success
    assert [(f["expectation"], f["column"], f["unexpected_count"]) for f in result.failures] == [
        (failing, column, 1 if bad_value != "duplicate" else 2)
    ]


def test_the_label_horizon_dbt_renders_is_the_declared_label():
    """dbt computes churn's label over ``churn_label_horizon_days`` (a project var: the column's
    name, its contract and its suite are written for it); the declaration says how long a label
    takes to mature and what the column is called. They must agree, or training would learn a
    label the gate and monitoring think matures at another age."""
    import yaml

    from orchestration.lib.core.usecase import load_usecase
    from orchestration.settings import USECASES_DIR

    churn = load_usecase("churn", USECASES_DIR, environ={})
    horizon = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text())[
        "vars"]["churn_label_horizon_days"]
    assert timedelta(days=horizon) == churn.label.maturity
    assert churn.label.column == f"churned_{horizon}d"
