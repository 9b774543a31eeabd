"""The Dagster UI's automation, and files that arrive late or broken."""

from __future__ import annotations

import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.lib.serving.process import free_port
from tests.e2e.e2e_world import (
    DAYS,
    START,
    copy_world,
    faults,
    graphql,
    instance,
)
from tests.support import run_blueprint

pytestmark = pytest.mark.slow


def test_the_ui_shows_the_automation_and_the_sensor_ingests_new_files(
    world: Path, tmp_path: Path
):
    home = copy_world(world, tmp_path)
    last_day = START + timedelta(days=DAYS - 1)
    # Take the last day back out of the lake and the landing zone: it "arrives" later.
    parked = tmp_path / "parked"
    parked.mkdir()
    for source in ("transactions", "fraud_reports", "customers"):
        shutil.rmtree(home / "raw" / source / f"date={last_day}")
        for path in (home / "landing" / source).glob(f"{source}_{last_day}__*"):
            shutil.move(path, parked / path.name)

    port = free_port()
    run_blueprint(home, "ui", "--port", str(port))
    try:
        data = graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
            "location { name } sensors { name sensorState { status } } "
            "schedules { name scheduleState { status } } } } } }",
        )
        by_location = {r["location"]["name"]: r for r in data["repositoriesOrError"]["nodes"]}
        assert sorted(by_location) == ["churn", "fraud"]  # one code location per use case
        repository = by_location["fraud"]
        assert {(s["name"], s["sensorState"]["status"]) for s in repository["sensors"]} == {
            ("landing_file_sensor", "RUNNING"), ("retraining_sensor", "RUNNING"),
            ("failed_run_sensor", "RUNNING"),
        }
        assert {(s["name"], s["scheduleState"]["status"]) for s in repository["schedules"]} == {
            ("daily_ingestion_schedule", "RUNNING"), ("batch_scoring_schedule", "RUNNING"),
            ("daily_monitoring_schedule", "RUNNING"), ("weekly_retraining_schedule", "RUNNING"),
        }

        for path in parked.iterdir():
            source = path.name.split("_2018")[0]
            shutil.move(path, home / "landing" / source / path.name)
        deadline = time.monotonic() + 240
        sensor_runs: list[dg.DagsterRun] = []
        while time.monotonic() < deadline:
            sensor_runs = [
                r.dagster_run
                for r in instance(home).get_run_records()
                if r.dagster_run.tags.get("blueprint/trigger") == "landing_file_sensor"
            ]
            if sensor_runs and sensor_runs[0].is_finished:
                break
            time.sleep(3)
        assert sensor_runs, "the sensor launched no run"
        assert sensor_runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert sensor_runs[0].tags["dagster/asset_partition_range_start"] == str(last_day)
    finally:
        run_blueprint(home, "stop")
    assert (home / "raw" / "transactions" / f"date={last_day}" / "data.parquet").exists()


def test_a_truncated_file_waits_for_its_redelivery(world: Path, tmp_path: Path):
    home = copy_world(world, tmp_path)
    fault = next(f for f in faults(home) if f["kind"] == "truncated_gzip")
    landing = home / "landing" / "transactions"
    snapshot_dir = home / "raw" / "transactions" / f"date={fault['date']}"
    parked = tmp_path / fault["redelivered_as"]
    shutil.move(landing / fault["redelivered_as"], parked)
    shutil.rmtree(snapshot_dir)

    waiting = run_blueprint(home, "materialize")
    assert f"re-delivery of transactions for {fault['date']}" in waiting.stderr
    assert not snapshot_dir.exists()

    shutil.move(parked, landing / fault["redelivered_as"])
    run_blueprint(home, "materialize")
    snapshot = pd.read_parquet(snapshot_dir / "data.parquet")
    assert set(snapshot["_source_file"]) == {fault["redelivered_as"]}
    truth = pd.read_parquet(home / "simulator" / "transactions_truth.parquet")
    expected = truth[truth["tx_datetime"].dt.date == date.fromisoformat(fault["date"])]
    assert set(snapshot["transaction_id"]) == set(expected["transaction_id"])
