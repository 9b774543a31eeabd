"""Monitoring: each day's scored traffic, its training-serving skew, and Evidently reports.

``scored_traffic`` is what the use case declares as its traffic: the rows its service scored
that day (from ``raw_predictions``) beside their offline features, with the blocking check
``training_serving_skew`` that fails when a served feature differs from the offline value; or
the day's batch scores beside the features they were scored on. Three daily reports follow,
each an Evidently HTML file under ``reports/<use case>/<day>/`` linked from the
materialization, with its headline numbers in the metadata (plotted by the Dagster UI) and in
the use case's ``index.html``:

- ``data_drift_report``: the day's features against the serving model's training rows;
- ``prediction_drift_report``: the day's scores against the model's scores on its test window;
- ``performance_report``: once the day's labels are mature, the scores against the labels
  (the use case's declared metrics, the alert precision achieved).
"""

import json
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from functools import lru_cache, partial
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from orchestration.defs.partitions import (
    daily_partitions,
    newest_partition,
    partition_days,
    single_run,
)
from orchestration.defs.scope import Scope
from orchestration.defs.serving.assets import scores_path
from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.monitoring import reports as monitoring
from orchestration.lib.monitoring.traffic import (
    ONLINE_PREFIX,
    SKEW_TOLERANCE,
    compare_features,
    label_maturity,
    load_scored_traffic,
    online_feature_names,
)
from orchestration.lib.serving.scoring import ScoringModel, load_scoring_model
from orchestration.lib.training.lineage import reference_rows
from orchestration.lib.training.metrics import Scorecard
from orchestration.lib.training.validation import protocol_from
from orchestration.settings import Settings, get_settings

MONITORING_GROUP = "monitoring"
SKEW_CHECK = "training_serving_skew"
SKEW_FILE = "skew.json"
"""Written beside a day's traffic when its skew check failed: the reports refuse that day."""


def traffic_path(settings: Settings, day: date) -> Path:
    day_column = settings.usecase.data.partition_date
    folder = settings.monitoring_dir / "scored_traffic" / f"{day_column}={day.isoformat()}"
    return folder / "data.parquet"


def max_report_date(instance: dg.DagsterInstance, scope: Scope) -> date | None:
    """The last day whose labels are loaded (the newest partition of the label source)."""
    return newest_partition(instance, scope.key(f"raw_{scope.usecase.label.source}"))


def scored_traffic_asset(scope: Scope) -> dg.AssetsDefinition:
    """The service's traffic of each day beside the offline features, with the skew check."""
    data = scope.usecase.data
    mart = data.features_table

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
        days = partition_days(context)
        end = days[-1] + timedelta(days=1)
        traffic = load_scored_traffic(
            settings.raw_predictions_dir, days[0], end, data.row_id, data.event_time
        )
        features = online_feature_names(traffic)
        with warehouse.get_connection() as con:
            known = {row[0] for row in con.execute(f"describe {mart}").fetchall()}
            unknown = [f for f in features if f not in known]
            offline = con.execute(
                f"select {data.row_id}{''.join(f', {f}' for f in features if f in known)} "
                f"from {mart} where {data.partition_date} >= ? and {data.partition_date} < ?",
                [days[0], end],
            ).df()
        for name in unknown:  # a served feature the mart does not have: every row differs
            offline[name] = np.nan
        event_day = pd.to_datetime(traffic[data.event_time]).dt.date
        totals = Counter()
        examples, by_feature = [], Counter()
        versions: Counter = Counter()
        for day in days:
            rows = traffic.loc[event_day == day].reset_index(drop=True)
            joined = rows.merge(offline, on=data.row_id, how="left")
            path = traffic_path(settings, day)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                joined.to_parquet(tmp, index=False)
            result = compare_features(rows, offline, data.row_id, features)
            marker = path.parent / SKEW_FILE
            if result.passed:
                marker.unlink(missing_ok=True)
            else:
                atomic_write_bytes(
                    marker,
                    json.dumps({"mismatched": result.mismatched, "by_feature": result.by_feature,
                                "examples": [e.__dict__ for e in result.examples]}).encode(),
                )
            totals.update(
                rows=len(rows), retries=int(rows["retries"].sum()) if len(rows) else 0,
                compared=result.compared, mismatched=result.mismatched,
                missing_offline=result.missing_offline,
            )
            by_feature.update({k: v for k, v in result.by_feature.items() if v})
            examples.extend((day, e) for e in result.examples)
            versions.update(rows["model_version"].astype(str))
        check_metadata = {
            "compared": totals["compared"],
            "mismatched": totals["mismatched"],
            "missing_offline": totals["missing_offline"],
            "tolerance": SKEW_TOLERANCE,
            "mismatches_by_feature": dict(by_feature),
        }
        if examples:
            check_metadata["examples"] = dg.MetadataValue.md(markdown_table(
                ["day", data.row_id, "feature", "online", "offline"],
                [[day, e.row_id, e.feature, e.online, e.offline]
                 for day, e in examples[:20]],
            ))
        if unknown:
            check_metadata["features_missing_offline"] = unknown
        return dg.MaterializeResult(
            metadata={
                "rows": totals["rows"],
                "retried_rows_dropped": totals["retries"],
                "missing_offline": totals["missing_offline"],
                "model_versions": dict(versions),
                "days": len(days),
                "path": dg.MetadataValue.path(str(settings.monitoring_dir / "scored_traffic")),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=SKEW_CHECK,
                    passed=totals["mismatched"] == 0 and not unknown,
                    metadata=check_metadata,
                )
            ],
        )

    return scored_traffic


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
            model = None if scored.empty else load_scoring_model(_serving_version(scored), settings)
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


# -- reports --------------------------------------------------------------------------------


def _read_traffic(settings: Settings, day: date) -> pd.DataFrame:
    path = traffic_path(settings, day)
    if (path.parent / SKEW_FILE).exists():
        raise dg.Failure(
            f"the served features of {day} differ from the offline ones "
            f"({path.parent / SKEW_FILE}): fix the skew before reporting on them"
        )
    if not path.exists():
        raise dg.Failure(f"{path} does not exist: materialize scored_traffic for {day} first")
    return pd.read_parquet(path)


@lru_cache(maxsize=2)  # the champion and the one before: `blueprint replay` runs in one process
def _reference(
    home: str, usecase: str, version: str
) -> tuple[ScoringModel, pd.DataFrame, np.ndarray]:
    """A version's model, its training rows and its scores on its test window."""
    settings = get_settings(usecase)
    model = load_scoring_model(version, settings)
    train, test = reference_rows(model.facts, settings)
    return model, train, model.score(test)


def _serving_version(traffic: pd.DataFrame) -> str:
    return str(traffic["model_version"].astype(str).value_counts().idxmax())


def _served_features(traffic: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return pd.DataFrame({f: pd.to_numeric(traffic[ONLINE_PREFIX + f]) for f in features})


def _link(settings: Settings, day: date, kind: str) -> dict:
    path = monitoring.report_path(settings.reports_dir, day, kind)
    relative = path.relative_to(settings.reports_root).as_posix()
    return {
        "report": dg.MetadataValue.url(f"http://127.0.0.1:{settings.reports_port}/{relative}"),
        "report_file": dg.MetadataValue.path(str(path)),
        "index": dg.MetadataValue.url(
            f"http://127.0.0.1:{settings.reports_port}/{settings.usecase_name}/index.html"
        ),
    }


def _record(settings: Settings, day: date, kind: str, numbers: dict) -> None:
    path = monitoring.report_path(settings.reports_dir, day, kind)
    monitoring.record_report(
        settings.reports_dir,
        monitoring.ReportEntry(
            day=day, kind=kind, html=path.relative_to(settings.reports_dir).as_posix(),
            numbers=numbers, created_at=pd.Timestamp.now(tz="UTC").isoformat(),
        ),
    )


def _metadata(numbers: dict) -> dict:
    """Numbers the Dagster UI plots (floats and ints), the rest as JSON."""
    plotted = {
        k: (float(v) if isinstance(v, float) else v)
        for k, v in numbers.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    rest = {k: v for k, v in numbers.items() if k not in plotted}
    return {**plotted, "summary": dg.MetadataValue.json(rest)} if rest else plotted


def _no_traffic(day: date) -> dict:
    return {"traffic_rows": 0, "note": f"nothing of {day} was scored"}


def _report_asset(
    scope: Scope, kind: str, description: str, build, extra_deps=(), warehouse: bool = False
) -> dg.AssetsDefinition:
    """A daily report asset: ``build(context, scope, settings, day, traffic)`` writes the day's
    HTML and returns its numbers; days without traffic get no report."""

    @dg.asset(
        key=scope.key(f"{kind}_report"),
        group_name=MONITORING_GROUP,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        deps=scope.keys("scored_traffic", *extra_deps),
        required_resource_keys={"warehouse"} if warehouse else set(),
        pool=scope.pool if warehouse else None,
        description=description,
    )
    def report_asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = scope.settings()
        results = []
        for day in partition_days(context):
            traffic = _read_traffic(settings, day)
            if traffic.empty:
                results.append((day, _no_traffic(day)))
                continue
            numbers = build(context, scope, settings, day, traffic)
            numbers["traffic_rows"] = len(traffic)
            _record(settings, day, kind, numbers)
            results.append((day, numbers))
        pruned = monitoring.prune_reports(settings.reports_dir, settings.report_keep_days)
        if pruned:
            context.log.info(f"pruned {len(pruned)} report(s) older than the kept days")
        day, numbers = results[-1]
        metadata = _metadata(numbers)
        if numbers.get("traffic_rows"):
            metadata.update(_link(settings, day, kind))
        metadata["days"] = len(results)
        metadata["days_with_traffic"] = sum(1 for _, n in results if n.get("traffic_rows"))
        return dg.MaterializeResult(metadata=metadata)

    return report_asset


def data_drift_report(
    context, scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame
) -> dict:
    model, reference, _ = _reference(str(settings.home), scope.name, _serving_version(traffic))
    numbers = monitoring.data_drift_report(
        reference, _served_features(traffic, model.features), model.features,
        monitoring.report_path(settings.reports_dir, day, "data_drift"),
        max_rows=settings.report_max_rows, seed=settings.usecase.models.seed,
    )
    return {**numbers, "model_version": model.version}


def prediction_drift_report(
    context, scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame
) -> dict:
    version = _serving_version(traffic)
    model, _, reference_scores = _reference(str(settings.home), scope.name, version)
    numbers = monitoring.prediction_drift_report(
        reference_scores, traffic[settings.usecase.serving.score].to_numpy(float),
        monitoring.report_path(settings.reports_dir, day, "prediction_drift"),
        max_rows=settings.report_max_rows, seed=settings.usecase.models.seed,
    )
    return {
        **numbers,
        "alert_rate": float(traffic["alert"].astype(bool).mean()),
        "model_version": model.version,
    }


def performance_report(
    context, scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame
) -> dict:
    usecase = settings.usecase
    row_id = usecase.data.row_id
    newest = max_report_date(context.instance, scope)
    maturity = label_maturity(
        pd.to_datetime(traffic[usecase.data.event_time]), newest,
        protocol_from(usecase).max_report_delay_days,
    )
    if maturity < 1:
        raise dg.Failure(
            f"the labels of {day} are not mature: {usecase.label.source} is loaded up to "
            f"{newest}, labels can come until {day + usecase.label.maturity}"
        )
    with context.resources.warehouse.get_connection() as con:
        con.register("traffic_ids", traffic[[row_id]])
        labelled = {
            row[0] for row in con.execute(
                f"select distinct l.{row_id} from {_staged_labels(usecase)} l "
                f"join traffic_ids t using ({row_id})"
            ).fetchall()
        }
    label = traffic[row_id].isin(labelled).astype(int)
    return _performance_numbers(scope, settings, day, traffic, label, maturity)


def _staged_labels(usecase: UseCase) -> str:
    """The staged label source of an online use case, whose rows each label their event
    positive (as the declared features' label counts read it)."""
    features = usecase.resolved_features()
    assert features is not None, "an online use case declares its features"
    return features.staged_inputs[1]


def batch_performance_report(
    context, scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame
) -> dict:
    """The day's batch scores against the labels of the use case's table, once mature."""
    usecase = settings.usecase
    data = usecase.data
    newest = max_report_date(context.instance, scope)
    mature_until = None if newest is None else newest - usecase.label.maturity
    if mature_until is None or day > mature_until:
        raise dg.Failure(
            f"the labels of {day} are not mature: {usecase.label.source} is loaded up to "
            f"{newest}, labels are final {usecase.label.maturity} later"
        )
    with context.resources.warehouse.get_connection() as con:
        # the table's labels are those known when it was built: final for the day only if it
        # was built once its label source was loaded that far (a replay, a selection, may have
        # left it behind)
        (built_through,) = con.execute(
            f"select max({data.partition_date}) from {data.table}"
        ).fetchall()[0]
        if built_through is None or built_through < day + usecase.label.maturity:
            raise dg.Failure(
                f"the labels of {day} in {data.table} are not final: it was built with the days "
                f"up to {built_through}, and they are final {usecase.label.maturity} after the "
                f"day; materialize {data.table} again"
            )
        con.register("traffic_ids", traffic[[data.row_id]])
        labels = con.execute(
            f"select t.{data.row_id}, l.{usecase.label.column} as label "
            f"from traffic_ids t left join {data.table} l using ({data.row_id})"
        ).df().set_index(data.row_id)["label"]
    label = traffic[data.row_id].map(labels)
    missing = int(label.isna().sum())
    if missing:
        raise dg.Failure(
            f"{missing} of the {len(label)} rows scored on {day} are not in {data.table}: "
            f"materialize {data.table} again"
        )
    return _performance_numbers(scope, settings, day, traffic, label.astype(int), 1.0)


def _performance_numbers(
    scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame, label: pd.Series,
    maturity: float,
) -> dict:
    usecase = settings.usecase
    version = _serving_version(traffic)
    model = load_scoring_model(version, settings)
    scorecard = Scorecard.declared(usecase)
    keys = [scorecard.day, *usecase.data.entities.values()]
    frame = traffic[[k for k in dict.fromkeys(keys) if k in traffic.columns]].assign(
        **{monitoring.SCORE: traffic[usecase.serving.score].astype(float),
           monitoring.ALERT: traffic["alert"].astype(bool),
           monitoring.LABEL: label.to_numpy()},
    )
    numbers = monitoring.performance_report(
        frame, monitoring.report_path(settings.reports_dir, day, "performance"),
        alert_threshold=model.alert_threshold, scorecard=scorecard,
        max_rows=settings.report_max_rows, seed=usecase.models.seed,
    )
    test_ap = model.facts.test_metrics.get(usecase.monitoring.decay.metric)
    return {
        **numbers,
        "label_maturity": maturity,
        "model_version": version,
        "model_test_average_precision": test_ap,
    }


DATA_DRIFT, PREDICTION_DRIFT, PERFORMANCE = monitoring.REPORT_KINDS


def monitoring_assets(scope: Scope) -> list[dg.AssetsDefinition]:
    """The traffic of each day and its three reports: the service's prediction log (with the
    training-serving skew check) or the batch scores, as the use case declares."""
    served = scope.usecase.monitoring.traffic == "prediction_log"
    return [
        scored_traffic_asset(scope) if served else batch_traffic_asset(scope),
        _report_asset(
            scope, DATA_DRIFT,
            "Evidently data drift of each day's served features against the serving model's "
            "training rows (HTML under `reports/<day>/`), with the share of drifted features.",
            data_drift_report,
        ),
        _report_asset(
            scope, PREDICTION_DRIFT,
            "Evidently drift of each day's scores against the serving model's scores on its "
            "test window (HTML under `reports/<day>/`).",
            prediction_drift_report,
        ),
        _report_asset(
            scope, PERFORMANCE,
            "Evidently classification performance of each day whose labels are mature: the "
            "served scores joined with the labels by id; the realized metrics and the alert "
            "precision achieved.",
            performance_report if served else batch_performance_report,
            extra_deps=(_staged_labels(scope.usecase),) if served else (scope.usecase.data.table,),
            warehouse=True,
        ),
    ]


def performance_ready_until(
    scope: Scope, settings: Settings, instance: dg.DagsterInstance,
    ingesting: Mapping[str, list[date]],
) -> date | None:
    """The newest day with mature labels once the partitions being ingested are loaded."""
    loaded = [d for d in (max_report_date(instance, scope),) if d is not None]
    newest = max([*loaded, *ingesting.get(scope.usecase.label.source, [])], default=None)
    return None if newest is None else newest - settings.usecase.label.maturity


def ready_until(scope: Scope) -> dict[dg.AssetKey, Callable[..., date | None]]:
    """Daily assets that can only be built up to a day (here: mature labels), with how to tell
    from the instance and the partitions about to be ingested (source -> days): ``blueprint
    materialize`` plans them up to that day and comes back for the rest later."""
    return {scope.key(f"{PERFORMANCE}_report"): partial(performance_ready_until, scope)}
