"""``scored_traffic``: each day's traffic as monitoring reads it, beside the offline features.

A use case served online reads its service's prediction log (``raw_predictions``): one row per
event, the first logged of a retried one, with the blocking check ``training_serving_skew`` that
fails when a served feature differs from the offline value. A use case scored in batch reads its
batch scores beside the features they were scored on.
"""

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from orchestration.defs.partitions import daily_partitions, partition_days, single_run
from orchestration.defs.scope import Scope
from orchestration.defs.serving.assets import scores_path
from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.monitoring.traffic import (
    ONLINE_PREFIX,
    SKEW_TOLERANCE,
    SkewResult,
    compare_features,
    load_scored_traffic,
    online_feature_names,
)
from orchestration.lib.serving.scoring import load_scoring_model
from orchestration.settings import Settings

MONITORING_GROUP = "monitoring"
SKEW_CHECK = "training_serving_skew"
SKEW_FILE = "skew.json"
"""Written beside a day's traffic when its skew check failed: the reports refuse that day."""
MAX_EXAMPLES = 20
"""Mismatched features listed in the skew check's metadata."""


def traffic_path(settings: Settings, day: date) -> Path:
    day_column = settings.usecase.data.partition_date
    folder = settings.monitoring_dir / "scored_traffic" / f"{day_column}={day.isoformat()}"
    return folder / "data.parquet"


def serving_version(traffic: pd.DataFrame) -> str:
    """The model version that scored most of ``traffic``."""
    return str(traffic["model_version"].astype(str).value_counts().idxmax())


def scored_traffic_asset(scope: Scope) -> dg.AssetsDefinition:
    """The service's traffic of each day beside the offline features, with the skew check."""
    mart = scope.usecase.data.features_table

    @dg.asset(
        group_name=MONITORING_GROUP,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        key=scope.key("scored_traffic"),
        deps=scope.keys("raw_predictions", mart),
        pool=scope.pool,
        check_specs=[
            dg.AssetCheckSpec(
                SKEW_CHECK, asset=scope.key("scored_traffic"), blocking=True,
                description=(
                    f"Every feature the service served equals the offline {mart} value of the "
                    f"same event within {SKEW_TOLERANCE:g}; a failure lists examples and stops "
                    "the reports of the run."
                ),
            )
        ],
        description=(
            "The events the scoring service scored each day (one row per event, the first "
            "logged of a retried one), their served features and score beside the offline "
            f"{mart} values (Parquet under monitoring/<use case>/scored_traffic/)."
        ),
    )
    def scored_traffic(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        settings = scope.settings()
        data = settings.usecase.data
        days = partition_days(context)
        traffic = load_scored_traffic(
            settings.raw_predictions_dir, days[0], days[-1] + timedelta(days=1), data.row_id,
            data.event_time,
        )
        features = online_feature_names(traffic)
        offline, unknown = _offline_features(warehouse, settings.usecase, features, days)
        event_day = pd.to_datetime(traffic[data.event_time]).dt.date
        skew = _Skew()
        for day in days:
            rows = traffic.loc[event_day == day].reset_index(drop=True)
            skew.add(day, rows, _write_day(settings, day, rows, offline, features))
        return dg.MaterializeResult(
            metadata={
                "rows": skew.totals["rows"],
                "retried_rows_dropped": skew.totals["retries"],
                "missing_offline": skew.totals["missing_offline"],
                "model_versions": dict(skew.versions),
                "days": len(days),
                "path": dg.MetadataValue.path(str(settings.monitoring_dir / "scored_traffic")),
            },
            check_results=[skew.check_result(data.row_id, unknown)],
        )

    return scored_traffic


def _offline_features(
    warehouse: DuckDBResource, usecase: UseCase, features: list[str], days: list[date]
) -> tuple[pd.DataFrame, list[str]]:
    """The feature mart's values of ``features`` on ``days``, and the served features the mart
    does not have (all missing offline: every row differs)."""
    data = usecase.data
    mart = data.features_table
    with warehouse.get_connection() as con:
        known = {row[0] for row in con.execute(f"describe {mart}").fetchall()}
        unknown = [f for f in features if f not in known]
        offline = con.execute(
            f"select {data.row_id}{''.join(f', {f}' for f in features if f in known)} "
            f"from {mart} where {data.partition_date} >= ? and {data.partition_date} < ?",
            [days[0], days[-1] + timedelta(days=1)],
        ).df()
    for name in unknown:
        offline[name] = np.nan
    return offline, unknown


def _write_day(
    settings: Settings, day: date, rows: pd.DataFrame, offline: pd.DataFrame, features: list[str]
) -> SkewResult:
    """Write the day's traffic beside its offline features; mark the day when they differ."""
    row_id = settings.usecase.data.row_id
    path = traffic_path(settings, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        rows.merge(offline, on=row_id, how="left").to_parquet(tmp, index=False)
    result = compare_features(rows, offline, row_id, features)
    marker = path.parent / SKEW_FILE
    if result.passed:
        marker.unlink(missing_ok=True)
    else:
        atomic_write_bytes(
            marker,
            json.dumps({"mismatched": result.mismatched, "by_feature": result.by_feature,
                        "examples": [e.__dict__ for e in result.examples]}).encode(),
        )
    return result


class _Skew:
    """What the days' comparisons found, for the materialization and the skew check."""

    def __init__(self) -> None:
        self.totals: Counter = Counter()
        self.by_feature: Counter = Counter()
        self.versions: Counter = Counter()
        self.examples: list = []

    def add(self, day: date, rows: pd.DataFrame, result: SkewResult) -> None:
        self.totals.update(
            rows=len(rows), retries=int(rows["retries"].sum()) if len(rows) else 0,
            compared=result.compared, mismatched=result.mismatched,
            missing_offline=result.missing_offline,
        )
        self.by_feature.update({k: v for k, v in result.by_feature.items() if v})
        self.examples.extend((day, e) for e in result.examples)
        self.versions.update(rows["model_version"].astype(str))

    def check_result(self, row_id: str, unknown: list[str]) -> dg.AssetCheckResult:
        metadata = {
            "compared": self.totals["compared"],
            "mismatched": self.totals["mismatched"],
            "missing_offline": self.totals["missing_offline"],
            "tolerance": SKEW_TOLERANCE,
            "mismatches_by_feature": dict(self.by_feature),
        }
        if self.examples:
            metadata["examples"] = dg.MetadataValue.md(markdown_table(
                ["day", row_id, "feature", "online", "offline"],
                [[day, e.row_id, e.feature, e.online, e.offline]
                 for day, e in self.examples[:MAX_EXAMPLES]],
            ))
        if unknown:
            metadata["features_missing_offline"] = unknown
        return dg.AssetCheckResult(
            check_name=SKEW_CHECK,
            passed=self.totals["mismatched"] == 0 and not unknown,
            metadata=metadata,
        )


def batch_traffic_asset(scope: Scope) -> dg.AssetsDefinition:
    """Each day's batch scores beside the features they were scored on (a batch use case)."""
    data = scope.usecase.data

    @dg.asset(
        group_name=MONITORING_GROUP,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        key=scope.key("scored_traffic"),
        deps=scope.keys("batch_scores", data.features_table),
        pool=scope.pool,
        description=(
            f"The rows batch scoring scored each day after the scoring model's test window, with "
            f"their score, decision and the {data.features_table} values they were scored on "
            "(Parquet under monitoring/<use case>/scored_traffic/): what the reports read."
        ),
    )
    def scored_traffic(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        settings = scope.settings()
        days = partition_days(context)
        rows = 0
        for day in days:
            scores_file, _ = scores_path(settings, day)
            if not scores_file.exists():  # not a quiet day: the day was never scored
                raise dg.Failure(
                    f"{scores_file} does not exist: materialize batch_scores for {day} first"
                )
            scored = pd.read_parquet(scores_file)
            model = None if scored.empty else load_scoring_model(serving_version(scored), settings)
            if model is not None and day <= model.facts.training_data.test.end:
                scored = scored.iloc[0:0]  # the model's own training or test days: no traffic
            if not scored.empty:
                features = model.features
                with warehouse.get_connection() as con:
                    con.register("scored_ids", scored[[data.row_id]])
                    offline = con.execute(
                        f"select f.{data.row_id}, {', '.join(f'f.{c}' for c in features)} "
                        f"from {data.features_table} f join scored_ids s using ({data.row_id})"
                    ).df()
                offline = offline.rename(columns={f: ONLINE_PREFIX + f for f in features})
                scored = scored.merge(offline, on=data.row_id, how="left")
            path = traffic_path(settings, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                scored.to_parquet(tmp, index=False)
            rows += len(scored)
        return dg.MaterializeResult(
            metadata={
                "rows": rows, "days": len(days),
                "path": dg.MetadataValue.path(str(settings.monitoring_dir / "scored_traffic")),
            }
        )

    return scored_traffic


