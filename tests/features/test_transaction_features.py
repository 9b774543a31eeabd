"""The dbt features against an independent pandas computation, point-in-time correctness,
and dbt's own unit and data tests (passing, and failing when they should)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.lib.quality.personal_data import PersonalData, scan_values
from orchestration.settings import DBT_PROJECT_DIR
from tests.features.raw_world import (
    DBT_EXECUTABLE,
    DbtRun,
    World,
    dbt_build,
    declared_features,
    read_table,
    write_raw_zone,
)

WINDOWS = (1, 7, 30)
TERMINAL_DELAY_DAYS = 7
FEATURES = [
    "amount",
    "tx_during_weekend",
    "tx_during_night",
    *[f"card_{kind}_{w}day" for w in WINDOWS for kind in ("nb_tx", "avg_amount")],
    *[f"terminal_{kind}_{w}day" for w in WINDOWS for kind in ("nb_tx", "risk")],
]
PRODUCTION_ADDITIONS = [
    "card_amount_ratio_30day",
    "card_seconds_since_last_tx",
    *[f"terminal_recent_{kind}_{w}day" for w in WINDOWS for kind in ("nb_fraud", "risk")],
]
CARD_HORIZON = pd.Timedelta(days=max(WINDOWS))
CUTOFF = datetime(2024, 2, 10, 12, 0, 0)


def earliest_reports(world: World) -> pd.DataFrame:
    """One report per transaction, the first one, with the day it was filed."""
    reports = world.fraud_reports.sort_values("reported_at").drop_duplicates("transaction_id")
    return reports.assign(report_date=reports["reported_at"].dt.normalize())[
        ["transaction_id", "reported_at", "report_date"]
    ]


def expected_features(world: World) -> pd.DataFrame:
    """The handbook's features straight from their definitions, with pandas."""
    tx = world.transactions.sort_values(["tx_datetime", "transaction_id"]).reset_index(drop=True)
    out = tx[["transaction_id", "amount"]].copy()
    out["tx_during_weekend"] = (tx["tx_datetime"].dt.weekday >= 5).astype(int)
    out["tx_during_night"] = (tx["tx_datetime"].dt.hour <= 6).astype(int)

    for w in WINDOWS:
        nb, avg = pd.Series(np.nan, index=tx.index), pd.Series(np.nan, index=tx.index)
        for _, card_tx in tx.groupby("card_number"):
            rolling = card_tx.set_index("tx_datetime")["amount"].rolling(f"{w}D")
            nb[card_tx.index] = rolling.count().to_numpy()
            avg[card_tx.index] = rolling.mean().to_numpy()
        out[f"card_nb_tx_{w}day"], out[f"card_avg_amount_{w}day"] = nb, avg

    tx_day = tx["tx_datetime"].dt.normalize()
    report_day = tx[["transaction_id"]].merge(earliest_reports(world), how="left")["report_date"]
    for w in WINDOWS:
        nb_tx, risk = [], []
        for i in tx.index:
            day = tx_day[i]
            first = day - pd.Timedelta(days=TERMINAL_DELAY_DAYS + w)
            last = day - pd.Timedelta(days=TERMINAL_DELAY_DAYS + 1)
            in_window = (tx["terminal_id"] == tx["terminal_id"][i]) & tx_day.between(first, last)
            known_fraud = in_window & (report_day < day)  # NaT compares False: never reported
            nb_tx.append(int(in_window.sum()))
            risk.append(known_fraud.sum() / in_window.sum() if in_window.sum() else 0.0)
        out[f"terminal_nb_tx_{w}day"], out[f"terminal_risk_{w}day"] = nb_tx, risk

    # the production additions: the card's earlier payments within 30 days (not the payment
    # itself, nor others at the same instant), and terminal windows without the delay
    ratio, since_last = [], []
    for i in tx.index:
        t = tx["tx_datetime"][i]
        earlier = tx[
            (tx["card_number"] == tx["card_number"][i])
            & (tx["tx_datetime"] > t - CARD_HORIZON)
            & (tx["tx_datetime"] < t)
        ]
        total = earlier["amount"].sum()
        ratio.append(tx["amount"][i] * len(earlier) / total if total > 0 else 1.0)
        last = earlier["tx_datetime"].max() if len(earlier) else t - CARD_HORIZON
        since_last.append((t - last).total_seconds())
    out["card_amount_ratio_30day"], out["card_seconds_since_last_tx"] = ratio, since_last
    for w in WINDOWS:
        nb_fraud, risk = [], []
        for i in tx.index:
            day = tx_day[i]
            in_window = (tx["terminal_id"] == tx["terminal_id"][i]) & tx_day.between(
                day - pd.Timedelta(days=w), day - pd.Timedelta(days=1)
            )
            known_fraud = in_window & (report_day < day)
            nb_fraud.append(int(known_fraud.sum()))
            risk.append(known_fraud.sum() / in_window.sum() if in_window.sum() else 0.0)
        out[f"terminal_recent_nb_fraud_{w}day"] = nb_fraud
        out[f"terminal_recent_risk_{w}day"] = risk
    return out.set_index("transaction_id").sort_index()


def features_of(run: DbtRun) -> pd.DataFrame:
    return (
        read_table(run.warehouse, "transaction_features").set_index("transaction_id").sort_index()
    )


def test_dbt_build_runs_the_unit_tests_and_data_tests_and_all_pass(built: DbtRun) -> None:
    results = built.results()
    unit_tests = [uid for uid in results if uid.startswith("unit_test.")]
    data_tests = [uid for uid in results if uid.startswith("test.")]
    assert len(unit_tests) >= 2
    assert len(data_tests) >= 50
    assert {results[uid] for uid in unit_tests + data_tests} == {"pass"}
    assert {s for uid, s in results.items() if uid.startswith("model.")} == {"success"}


def test_the_mart_holds_the_ids_and_exactly_the_declared_features(built: DbtRun) -> None:
    """transaction_features is rendered from the declaration: its columns are the event's ids
    and keys, then every declared feature (in the order of its enforced contract, the YAML's),
    and nothing else."""
    columns = list(read_table(built.warehouse, "transaction_features").columns)
    ids = ["transaction_id", "tx_datetime", "tx_date", "card_key", "terminal_id"]
    assert columns[:5] == ids
    assert sorted(columns[5:]) == sorted(declared_features().names)
    assert sorted(declared_features().names) == sorted(FEATURES + PRODUCTION_ADDITIONS)


def test_dbt_refuses_to_render_declared_features_it_was_not_given(
    built: DbtRun, tmp_path
) -> None:
    """A dbt call without the declaration (not through the pipeline) fails saying so, instead
    of building a mart with no features."""
    completed = subprocess.run(
        [str(DBT_EXECUTABLE), "compile", "--select", "transaction_features",
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        env={**os.environ, "BLUEPRINT_HOME": str(built.home), "BLUEPRINT_USECASE": "fraud",
             "DO_NOT_TRACK": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode != 0
    assert "no declared features for use case 'fraud'" in completed.stdout + completed.stderr


def test_the_compiled_feature_sql_holds_no_date_a_person_could_be_born_on(built: DbtRun) -> None:
    """The compiled SQL is kept outside the raw zone (dbt's calls, the manifest, the serving
    definitions), where the PII scan searches every date of birth verbatim: an epoch written as
    a date literal for day numbers failed the gate of the default world, one of whose customers
    was born on 1970-01-01."""
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    compiled = [
        node["compiled_code"] for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and "/fraud/" in node["original_file_path"]
    ]
    assert len(compiled) >= 5
    born = PersonalData.of([("customers.date_of_birth", "1970-01-01"),
                            ("customers.date_of_birth", "2000-01-01")])
    assert [f for sql in compiled for f in scan_values(sql.splitlines(), "sql", born)] == []
    assert not re.search(r"\b\d{4}-\d{2}-\d{2}\b", "\n".join(compiled))


def test_features_match_an_independent_pandas_computation(built: DbtRun, world: World) -> None:
    expected = expected_features(world)
    actual = features_of(built)
    assert list(actual.index) == list(expected.index)
    assert actual.columns[actual.columns.isin(FEATURES)].tolist() == FEATURES  # handbook order
    # the fixture exercises what the windows must get right, or this test proves little
    assert (expected["card_nb_tx_1day"] > 1).any() and (expected["terminal_risk_7day"] > 0).any()
    pd.testing.assert_frame_equal(
        actual[FEATURES], expected[FEATURES], check_dtype=False, rtol=0, atol=1e-9
    )


def test_production_additions_match_an_independent_pandas_computation(
    built: DbtRun, world: World
) -> None:
    expected = expected_features(world)
    actual = features_of(built)
    # the fixture has what the additions must get right: frauds known within the week the
    # handbook's windows skip, payments of a card less than a day apart, unusual amounts
    recent_only = (expected["terminal_recent_nb_fraud_7day"] > 0) & (
        expected["terminal_risk_7day"] == 0
    )
    assert recent_only.any() and (expected["terminal_recent_nb_fraud_1day"] > 0).any()
    assert (expected["card_seconds_since_last_tx"] < 86400).any()
    assert (expected["card_amount_ratio_30day"] > 2).any()
    pd.testing.assert_frame_equal(
        actual[PRODUCTION_ADDITIONS],
        expected[PRODUCTION_ADDITIONS],
        check_dtype=False,
        rtol=0,
        atol=1e-9,
    )


def test_training_set_is_features_plus_label_with_the_time_it_became_known(
    built: DbtRun, world: World
) -> None:
    training = read_table(built.warehouse, "training_set").set_index("transaction_id").sort_index()
    reports = earliest_reports(world).set_index("transaction_id")
    labelled = training.join(reports, rsuffix="_expected")
    assert (labelled["is_fraud"] == labelled["reported_at_expected"].notna()).all()
    for column in ("reported_at", "report_date"):
        pd.testing.assert_series_equal(
            pd.to_datetime(labelled[column]).astype("datetime64[ns]"),
            labelled[f"{column}_expected"].astype("datetime64[ns]"),
            check_names=False,
        )
    pd.testing.assert_frame_equal(training[FEATURES], features_of(built)[FEATURES])


def changed_after(world: World, cutoff: datetime, seed: int = 3) -> World:
    """The same world up to ``cutoff``; after it, different payments and different reports."""
    rng = np.random.default_rng(seed)
    changed = world.copy()
    tx = changed.transactions
    after = tx["tx_datetime"] > cutoff
    keep = ~after | (rng.random(len(tx)) < 0.5)
    tx = tx[keep].copy()
    tx.loc[tx["tx_datetime"] > cutoff, "amount"] *= 3  # changed amounts
    later = cutoff + pd.to_timedelta(rng.integers(1, 20 * 86400, 60), unit="s")
    pans = tx["card_number"].unique()
    new_tx = pd.DataFrame(
        {
            "transaction_id": [f"t-new-{i}" for i in range(60)],
            "tx_datetime": later,
            "card_number": rng.choice(pans, 60),
            "terminal_id": rng.choice(tx["terminal_id"].unique(), 60),
            "amount": rng.gamma(2.0, 200.0, 60).round(2),
        }
    )
    changed.transactions = pd.concat([tx, new_tx], ignore_index=True)

    reports = changed.fraud_reports
    reports = reports[reports["transaction_id"].isin(changed.transactions["transaction_id"])]
    late = reports["reported_at"] > cutoff
    reports = reports[~late | (rng.random(len(reports)) < 0.5)].copy()
    late = reports["reported_at"] > cutoff
    reports.loc[late, "reported_at"] += pd.Timedelta(days=2)  # changed report times
    # new reports filed after the cutoff: for payments before it (the label becomes known
    # later, some on the cutoff's own day) and for the new payments
    unreported = changed.transactions[
        ~changed.transactions["transaction_id"].isin(reports["transaction_id"])
    ]
    before = unreported[unreported["tx_datetime"] <= cutoff].sample(10, random_state=seed)
    new_reports = pd.concat([before, new_tx.head(15)])[["transaction_id", "card_number"]]
    new_reports["reported_at"] = pd.Timestamp(cutoff) + pd.to_timedelta(
        np.r_[np.arange(1, 4) * 3600, rng.integers(86400, 15 * 86400, len(new_reports) - 3)],
        unit="s",
    )
    changed.fraud_reports = pd.concat([reports, new_reports], ignore_index=True)
    return changed


def test_changes_after_a_cutoff_leave_every_earlier_feature_unchanged(
    built: DbtRun, world: World, pseudonymization_key_hex: str, tmp_path_factory
) -> None:
    changed = changed_after(world, CUTOFF)
    home = tmp_path_factory.mktemp("changed_after_cutoff")
    write_raw_zone(changed, home)
    # starts from the first run's manifest, parsed with another BLUEPRINT_HOME
    rerun = dbt_build(home, pseudonymization_key_hex, reuse_target=built.target_path)
    assert rerun.returncode == 0, rerun.output[-5000:]

    before, after = features_of(built), features_of(rerun)
    early = before.index[before["tx_datetime"] <= CUTOFF]
    assert len(early) > 300
    # atol: DuckDB may add the same amounts in another order when a card has more payments
    # later on (its window aggregates use a segment tree), a difference of ~1e-14
    pd.testing.assert_frame_equal(after.loc[early], before.loc[early], rtol=0, atol=1e-12)

    # the change was real: later features and earlier labels did move
    late = before.index[before["tx_datetime"] > CUTOFF].intersection(after.index)
    assert not after.loc[late, FEATURES].equals(before.loc[late, FEATURES])
    labels_before = read_table(built.warehouse, "training_set").set_index("transaction_id")
    labels_after = read_table(rerun.warehouse, "training_set").set_index("transaction_id")
    assert not labels_after.loc[early, "is_fraud"].equals(labels_before.loc[early, "is_fraud"])


def test_a_duplicated_transaction_fails_the_build(
    world: World, pseudonymization_key_hex: str, tmp_path_factory
) -> None:
    broken = world.copy()
    twice = broken.transactions.iloc[[10]].copy()
    twice["tx_datetime"] += pd.Timedelta(days=1)  # re-delivered in the next day's partition
    broken.transactions = pd.concat([broken.transactions, twice], ignore_index=True)
    home = tmp_path_factory.mktemp("duplicated_transaction")
    write_raw_zone(broken, home)

    run = dbt_build(home, pseudonymization_key_hex)

    assert run.returncode != 0
    results = run.results()
    unique_test = next(
        uid
        for uid in results
        if uid.startswith("test.blueprint.unique_stg_transactions_transaction_id")
    )
    assert results[unique_test] == "fail"
    assert results["model.blueprint.transaction_features"] == "skipped"


@pytest.mark.parametrize(
    ("table", "key"), [("customers", "customer_key"), ("quarantined_records", "row_sha256")]
)
def test_side_marts_hold_one_row_per_entity(built: DbtRun, world: World, table, key) -> None:
    rows = read_table(built.warehouse, table)
    assert rows[key].is_unique and len(rows) > 0
    if table == "customers":
        assert len(rows) == world.customers["customer_id"].nunique()
        latest_snapshot = pd.Timestamp(world.customers["snapshot_date"].max())
        assert (pd.to_datetime(rows["snapshot_date"]) == latest_snapshot).all()
    else:
        assert rows["source"].tolist() == ["transactions"]
        assert rows.columns.tolist() == [
            "source",
            "partition_date",
            "source_file",
            "line_number",
            "reason",
            "row_sha256",
            "quarantined_at",
        ]


def test_every_model_and_every_column_is_described(built: DbtRun) -> None:
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    models = [  # the fraud use case's: each use case's models are built in its own warehouse
        n for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["original_file_path"].startswith("models/fraud/")
    ]
    assert len(models) >= 9
    for model in models:
        assert len(model["description"]) > 40, model["name"]
        built_columns = read_table(built.warehouse, model["name"]).columns
        described = {name: c["description"] for name, c in model["columns"].items()}
        assert set(described) == set(built_columns), model["name"]
        assert all(len(text) > 15 for text in described.values()), model["name"]


CONTRACTED = ("stg_transactions", "int_terminal_days_aggregated", "transaction_features")
"""The tables training, serving and the quality gate read: their columns are a contract."""


@pytest.mark.parametrize("model", CONTRACTED)
def test_the_feature_tables_are_enforced_contracts(built: DbtRun, model: str) -> None:
    """Each column's declared type is the built table's, and the warehouse refuses a null in
    any of them (a NOT NULL constraint, checked as the table is written, instead of a test per
    column that reads the table again)."""
    manifest = json.loads((built.target_path / "manifest.json").read_text())
    node = manifest["nodes"][f"model.blueprint.{model}"]
    assert node["config"]["contract"]["enforced"]
    declared = {
        name: (column["data_type"].upper(), [c["type"] for c in column["constraints"]])
        for name, column in node["columns"].items()
    }
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        built_columns = con.execute(
            "select column_name, data_type, is_nullable from information_schema.columns "
            "where table_name = ? order by ordinal_position", [model],
        ).fetchall()
    assert [name for name, _, _ in built_columns] == list(declared)
    for name, data_type, nullable in built_columns:
        assert declared[name] == (data_type, ["not_null"]), name
        assert nullable == "NO", name
