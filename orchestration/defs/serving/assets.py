"""What the scoring service needs, published as files, and batch scoring with the champion.

The service never opens ``warehouse.duckdb`` (DuckDB refuses even a read-only open while a run
writes it): ``serving_snapshot`` exports the recent staged history it bootstraps its online
state from, replaced atomically. ``batch_scores`` scores each day's payments with the champion
(the same :class:`orchestration.lib.serving.scoring.ScoringModel` the service uses) and writes the
day's investigation queue.
"""

import json
import os
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import yaml
from dagster_duckdb import DuckDBResource

from orchestration.defs.partitions import daily_partitions, partition_days, single_run
from orchestration.defs.scope import Scope
from orchestration.defs.training.assets import load_published_definitions
from orchestration.lib.core.atomic import atomic_output
from orchestration.lib.registry import registry
from orchestration.lib.serving.bento import BENTO_ASSET, bento_name, bentofile_for
from orchestration.lib.serving.scoring import DailyScoring, load_champion, score_days
from orchestration.lib.serving.snapshot import publish_serving_snapshot
from orchestration.settings import NO_TELEMETRY_ENV, PROJECT_ROOT, USECASE_ENV, Settings

SERVING_GROUP = "serving"
BATCH_SCORING_CHUNK_DAYS = 7
"""Days ``batch_scores`` reads and scores at once (a backfill of months stays in memory)."""

def serving_snapshot_asset(scope: Scope) -> dg.AssetsDefinition:
    """What an online use case's scoring service bootstraps from."""
    features = scope.usecase.resolved_features()
    assert features is not None, "an online use case declares its features"

    @dg.asset(
        group_name=SERVING_GROUP,
        backfill_policy=single_run,
        key=scope.key("serving_snapshot"),
        deps=scope.keys(*features.staged_inputs, features.mart),
        pool=scope.pool,
        description=(
            "The staged history the scoring service bootstraps its online features from (the "
            "longest feature window up to the last loaded day) and the compiled feature SQL, as "
            "Parquet files switched atomically (serving/snapshots/CURRENT)."
        ),
    )
    def serving_snapshot(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = scope.settings()
        definitions = load_published_definitions(settings)
        snapshot = publish_serving_snapshot(
            settings.warehouse_path, definitions, settings.snapshot_dir
        )
        tables = snapshot.manifest["tables"]
        return dg.MaterializeResult(
            metadata={
                "version": snapshot.version,
                "first_day": snapshot.manifest["first_day"],
                "last_day": snapshot.manifest["last_day"],
                **{f"{name} rows": table["rows"] for name, table in tables.items()},
                "feature_definitions_hash": definitions.hash,
                "path": dg.MetadataValue.path(str(snapshot.path)),
            }
        )

    return serving_snapshot


SCORES_FILE, LIST_FILE = "scores.parquet", "daily_list.parquet"
"""Per day: every row's score, and the day's list within the decision budget (the riskiest
entities with their reasons: fraud's investigation queue, churn's retention list)."""


def scores_path(settings: Settings, day: date) -> tuple[Path, Path]:
    folder = settings.scores_dir / f"{settings.usecase.data.partition_date}={day.isoformat()}"
    return folder / SCORES_FILE, folder / LIST_FILE


def batch_scores_asset(scope: Scope) -> dg.AssetsDefinition:
    """Each day scored by the champion, and the day's decisions within the budget."""

    @dg.asset(
        group_name=SERVING_GROUP,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        key=scope.key("batch_scores"),
        deps=scope.keys(scope.usecase.data.features_table, "champion_model"),
        pool=scope.pool,
        description=(
            "Each day's rows scored by the champion, and the day's list within the decision "
            "budget (the riskiest entities, each with the reasons of its riskiest row), as "
            "Parquet under scores/<use case>/."
        ),
    )
    def batch_scores(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        settings = scope.settings()
        data = settings.usecase.data
        scoring = DailyScoring.declared(settings.usecase)
        model = load_champion(settings)
        days = partition_days(context)
        columns = ", ".join(dict.fromkeys([*scoring.kept, *model.features]))
        n_alerts = n_rows = 0
        # days in chunks: one prediction per chunk, and memory bounded by a chunk, not the range
        for start in range(0, len(days), BATCH_SCORING_CHUNK_DAYS):
            chunk = days[start:start + BATCH_SCORING_CHUNK_DAYS]
            with warehouse.get_connection() as con:
                frame = con.execute(
                    f"select {columns} from {data.features_table} "
                    f"where {data.partition_date} >= ? and {data.partition_date} < ? "
                    f"order by {data.event_time}, {data.row_id}",
                    [chunk[0], chunk[-1] + timedelta(days=1)],
                ).df()
            n_rows += len(frame)
            for day, (scored, queue) in score_days(model, frame, chunk, scoring).items():
                n_alerts += int(scored["alert"].sum())
                scores_file, queue_file = scores_path(settings, day)
                scores_file.parent.mkdir(parents=True, exist_ok=True)
                with atomic_output(scores_file) as tmp:
                    scored.to_parquet(tmp, index=False)
                with atomic_output(queue_file) as tmp:
                    queue.to_parquet(tmp, index=False)
        return dg.MaterializeResult(
            metadata={
                "model_version": model.version,
                "alert_threshold": model.alert_threshold,
                "rows_scored": n_rows,
                "alerts": n_alerts,
                "days": len(days),
                "path": dg.MetadataValue.path(str(settings.scores_dir)),
            }
        )

    return batch_scores


def _bentoml(settings: Settings, *args: str) -> str:
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "bentoml"), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **NO_TELEMETRY_ENV, "BENTOML_HOME": str(settings.bentoml_home),
             USECASE_ENV: settings.usecase_name},
        capture_output=True, text=True, timeout=900, check=False,
    )
    if completed.returncode != 0:
        raise dg.Failure(
            f"bentoml {' '.join(args)} failed ({completed.returncode}):\n"
            f"{(completed.stdout + completed.stderr)[-3000:]}"
        )
    return completed.stdout


def bento_asset(scope: Scope) -> dg.AssetsDefinition:
    """The deployable Bento of an online use case's champion."""
    name = bento_name(scope.usecase.name)

    @dg.asset(
        group_name=SERVING_GROUP,
        backfill_policy=single_run,
        key=scope.key(BENTO_ASSET),
        deps=[scope.key("champion_model")],
        description=(
            f"The deployable artifact: a Bento `{name}` of bentos/scorer (the service code of "
            "every online use case) for this use case, with the champion's model packed in, "
            "built once per champion (labelled `champion_version=<version>`)."
        ),
    )
    def scorer_bento(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        settings = scope.settings()
        version = registry.champion_version(settings)
        bentos = json.loads(_bentoml(settings, "list", "-o", "json") or "[]")
        for bento in bentos:
            labels = bento.get("labels") or {}
            built = labels.get("champion_version") == version
            if bento["tag"].startswith(f"{name}:") and built:
                tag = bento["tag"]
                context.log.info(f"{tag} already packs champion {version}: not rebuilt")
                break
        else:
            bentofile = bentofile_for(
                settings.usecase_name, [f"{registry.model_name(settings)}:{version}"]
            )
            with tempfile.TemporaryDirectory() as tmp:
                spec = Path(tmp) / "bentofile.yaml"
                spec.write_text(yaml.safe_dump(bentofile, sort_keys=False))
                tag = _bentoml(
                    settings, "build", "-f", str(spec), "--label", f"champion_version={version}",
                    "-o", "tag", str(PROJECT_ROOT),
                ).strip().splitlines()[-1].removeprefix("__tag__:")
        return dg.MaterializeResult(
            metadata={
                "bento": tag,
                "champion_version": version,
                "serve": dg.MetadataValue.md(
                    f"`BLUEPRINT_HOME={settings.home} BENTOML_HOME={settings.bentoml_home} "
                    f"bentoml serve {tag} --host 127.0.0.1` (the home gives it the snapshot and "
                    "the pseudonymization key; the bearer token is BLUEPRINT_SERVING_TOKEN or "
                    "the file `blueprint serve` creates; BentoML's default host is "
                    "every interface), or `bentoml containerize` it; `blueprint serve` runs the "
                    "same service from source"
                ),
            }
        )

    return scorer_bento


def serving_assets(scope: Scope) -> list[dg.AssetsDefinition]:
    """Online: the serving snapshot and the Bento; batch: the daily scores (both: all)."""
    mode = scope.usecase.serving.mode
    online = [serving_snapshot_asset(scope), bento_asset(scope)] if mode != "batch" else []
    return [*online, *([batch_scores_asset(scope)] if mode != "online" else [])]
