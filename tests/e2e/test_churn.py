"""The churn use case end to end through the real `blueprint` command, beside a fraud world:
simulate, materialize (ingestion, dbt, the quality gates, training, the promotion gate, batch
scoring, monitoring from the batch scores), and the models list; a world too short for its
protocol fails naming the days it needs. Marked ``churn`` (`make test-churn`, run by CI)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.serving.process import free_port
from orchestration.settings import USECASES_DIR
from tests.e2e.e2e_world import graphql
from tests.support import run_blueprint

pytestmark = pytest.mark.churn

CHURN = load_usecase("churn", USECASES_DIR, environ={})
WORLD = ["--usecase", "churn", "--days", "120", "--set", "n_accounts=1500", "--seed", "5",
         "--no-progress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("churn") / "home"
    home.mkdir()
    # a fraud world in the same home first: the churn world and its runs leave it alone
    run_blueprint(home, "simulate", "--set", "n_customers=100", "--set", "n_terminals=200",
                  "--days", "5", "--no-progress")
    run_blueprint(home, "simulate", *WORLD)
    first = run_blueprint(home, "materialize", "--usecase", "churn")
    assert "Materialized churn." in first.stdout, first.stdout + first.stderr
    return home


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def test_every_source_is_ingested_and_scored_under_the_use_cases_keys(world: Path):
    instance = _instance(world)
    for source in CHURN.sources:
        partitions = instance.get_materialized_partitions(dg.AssetKey(["churn", f"raw_{source}"]))
        assert len(partitions) == 120, source
    assert instance.get_materialized_partitions(dg.AssetKey(["fraud", "raw_transactions"])) == set()
    with duckdb.connect(str(world / "warehouse" / "churn.duckdb"), read_only=True) as con:
        [(rows, days)] = con.execute(
            "select count(*), count(distinct snapshot_date) from account_features"
        ).fetchall()
    assert days == 120 and rows > 120 * 1000
    assert not (world / "warehouse" / "fraud.duckdb").exists()  # fraud was never materialized
    lists = sorted((world / "scores" / "churn").glob("snapshot_date=*/daily_list.parquet"))
    assert len(lists) == 120
    last = pd.read_parquet(lists[-1])
    assert len(last) == CHURN.decision_budget.per_day and last["account_id"].is_unique
    assert last["churn_probability"].is_monotonic_decreasing
    assert list(last["rank"]) == list(range(1, len(last) + 1))
    assert last["reasons"].str.len().min() > 0


def test_the_champion_records_the_declared_metrics_and_beats_the_base_rate(world: Path):
    listing = run_blueprint(world, "models", "list", "--usecase", "churn").stdout
    header, _, row = listing.splitlines()[:3]
    assert "test average_precision" in header and "test retention_precision_top_k" in header
    assert row.split()[:2] == ["churn", "*"]
    average_precision, retention_precision = (float(v) for v in row.split()[-2:])
    with duckdb.connect(str(world / "warehouse" / "churn.duckdb"), read_only=True) as con:
        [(base_rate,)] = con.execute("select avg(churned_30d) from churn_training_set").fetchall()
    assert average_precision > 2 * base_rate  # a model, not the base rate
    assert retention_precision > 2 * base_rate
    fraud = run_blueprint(world, "models", "list").stdout
    assert "No model is registered yet" in fraud  # one registry per use case


def test_monitoring_reads_the_batch_scores_after_the_models_test_window(world: Path):
    index = json.loads((world / "reports" / "churn" / "index.json").read_text())["reports"]
    kinds = {entry["kind"] for entry in index}
    assert {"data_drift", "prediction_drift"} <= kinds
    drift = [e for e in index if e["kind"] == "data_drift"]
    assert all(e["numbers"]["features"] == len(CHURN.features.train_on) for e in drift)
    assert all(e["numbers"]["traffic_rows"] > 1000 for e in drift)
    assert (world / "reports" / "churn" / "index.html").exists()
    html = sorted((world / "reports" / "churn").glob("*/data_drift.html"))
    assert html and html[-1].stat().st_size > 100_000  # Evidently's page, kept for the newest


def test_materialize_again_is_a_no_op(world: Path):
    again = run_blueprint(world, "materialize", "--usecase", "churn")
    assert "Everything of churn is up to date" in again.stdout


def test_a_world_too_short_for_the_protocol_names_the_days_it_needs(tmp_path: Path):
    home = tmp_path / "home"
    run_blueprint(home, "simulate", "--usecase", "churn", "--days", "70",
                  "--set", "n_accounts=300", "--no-progress")
    result = run_blueprint(home, "materialize", "--usecase", "churn", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "needs at least 119 days of data" in output, output[-3000:]


def test_the_churn_demo_runs_churn_and_opens_the_ui_with_every_use_case(
    world: Path, monkeypatch: pytest.MonkeyPatch
):
    port = free_port()
    monkeypatch.setenv("BLUEPRINT_DAGSTER_PORT", str(port))
    monkeypatch.setenv("BLUEPRINT_REPORTS_PORT", str(free_port()))
    try:
        demo = run_blueprint(world, "demo", "--usecase", "churn").stdout
        assert "Using the world already simulated" in demo
        assert "Everything of churn is up to date" in demo  # its world, not fraud's
        assert "blueprint models list --usecase churn" in demo
        data = graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
                             "location { name } } } } }")
        locations = {r["location"]["name"] for r in data["repositoriesOrError"]["nodes"]}
        assert locations == {"churn", "fraud"}
    finally:
        run_blueprint(world, "stop")
