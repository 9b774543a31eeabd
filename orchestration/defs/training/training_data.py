"""``training_data``: the exact rows a model learns from (and is tested on), exported to a
Parquet file named by its content hash, and what the training assets share."""

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from duckdb import DuckDBPyConnection

from orchestration.defs.partitions import newest_loaded, single_run
from orchestration.defs.scope import Scope
from orchestration.lib.core.atomic import atomic_output
from orchestration.lib.core.sections import Data
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.features.feature_definitions import (
    CompiledChain,
    FeatureDefinitions,
    definitions_from_dict,
)
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    frame_fingerprint,
)
from orchestration.lib.training.lineage import id_columns
from orchestration.lib.training.validation import (
    Protocol,
    days_needed,
    mature_test_start,
    protocol_from,
    split_windows,
    training_span,
)
from orchestration.settings import Settings

TRAINING_GROUP = "training"


def load_published_definitions(settings: Settings) -> FeatureDefinitions | CompiledChain:
    """The feature definitions the feature models published (what serving computes)."""
    path = settings.feature_definitions_path
    if not path.exists():
        raise dg.Failure(
            f"{path} does not exist: materialize the feature models (group features) first"
        )
    return definitions_from_dict(json.loads(path.read_text()))


def training_features(settings: Settings) -> list[str]:
    """The features the candidate trains on."""
    return list(settings.usecase.features.train_on)


def _exported_features(settings: Settings) -> list[str]:
    """What the candidate trains on, and what the champion needs to be scored on the same
    rows by the gate."""
    current = registry.champion(settings)
    champion_features = registry.model_facts(current.version, settings).features if current else []
    return list(dict.fromkeys([*training_features(settings), *champion_features]))


@dataclass(frozen=True)
class TrainingDataRef:
    """What ``training_data`` hands on: the exported rows and the dates that frame them."""

    path: str
    fingerprint: str
    query: str
    """The SQL that read the rows from the warehouse."""
    rows: int
    first_day: date
    last_day: date
    test_start: date
    """First day of the final (latest mature) test window."""
    max_report_date: date
    """The last day whose fraud reports were loaded when the rows were read."""

    def frame(self) -> pd.DataFrame:
        return pd.read_parquet(self.path)


def _max_report_date(instance: dg.DagsterInstance, scope: Scope) -> date:
    source = scope.usecase.label.source
    newest = newest_loaded(instance, scope, source)
    if newest is None:
        raise dg.Failure(f"no partition of {source} (the label source) is ingested: labels are "
                         "unknown")
    return newest


def training_data_asset(scope: Scope) -> dg.AssetsDefinition:
    """The use case's training rows for the latest mature test window and its folds."""

    @dg.asset(
        group_name=TRAINING_GROUP,
        backfill_policy=single_run,
        key=scope.key("training_data"),
        deps=[scope.key(scope.usecase.data.table)],
        pool=scope.pool,
        description=(
            "The exact rows training and testing read (ids, features, label and when it became "
            "known) for the latest mature test window and its prequential folds, as Parquet "
            "named by content hash."
        ),
    )
    def training_data(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource
    ) -> dg.Output[TrainingDataRef]:
        settings = scope.settings()
        protocol = protocol_from(settings.usecase)
        usecase = settings.usecase
        data = usecase.data
        max_report = _max_report_date(context.instance, scope)
        columns = _exported_columns(settings)
        with warehouse.get_connection() as con:
            test_start = mature_test_start(protocol, _last_day(con, data), max_report)
            first, end = training_span(protocol, test_start)
            query = (
                f"select {columns} from {data.table} where {data.partition_date} >= '{first}' "
                f"and {data.partition_date} < '{end}' order by {data.event_time}, {data.row_id}"
            )
            frame = con.execute(query).df()
        _require_history(frame, first, end, protocol, usecase)
        fingerprint = frame_fingerprint(frame)
        path = _exported(frame, settings.training_dir / f"training_data-{fingerprint[:16]}.parquet")
        ref = TrainingDataRef(
            path=str(path), fingerprint=fingerprint, query=query, rows=len(frame), first_day=first,
            last_day=end - timedelta(days=1), test_start=test_start, max_report_date=max_report,
        )
        return dg.Output(ref, metadata=_training_data_metadata(ref, frame, protocol, usecase))

    return training_data


def _exported_columns(settings: Settings) -> str:
    """The SQL column list of the exported rows: ids, features, the label and when it was known."""
    usecase = settings.usecase
    features = _exported_features(settings)
    label_columns = (usecase.label.column, usecase.label.known_at)
    return ", ".join(dict.fromkeys([*id_columns(usecase), *features, *label_columns]))


def _last_day(con: DuckDBPyConnection, data: Data) -> date:
    """The newest day of the use case's table, or a failure when the table is empty."""
    (last_day,) = con.execute(
        f"select max({data.partition_date}) from {data.table}"
    ).fetchall()[0]
    if last_day is None:
        raise dg.Failure(f"{data.table} is empty")
    return pd.Timestamp(last_day).date()


def _require_history(
    frame: pd.DataFrame, first: date, end: date, protocol: Protocol, usecase: UseCase
) -> None:
    """Fail, naming the days the protocol needs, when the table starts after ``first``."""
    data = usecase.data
    if frame.empty or pd.Timestamp(frame[data.partition_date].min()).date() > first:
        raise dg.Failure(
            f"training needs the days {first}..{end - timedelta(days=1)} but {data.table} "
            f"starts later: the protocol needs at least {days_needed(protocol)} days of data "
            "(the windows, the folds and the label's maturity); simulate or ingest more "
            f"history, or shorten the windows ({usecase.env_prefix}PROTOCOL_TRAIN, _DELAY, "
            f"_TEST, _FOLDS, _FOLD_STEP)"
        )


def _exported(frame: pd.DataFrame, path: Path) -> Path:
    """``path`` holding ``frame`` as Parquet; named by content, an existing file is kept."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            frame.to_parquet(tmp, index=False)
    return path


def _training_data_metadata(
    ref: TrainingDataRef, frame: pd.DataFrame, protocol: Protocol, usecase: UseCase
) -> dict[str, object]:
    """What the Dagster UI shows of the exported rows: their size, days, windows and file."""
    return {
        "rows": len(frame),
        "positives": int(frame[usecase.label.column].sum()),
        "first_day": ref.first_day.isoformat(),
        "last_day": ref.last_day.isoformat(),
        "test_window": str(split_windows(protocol, ref.test_start)),
        "max_report_date": ref.max_report_date.isoformat(),
        "fingerprint": ref.fingerprint,
        "path": dg.MetadataValue.path(ref.path),
    }
