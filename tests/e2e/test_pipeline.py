"""The whole graph through Dagster on a small world with every source fault.

One world is simulated and materialized once per session (``tests/e2e/e2e_world.py``, through
the real `blueprint` command, on a persistent Dagster instance); tests that change things work
on a copy of it. The automation and the model plane have files of their own.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.features.catalog import project_fingerprint
from orchestration.settings import DBT_PROJECT_DIR, PROJECT_ROOT, USECASES_DIR
from tests.e2e.e2e_world import (
    DAYS,
    NEXT_DAY,
    START,
    copy_world,
    faults,
    instance,
    read_parquet,
    warehouse,
)
from tests.support import run_blueprint

pytestmark = pytest.mark.slow



def test_every_valid_transaction_lands_exactly_once(world: Path):
    truth = pd.read_parquet(world / "simulator" / "transactions_truth.parquet")
    raw = read_parquet(str(world / "raw" / "transactions" / "*" / "data.parquet"))
    assert raw["transaction_id"].is_unique
    assert set(raw["transaction_id"]) == set(truth["transaction_id"])
    assert len(raw) == len(truth)

    manifest = faults(world)
    assert {f["kind"] for f in manifest} == {
        "malformed_row", "duplicate_delivery", "late_delivery", "truncated_gzip"
    }
    records = read_parquet(str(world / "quarantine" / "transactions" / "*" / "records.parquet"))
    malformed = [f for f in manifest if f["kind"] == "malformed_row"]
    row_records = records[records["line_number"].notna()]
    assert sorted(zip(row_records["source_file"], row_records["line_number"].astype(int),
                      strict=True)) == sorted((f["file"], f["line"]) for f in malformed)
    truncated = [f["file"] for f in manifest if f["kind"] == "truncated_gzip"]
    assert sorted(records.loc[records["line_number"].isna(), "source_file"]) == sorted(truncated)
    # The re-delivery, not the truncated file, fed those partitions.
    for fault in (f for f in manifest if f["kind"] == "truncated_gzip"):
        day_rows = raw[raw["_source_file"].isin([fault["file"], fault["redelivered_as"]])]
        assert set(day_rows["_source_file"]) == {fault["redelivered_as"]}


def test_features_and_training_set_cover_every_valid_transaction(world: Path):
    truth = pd.read_parquet(world / "simulator" / "transactions_truth.parquet")
    [(n_features, n_ids)] = warehouse(
        world, "select count(*), count(distinct transaction_id) from transaction_features"
    )
    assert n_features == n_ids == len(truth)
    last_day = START + timedelta(days=DAYS - 1)
    reported = truth[truth["is_fraud"].astype(bool) & (truth["report_date"] <= last_day)]
    [(n_fraud,)] = warehouse(world, "select sum(is_fraud) from training_set")
    assert n_fraud == len(reported)


def test_runs_and_checks_are_recorded_on_the_persistent_instance(world: Path):
    dagster = instance(world)
    partitions = dagster.get_materialized_partitions(dg.AssetKey(["fraud", "raw_transactions"]))
    assert len(partitions) == DAYS
    for key in ("transaction_features", "training_set", "customers", "quarantined_records"):
        asset = dg.AssetKey(["fraud", key])  # every key under the use case's prefix
        assert dagster.get_latest_materialization_event(asset) is not None, key
        assert dagster.get_latest_materialization_event(dg.AssetKey(key)) is None, key
    runs = dagster.get_run_records()
    # ingestion, dbt, training and the gate in one run, then batch scoring
    assert len(runs) == 2
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # executed inside `blueprint`, yet pointing at the code location workspace.yaml loads, so
    # the Dagster UI can open and re-execute them
    for record in runs:
        pointer = record.dagster_run.job_code_origin.repository_origin.code_pointer
        assert (pointer.module, pointer.fn_name) == ("orchestration.definitions", "fraud")
    evaluations = [
        event
        for run in runs
        for event in dagster.all_logs(
            run.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    outcomes = {
        (e.dagster_event.event_specific_data.asset_key.to_user_string(),
         e.dagster_event.event_specific_data.check_name): e.dagster_event.event_specific_data.passed
        for e in evaluations
    }
    assert outcomes[("fraud/transaction_features", "expectations_suite")] is True
    assert outcomes[("fraud/training_set", "expectations_suite")] is True
    assert outcomes[("fraud/training_set", "no_personal_data")] is True


def test_dbt_writes_its_calls_inside_the_home(world: Path):
    calls = [p for p in (world / "dbt" / "fraud" / "calls").iterdir() if p.is_dir()]
    assert calls, "no dbt call wrote under BLUEPRINT_HOME/dbt/fraud/calls"
    for call in calls:  # each with its manifest and debug log, scanned with the home
        assert (call / "manifest.json").exists() and (call / "dbt.log").exists(), call


def test_the_feature_catalog_is_dbts_docs_site_of_the_use_case(world: Path):
    """The feature step published dbt's docs site (one static page) beside the reports, with
    each feature's description and lineage, and the reports' front page links to it."""
    catalog = world / "reports" / "fraud" / "feature_catalog"
    page = (catalog / "index.html").read_text()
    assert "model.blueprint.transaction_features" in page  # the models and their lineage
    assert "source.blueprint.raw.transactions" in page
    # an analyst's description of a feature, from the models' YAML
    assert "card_amount_ratio_30day" in page and "Payments the terminal took" in page
    assert (catalog / "fingerprint").read_text().strip() == project_fingerprint(
        DBT_PROJECT_DIR, "fraud", load_usecase("fraud", USECASES_DIR, environ={}).dbt_arguments()
    )
    front = (world / "reports" / "index.html").read_text()
    assert 'href="fraud/feature_catalog/index.html"' in front


def test_rerun_is_a_no_op(world: Path, tmp_path: Path):
    home = copy_world(world, tmp_path)
    snapshots = sorted((home / "raw").rglob("*.parquet"))
    snapshots.append(home / "reports" / "fraud" / "feature_catalog" / "index.html")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in snapshots}
    again = run_blueprint(home, "materialize")
    assert "up to date" in again.stdout
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in snapshots} == before
    assert len(instance(home).get_run_records()) == 2


def test_no_personal_data_outside_the_raw_zone(world: Path):
    full = run_blueprint(world, "scan-pii", "--full", check=False)
    assert full.returncode == 0, full.stdout
    assert "(0 files unchanged since a clean scan); 0 findings" in full.stdout
    # the pipeline's own check left its cache: most files need no second reading
    incremental = run_blueprint(world, "scan-pii", check=False)
    assert incremental.returncode == 0, incremental.stdout
    unchanged = int(incremental.stdout.split("(")[-1].split()[0])
    assert unchanged > 10 and "; 0 findings" in incremental.stdout


def _dagster_materialize(home: Path, selection: str) -> subprocess.Popen:
    env = {**os.environ, "BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
         "-m", "orchestration.definitions", "-a", "fraud", "-d", str(PROJECT_ROOT),
         "--select", selection],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_a_leak_outside_the_raw_zone_fails_the_pii_gate(world: Path, tmp_path: Path):
    home = copy_world(world, tmp_path)
    leak = home / "reports" / "export.csv"
    leak.parent.mkdir(parents=True, exist_ok=True)
    leak.write_text(f"card,amount\n{_crm_card(home)},12.50\n")

    run = _dagster_materialize(home, "fraud/training_set")
    output = run.communicate(timeout=600)[0]
    assert run.returncode != 0, output[-3000:]
    evaluations = instance(home).all_logs(
        _last_run(home).run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    [pii] = [
        e.dagster_event.event_specific_data
        for e in evaluations
        if e.dagster_event.event_specific_data.check_name == "no_personal_data"
    ]
    assert not pii.passed
    assert "export.csv" in pii.metadata["details"].value
    assert _crm_card(home) not in output  # the finding names the place, never the value


def _crm_card(home: Path) -> str:
    customers = read_parquet(str(home / "raw" / "customers" / "*" / "data.parquet"))
    return customers["card_number"].iloc[0]


def _land_transactions(home: Path, header: str, rows: list[str]) -> str:
    name = f"transactions_{NEXT_DAY}__d{(NEXT_DAY + timedelta(days=1)):%Y%m%d}T010000.csv.gz"
    body = "\n".join([header, *rows]) + "\n"
    (home / "landing" / "transactions" / name).write_bytes(gzip.compress(body.encode()))
    return name


def _last_run(home: Path) -> dg.DagsterRun:
    return instance(home).get_run_records(limit=1)[0].dagster_run


def _materialized_in(home: Path, run_id: str) -> set[str]:
    """The fraud use case's assets a run materialized, by name."""
    events = instance(home).all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    keys = [e.dagster_event.asset_key.path for e in events]
    assert all(path[0] == "fraud" for path in keys), keys
    return {path[-1] for path in keys}


def test_an_amount_outside_the_contract_is_quarantined_and_the_pipeline_goes_on(
    world: Path, tmp_path: Path
):
    """Issue 16: an amount the contract took (finite, >= 0) and the GX suite capped halted the
    whole pipeline at the day's blocking check; the bound is now the contract's, so the row is
    quarantined with its reason and everything else goes on."""
    home = copy_world(world, tmp_path)
    card = _crm_card(home)
    valid = [f"t-ok-{i},{NEXT_DAY} 10:{i:02d}:00,{card},1,12.50" for i in range(40)]
    _land_transactions(
        home,
        "transaction_id,tx_datetime,card_number,terminal_id,amount",
        [*valid, f"t-bad-2,{NEXT_DAY} 11:00:00,{card},1,5000000000.00"],
    )  # one row in 41 (2.4 %): under the day's quarantine-rate limit (5 %)
    result = run_blueprint(home, "materialize", check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    records = read_parquet(str(home / "quarantine" / "transactions" / f"date={NEXT_DAY}"
                               / "records.parquet"))
    assert records["reason"].tolist() == ["amount: above 100000 ('5000000000.00')"]
    assert warehouse(home, "select count(*) from transaction_features "
                           "where transaction_id like 't-ok-%'") == [(40,)]
    [(n_bad,)] = warehouse(home, "select count(*) from training_set where amount > 1e6")
    assert n_bad == 0


def test_a_bad_feature_distribution_stops_everything_downstream(world: Path, tmp_path: Path):
    """Every value within its contract, the day's features out of the suite's distribution
    (the mean of card_amount_ratio_30day above 2: many cards spending 2,000 times their usual
    amount at once): the blocking GX check stops everything downstream of the features."""
    home = copy_world(world, tmp_path)
    customers = read_parquet(str(home / "raw" / "customers" / "*" / "data.parquet"))
    cards = customers["card_number"].drop_duplicates().iloc[:60]
    _land_transactions(
        home,
        "transaction_id,tx_datetime,card_number,terminal_id,amount",
        [f"t-spree-{i},{NEXT_DAY} 10:{i % 60:02d}:00,{card},1,99999.00"
         for i, card in enumerate(cards)],
    )
    result = run_blueprint(home, "materialize", check=False)
    assert result.returncode != 0

    run = _last_run(home)
    assert run.status == dg.DagsterRunStatus.FAILURE
    built = _materialized_in(home, run.run_id)
    assert {"raw_transactions", "transaction_features"} <= built
    assert "training_set" not in built
    evaluations = instance(home).all_logs(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    failed = {
        e.dagster_event.event_specific_data.check_name
        for e in evaluations
        if not e.dagster_event.event_specific_data.passed
        and e.dagster_event.event_specific_data.asset_key
        == dg.AssetKey(["fraud", "transaction_features"])
    }
    assert failed == {"expectations_suite"}
    [(spree,)] = warehouse(home, "select count(*) from training_set where amount = 99999")
    assert spree == 0


@pytest.mark.parametrize(
    ("header", "row", "column"),
    [
        ("transaction_id,tx_datetime,card_number,terminal_id,amount,currency",
         "t-new-1,{day} 10:00:00,{card},1,12.50,EUR", "currency"),
        ("transaction_id,tx_datetime,card_number,terminal_id,amount",
         "t-new-{i},{day} 10:00:00,{card},1,twelve", "amount"),
    ],
    ids=["new-column", "amount-became-text"],
)
def test_a_schema_change_fails_loudly_and_builds_nothing(
    world: Path, tmp_path: Path, header: str, row: str, column: str
):
    home = copy_world(world, tmp_path)
    card = _crm_card(home)
    rows = [row.format(day=NEXT_DAY, card=card, i=i) for i in range(12)]
    name = _land_transactions(home, header, rows)
    before = {p: p.read_bytes() for p in (home / "raw").rglob("*.parquet")}

    result = run_blueprint(home, "materialize", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert column in output and name in output

    run = _last_run(home)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert not (_materialized_in(home, run.run_id) & {"transaction_features", "training_set"})
    assert not (home / "raw" / "transactions" / f"date={NEXT_DAY}").exists()
    assert {p: p.read_bytes() for p in (home / "raw").rglob("*.parquet")} == before


def _step_window(home: Path, run_id: str, step: str) -> tuple[float, float]:
    events = [e for e in instance(home).all_logs(run_id) if e.step_key == step]
    starts = [e.timestamp for e in events if e.dagster_event and e.dagster_event.is_step_start]
    ends = [e.timestamp for e in events if e.dagster_event and e.dagster_event.is_step_success]
    return starts[0], ends[-1]


def test_concurrent_runs_take_turns_on_the_warehouse(world: Path, tmp_path: Path):
    home = copy_world(world, tmp_path)
    runs = [_dagster_materialize(home, "fraud/customers") for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    records = instance(home).get_run_records(limit=2)
    windows = sorted(_step_window(home, r.dagster_run.run_id, "feature_models") for r in records)
    (_, first_end), (second_start, _) = windows
    assert second_start >= first_end  # one writer at a time, and neither failed on the lock
