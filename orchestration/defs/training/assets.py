"""Training, the model registry and the promotion gate, as assets.

``training_data`` exports the exact rows a model learns from (and is tested on) to a Parquet
file named by its content hash; ``model_candidate`` selects a model by prequential validation,
trains it, and registers it in the model store with its immutable facts; ``champion_model`` is
the promotion gate: it scores the candidate and the current champion on the same latest test
window and promotes the candidate only if its inputs passed their checks and it is better.
"""

import base64
import json
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from orchestration.defs.partitions import newest_partition, single_run
from orchestration.defs.scope import Scope
from orchestration.lib.core.atomic import atomic_output
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.core.usecase import UseCase
from orchestration.lib.features.feature_definitions import (
    CompiledChain,
    FeatureDefinitions,
    definitions_from_dict,
)
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    ModelFacts,
    TrainingData,
    estimator_params,
    frame_fingerprint,
)
from orchestration.lib.serving.scoring import load_scoring_model
from orchestration.lib.training.families import declared_families
from orchestration.lib.training.lineage import TRAINING_DATA_FILE, id_columns, window_facts
from orchestration.lib.training.metrics import (
    Scorecard,
    alert_threshold_for_budget,
    importance_figure,
    roc_pr_figure,
)
from orchestration.lib.training.model_selection import (
    feature_importances,
    fit_final,
    prequential_search,
)
from orchestration.lib.training.promotion import GatePolicy, decide
from orchestration.lib.training.validation import (
    LABEL,
    days_needed,
    labelled_rows,
    mature_test_start,
    protocol_from,
    split_windows,
    train_test_frames,
    training_span,
    validation_test_start,
)
from orchestration.settings import Settings, pseudonymization_key

TRAINING_GROUP = "training"



def load_published_definitions(settings: Settings) -> FeatureDefinitions | CompiledChain:
    path = settings.feature_definitions_path
    if not path.exists():
        raise dg.Failure(
            f"{path} does not exist: materialize the feature models (group features) first"
        )
    return definitions_from_dict(json.loads(path.read_text()))


def _training_features(settings: Settings) -> list[str]:
    return list(settings.usecase.features.train_on)


def _exported_features(settings: Settings) -> list[str]:
    """What the candidate trains on, and what the champion needs to be scored on the same
    rows by the gate."""
    current = registry.champion(settings)
    champion_features = registry.model_facts(current.version, settings).features if current else []
    return list(dict.fromkeys([*_training_features(settings), *champion_features]))


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


def _png_markdown(title: str, png: bytes) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def _max_report_date(instance: dg.DagsterInstance, scope: Scope) -> date:
    source = scope.usecase.label.source
    newest = newest_partition(instance, scope.key(f"raw_{source}"))
    if newest is None:
        raise dg.Failure(f"no partition of {source} (the label source) is ingested: labels are "
                         "unknown")
    return newest


def _inputs_checked(
    instance: dg.DagsterInstance, scope: Scope
) -> tuple[bool, dict[str, str]]:
    """Whether the latest evaluation of every check the gate requires passed."""
    required = [pair.split(":") for pair in scope.usecase.gate.required_checks]
    keys = [dg.AssetCheckKey(scope.key(asset), name) for asset, name in required]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    states: dict[str, str] = {}
    for key in keys:
        record = latest.get(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is None:
            states[key.to_user_string()] = "never evaluated"
        else:
            states[key.to_user_string()] = "passed" if evaluation.passed else "failed"
    return all(state == "passed" for state in states.values()), states


def training_assets(scope: Scope) -> list[dg.AssetsDefinition]:
    """The use case's training data, candidate and promotion gate."""

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
        features = _exported_features(settings)
        label_columns = (usecase.label.column, usecase.label.known_at)
        columns = ", ".join(dict.fromkeys([*id_columns(usecase), *features, *label_columns]))
        with warehouse.get_connection() as con:
            (last_day,) = con.execute(
                f"select max({data.partition_date}) from {data.table}"
            ).fetchall()[0]
            if last_day is None:
                raise dg.Failure(f"{data.table} is empty")
            test_start = mature_test_start(protocol, pd.Timestamp(last_day).date(), max_report)
            final = split_windows(protocol, test_start)
            first, end = training_span(protocol, test_start)
            query = (
                f"select {columns} from {data.table} where {data.partition_date} >= '{first}' "
                f"and {data.partition_date} < '{end}' order by {data.event_time}, {data.row_id}"
            )
            frame = con.execute(query).df()
        if frame.empty or pd.Timestamp(frame[data.partition_date].min()).date() > first:
            raise dg.Failure(
                f"training needs the days {first}..{end - timedelta(days=1)} but {data.table} "
                f"starts later: the protocol needs at least {days_needed(protocol)} days of data "
                "(the windows, the folds and the label's maturity); simulate or ingest more "
                f"history, or shorten the windows ({usecase.env_prefix}PROTOCOL_TRAIN, _DELAY, "
                f"_TEST, _FOLDS, _FOLD_STEP)"
            )
        fingerprint = frame_fingerprint(frame)
        path = settings.training_dir / f"training_data-{fingerprint[:16]}.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                frame.to_parquet(tmp, index=False)
        ref = TrainingDataRef(
            path=str(path), fingerprint=fingerprint, query=query, rows=len(frame), first_day=first,
            last_day=end - timedelta(days=1), test_start=test_start, max_report_date=max_report,
        )
        return dg.Output(
            ref,
            metadata={
                "rows": len(frame),
                "positives": int(frame[usecase.label.column].sum()),
                "first_day": first.isoformat(),
                "last_day": ref.last_day.isoformat(),
                "test_window": str(final),
                "max_report_date": max_report.isoformat(),
                "fingerprint": fingerprint,
                "path": dg.MetadataValue.path(str(path)),
            },
        )


    @dg.asset(
        key=scope.key("model_candidate"),
        ins={"training_data": dg.AssetIn(scope.key("training_data"))},
        group_name=TRAINING_GROUP,
        backfill_policy=single_run,
        description=(
            "Prequential model selection over the candidate grids, the chosen model trained on the "
            "latest training window and tested on the test window, registered as a candidate."
        ),
    )
    def model_candidate(
        context: dg.AssetExecutionContext, training_data: TrainingDataRef
    ) -> dg.Output[str]:
        settings = scope.settings()
        protocol = protocol_from(settings.usecase)
        started = time.perf_counter()
        frame = training_data.frame()
        definitions = load_published_definitions(settings)
        features = _training_features(settings)
        usecase = settings.usecase
        seed = usecase.models.seed
        families, grids = declared_families(usecase)
        rows, scorecard = labelled_rows(usecase), Scorecard.declared(usecase)
        ids = id_columns(usecase)
        search = prequential_search(
            frame, features, protocol, validation_test_start(protocol, training_data.test_start),
            grids=grids, families=families, rows=rows, scorecard=scorecard,
            selection_metric=usecase.selection_metric, random_state=seed, log=context.log.info,
        )
        windows = split_windows(protocol, training_data.test_start)
        final = fit_final(search.best, frame, windows, features, rows, scorecard, random_state=seed)
        train, test = train_test_frames(frame, windows, rows)
        importances = feature_importances(
            final.pipeline, test[features], test[LABEL], random_state=seed
        )
        fold_metrics = [
            {**row, "test_start": row["test_start"].isoformat()}
            for row in search.scores[search.scores["candidate"] == search.best.name]
            .drop(columns=["candidate", "family"])
            .to_dict("records")
        ]
        facts = ModelFacts(
            params={
                "family": search.best.family,
                "family_spec": search.best.spec.as_dict(),
                "hyperparameters": dict(search.best.params),
                "pipeline": estimator_params(final.pipeline),
                "random_state": seed,
                TRAINING_DATA_FILE: str(Path(training_data.path).relative_to(settings.home)),
                "protocol": asdict(protocol),
                "grids": {k: {p: list(v) for p, v in g.items()} for k, g in grids.items()},
            },
            training_data=TrainingData(
                train=window_facts(train, ids, features, windows.train_start, windows.train_end),
                test=window_facts(test, ids, features, windows.test_start, windows.test_end),
                label_cutoff=windows.test_start,
                table=usecase.data.table,
                query=training_data.query,
            ),
            features=features,
            feature_definitions_hash=definitions.hash,
            pseudonymization_key_fingerprint=key_fingerprint(pseudonymization_key(settings)),
            fold_metrics=fold_metrics,
            test_metrics=dict(final.metrics),
            training_seconds=time.perf_counter() - started,
            reference_means={k: float(v) for k, v in final.reference_means.fillna(0.0).items()},
        )
        version = registry.save_model(final.pipeline, facts, settings=settings)
        summary = search.summary.reset_index()
        return dg.Output(
            version,
            metadata={
                "model_version": version,
                "model": search.best.name,
                "hyperparameters": dg.MetadataValue.json(dict(search.best.params)),
                **{f"test_{k}": v for k, v in final.metrics.items()},
                f"validation_{usecase.selection_metric}_mean": float(
                    search.summary.loc[search.best.name, f"{usecase.selection_metric}_mean"]
                ),
                f"validation_{usecase.selection_metric}_std": float(
                    search.summary.loc[search.best.name, f"{usecase.selection_metric}_std"]
                ),
                "test_window": str(windows),
                "train_rows": final.n_train,
                "train_positives": final.n_train_positives,
                "test_rows": final.n_test,
                "training_seconds": round(facts.training_seconds, 1),
                "candidates": dg.MetadataValue.md(summary.round(4).to_markdown(index=False)),
                "roc_pr_curves": _png_markdown(
                    "ROC and precision-recall curves (test window)",
                    roc_pr_figure(test[LABEL], final.test_predictions["score"]),
                ),
                "feature_importances": _png_markdown(
                    "Permutation importance (test window)", importance_figure(importances)
                ),
            },
        )


    @dg.asset(
        key=scope.key("champion_model"),
        ins={
            "model_candidate": dg.AssetIn(scope.key("model_candidate")),
            "training_data": dg.AssetIn(scope.key("training_data")),
        },
        group_name=TRAINING_GROUP,
        backfill_policy=single_run,
        description=(
            "The promotion gate: the candidate becomes champion only if its inputs passed their "
            "checks and it beats the champion on the same latest test window (the use case's "
            "primary metric by its margin, no guard metric worse than its tolerance); its "
            "decision threshold meets the daily decision budget on that window."
        ),
    )
    def champion_model(
        context: dg.AssetExecutionContext, model_candidate: str, training_data: TrainingDataRef
    ) -> dg.MaterializeResult:
        settings = scope.settings()
        protocol = protocol_from(settings.usecase)
        windows = split_windows(protocol, training_data.test_start)
        _, test = train_test_frames(training_data.frame(), windows, labelled_rows(scope.usecase))

        usecase = settings.usecase
        challenger = load_scoring_model(model_candidate, settings)
        challenger_scores = challenger.score(test)
        challenger_metrics = _evaluate(test, challenger_scores, usecase)
        current = registry.champion(settings)
        champion_metrics = None
        if current is not None:
            champion = load_scoring_model(current.version, settings)
            champion_metrics = _evaluate(test, champion.score(test), usecase)
        inputs_ok, check_states = _inputs_checked(context.instance, scope)
        decision = decide(
            challenger_metrics, champion_metrics, GatePolicy.declared(usecase), inputs_ok
        )
        budget = usecase.decision_budget.per_day if usecase.decision_budget else None
        threshold = None if budget is None else alert_threshold_for_budget(
            {day: group for day, group in pd.Series(challenger_scores).groupby(
                test[usecase.data.partition_date].to_numpy())},
            budget,
        )
        numbers = {
            **decision.numbers,
            registry.ALERT_THRESHOLD: threshold,
            "decisions_per_day": budget,
            "test_window": str(windows),
            "champion_version": current.version if current else None,
            "checks": check_states,
        }
        registry.record_decision(model_candidate, decision.promote, decision.reason, numbers,
                                 settings=settings)
        serving = model_candidate if decision.promote else (current.version if current else None)
        context.log.info(
            f"gate: {'promoted' if decision.promote else 'rejected'} {model_candidate}: "
            f"{decision.reason}"
        )
        return dg.MaterializeResult(
            metadata={
                "decision": "promoted" if decision.promote else "rejected",
                "reason": decision.reason,
                "candidate_version": model_candidate,
                "champion_version": serving or "none",
                "previous_champion": current.version if current else "none",
                **{f"candidate_{name}": value for name, value in challenger_metrics.items()},
                **{f"champion_{name}": value for name, value in (champion_metrics or {}).items()},
                **({"alert_threshold": threshold} if threshold is not None else {}),
                "inputs_checked": inputs_ok,
                "registry": dg.MetadataValue.md(_registry_markdown(settings)),
                "gate_numbers": dg.MetadataValue.json(
                    {k: v for k, v in numbers.items() if v is not None}
                ),
            }
        )

    return [training_data, model_candidate, champion_model]


def _evaluate(test: pd.DataFrame, scores, usecase: UseCase) -> dict[str, float]:
    return Scorecard.declared(usecase)(test, scores, LABEL)


def _registry_markdown(settings: Settings) -> str:
    """The registry as it stands after the decision: every version, its status and why."""
    rows = []
    for entry in reversed(registry.versions(settings)):
        last = registry.history(entry.version, settings)[-1]
        rows.append([entry.version, entry.status, f"{last.at:%Y-%m-%d %H:%M}", last.actor,
                     last.reason])
    return markdown_table(["version", "status", "since", "by", "why"], rows)

