"""A batch use case's performance report takes a day's labels from the table its models learn
from, and refuses labels that table cannot hold yet (built before they were final, or without
the day's rows) instead of reading them as negatives."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from orchestration.defs.monitoring.assets import monitoring_assets, traffic_path
from tests.support import mark_loaded, usecase_scope

SCOPE = usecase_scope("churn")
DATA, LABEL = SCOPE.usecase.data, SCOPE.usecase.label
DAY = date(2018, 5, 1)
MATURITY = LABEL.maturity.days
*_, performance_report = monitoring_assets(SCOPE)


def _world(table_through: date, table_ids: list[str]) -> None:
    """The day's scored traffic, and the table as built with the days up to ``table_through``
    (its rows of the day: ``table_ids``)."""
    settings = SCOPE.settings()
    traffic = pd.DataFrame({
        DATA.row_id: ["r1", "r2"], DATA.partition_date: [DAY, DAY],
        "model_version": ["v1", "v1"], SCOPE.usecase.serving.score: [0.9, 0.1],
        "alert": [True, False],
    })
    path = traffic_path(settings, DAY)
    path.parent.mkdir(parents=True)
    traffic.to_parquet(path)
    rows = pd.DataFrame({
        DATA.row_id: [*table_ids, "later"],
        DATA.partition_date: [*(DAY for _ in table_ids), table_through],
        LABEL.column: [1 for _ in table_ids] + [0],
    })
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.register("rows_", rows)
        con.execute(f"create table {DATA.table} as select * from rows_")


def _failure(instance: dg.DagsterInstance) -> str:
    settings = SCOPE.settings()
    for offset in range(MATURITY + 1):  # the label source loaded until the day's labels are final
        mark_loaded(instance, SCOPE, LABEL.source, DAY + timedelta(days=offset))
    result = dg.materialize(
        [performance_report], partition_key=DAY.isoformat(), instance=instance,
        raise_on_error=False,
        resources={"warehouse": DuckDBResource(database=str(settings.warehouse_path))},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    return str(failure.event_specific_data.error)


def test_a_table_built_before_the_days_labels_were_final_is_refused(blueprint_home):
    _world(table_through=DAY + timedelta(days=5), table_ids=["r1", "r2"])
    with dg.instance_for_test() as instance:
        message = _failure(instance)
    assert f"the labels of {DAY} in {DATA.table} are not final" in message, message
    assert str(DAY + timedelta(days=5)) in message and f"materialize {DATA.table}" in message


def test_scored_rows_missing_from_the_table_are_refused(blueprint_home):
    _world(table_through=DAY + timedelta(days=MATURITY), table_ids=["r1"])
    with dg.instance_for_test() as instance:
        message = _failure(instance)
    assert f"1 of the 2 rows scored on {DAY} are not in {DATA.table}" in message, message
