"""Monitoring: Evidently reports on each day's scored traffic (``traffic.py``).

``scored_traffic`` is what the use case declares as its traffic: the rows its service scored
that day beside their offline features, with the blocking skew check, or the day's batch scores
beside the features they were scored on. Three daily reports follow,
each an Evidently HTML file under ``reports/<use case>/<day>/`` linked from the
materialization, with its headline numbers in the metadata (plotted by the Dagster UI) and in
the use case's ``index.html``:

- ``data_drift_report``: the day's features against the serving model's training rows;
- ``prediction_drift_report``: the day's scores against the model's scores on its test window;
- ``performance_report``: once the day's labels are mature, the scores against the labels
  (the use case's declared metrics, the alert precision achieved).
"""

from collections.abc import Callable, Mapping
from datetime import date
from functools import lru_cache, partial

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.defs.monitoring.traffic import (
    MONITORING_GROUP,
    SKEW_FILE,
    batch_traffic_asset,
    scored_traffic_asset,
    serving_version,
    traffic_path,
)
from orchestration.defs.partitions import (
    daily_partitions,
    newest_loaded,
    partition_days,
    single_run,
)
from orchestration.defs.scope import Scope
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.monitoring import reports as monitoring
from orchestration.lib.monitoring.report_index import (
    REPORT_KINDS,
    ReportEntry,
    prune_reports,
    record_report,
    report_path,
)
from orchestration.lib.monitoring.traffic import (
    ONLINE_PREFIX,
    label_maturity,
)
from orchestration.lib.serving.scoring import ScoringModel, load_scoring_model
from orchestration.lib.training.lineage import reference_rows
from orchestration.lib.training.metrics import Scorecard
from orchestration.lib.training.validation import protocol_from
from orchestration.settings import Settings, get_settings


def max_report_date(instance: dg.DagsterInstance, scope: Scope) -> date | None:
    """The last day whose labels are loaded (the newest partition of the label source)."""
    return newest_loaded(instance, scope, scope.usecase.label.source)


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


def _served_features(traffic: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return pd.DataFrame({f: pd.to_numeric(traffic[ONLINE_PREFIX + f]) for f in features})


def _link(settings: Settings, day: date, kind: str) -> dict:
    path = report_path(settings.reports_dir, day, kind)
    relative = path.relative_to(settings.reports_root).as_posix()
    return {
        "report": dg.MetadataValue.url(f"http://127.0.0.1:{settings.reports_port}/{relative}"),
        "report_file": dg.MetadataValue.path(str(path)),
        "index": dg.MetadataValue.url(
            f"http://127.0.0.1:{settings.reports_port}/{settings.usecase_name}/index.html"
        ),
    }


def _record(settings: Settings, day: date, kind: str, numbers: dict) -> None:
    path = report_path(settings.reports_dir, day, kind)
    record_report(
        settings.reports_dir,
        ReportEntry(
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
        pruned = prune_reports(settings.reports_dir, settings.report_keep_days)
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
    model, reference, _ = _reference(str(settings.home), scope.name, serving_version(traffic))
    numbers = monitoring.data_drift_report(
        reference, _served_features(traffic, model.features), model.features,
        report_path(settings.reports_dir, day, "data_drift"),
        max_rows=settings.report_max_rows, seed=settings.usecase.models.seed,
    )
    return {**numbers, "model_version": model.version}


def prediction_drift_report(
    context, scope: Scope, settings: Settings, day: date, traffic: pd.DataFrame
) -> dict:
    version = serving_version(traffic)
    model, _, reference_scores = _reference(str(settings.home), scope.name, version)
    numbers = monitoring.prediction_drift_report(
        reference_scores, traffic[settings.usecase.serving.score].to_numpy(float),
        report_path(settings.reports_dir, day, "prediction_drift"),
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
    version = serving_version(traffic)
    model = load_scoring_model(version, settings)
    scorecard = Scorecard.declared(usecase)
    keys = [scorecard.day, *usecase.data.entities.values()]
    frame = traffic[[k for k in dict.fromkeys(keys) if k in traffic.columns]].assign(
        **{monitoring.SCORE: traffic[usecase.serving.score].astype(float),
           monitoring.ALERT: traffic["alert"].astype(bool),
           monitoring.LABEL: label.to_numpy()},
    )
    numbers = monitoring.performance_report(
        frame, report_path(settings.reports_dir, day, "performance"),
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


DATA_DRIFT, PREDICTION_DRIFT, PERFORMANCE = REPORT_KINDS


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
