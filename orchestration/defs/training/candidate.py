"""``model_candidate``: a model selected by prequential validation over the declared families'
grids, trained on the latest training window, tested, and registered with its immutable facts."""

import base64
import time
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from orchestration.defs.partitions import single_run
from orchestration.defs.scope import Scope
from orchestration.defs.training.training_data import (
    TRAINING_GROUP,
    TrainingDataRef,
    load_published_definitions,
    training_features,
)
from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.registry.facts import (
    ModelFacts,
    TrainingData,
    estimator_params,
)
from orchestration.lib.training.families import declared_families
from orchestration.lib.training.lineage import TRAINING_DATA_FILE, id_columns, window_facts
from orchestration.lib.training.metrics import (
    Scorecard,
    importance_figure,
    roc_pr_figure,
)
from orchestration.lib.training.model_selection import (
    FinalModel,
    SearchResult,
    feature_importances,
    fit_final,
    prequential_search,
)
from orchestration.lib.training.validation import (
    LABEL,
    Protocol,
    Windows,
    labelled_rows,
    protocol_from,
    split_windows,
    train_test_frames,
    validation_test_start,
)
from orchestration.settings import Settings, pseudonymization_key


def _png_markdown(title: str, png: bytes) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def model_candidate_asset(scope: Scope) -> dg.AssetsDefinition:
    """The use case's candidate model, registered in the model store."""

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
        features = training_features(settings)
        usecase = settings.usecase
        seed = usecase.models.seed
        families, grids = declared_families(usecase)
        rows, scorecard = labelled_rows(usecase), Scorecard.declared(usecase)
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
        facts = ModelFacts(
            params=_model_params(search, final, grids, protocol, training_data, settings),
            training_data=_training_rows(train, test, windows, features, training_data, settings),
            features=features,
            feature_definitions_hash=definitions.hash,
            pseudonymization_key_fingerprint=key_fingerprint(pseudonymization_key(settings)),
            fold_metrics=_fold_metrics(search),
            test_metrics=dict(final.metrics),
            training_seconds=time.perf_counter() - started,
            reference_means={k: float(v) for k, v in final.reference_means.fillna(0.0).items()},
        )
        version = registry.save_model(final.pipeline, facts, settings=settings)
        return dg.Output(
            version,
            metadata=_candidate_metadata(
                version, search, final, windows, test, importances, facts,
                usecase.selection_metric,
            ),
        )

    return model_candidate


def _model_params(
    search: SearchResult, final: FinalModel, grids: dict, protocol: Protocol,
    training_data: TrainingDataRef, settings: Settings,
) -> dict:
    """How the candidate was chosen and built: its family, hyperparameters, pipeline, seed,
    training file, protocol and the grids searched."""
    return {
        "family": search.best.family,
        "family_spec": search.best.spec.as_dict(),
        "hyperparameters": dict(search.best.params),
        "pipeline": estimator_params(final.pipeline),
        "random_state": settings.usecase.models.seed,
        TRAINING_DATA_FILE: str(Path(training_data.path).relative_to(settings.home)),
        "protocol": asdict(protocol),
        "grids": {k: {p: list(v) for p, v in g.items()} for k, g in grids.items()},
    }


def _training_rows(
    train: pd.DataFrame, test: pd.DataFrame, windows: Windows, features: list[str],
    training_data: TrainingDataRef, settings: Settings,
) -> TrainingData:
    """Which rows the candidate was trained and tested on, and the query that read them."""
    usecase = settings.usecase
    ids = id_columns(usecase)
    return TrainingData(
        train=window_facts(train, ids, features, windows.train_start, windows.train_end),
        test=window_facts(test, ids, features, windows.test_start, windows.test_end),
        label_cutoff=windows.test_start,
        table=usecase.data.table,
        query=training_data.query,
    )


def _fold_metrics(search) -> list[dict]:
    """The chosen candidate's scores on each validation fold."""
    return [
        {**row, "test_start": row["test_start"].isoformat()}
        for row in search.scores[search.scores["candidate"] == search.best.name]
        .drop(columns=["candidate", "family"])
        .to_dict("records")
    ]


def _candidate_metadata(
    version: str, search, final, windows, test: pd.DataFrame, importances, facts: ModelFacts,
    selection_metric: str,
) -> dict:
    """What the Dagster UI shows of a candidate: its version, scores, rows and figures."""
    summary = search.summary.reset_index()
    return {
        "model_version": version,
        "model": search.best.name,
        "hyperparameters": dg.MetadataValue.json(dict(search.best.params)),
        **{f"test_{k}": v for k, v in final.metrics.items()},
        f"validation_{selection_metric}_mean": float(
            search.summary.loc[search.best.name, f"{selection_metric}_mean"]
        ),
        f"validation_{selection_metric}_std": float(
            search.summary.loc[search.best.name, f"{selection_metric}_std"]
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
    }
