"""dbt models as Dagster assets, split in two so a quality gate can sit between them.

``feature_models`` builds a use case's staging, intermediate and feature marts;
``training_models`` builds the table its models learn from (the declaration's ``data.table``)
and what depends on it. A blocking check on a feature mart therefore stops the training data
from being built from bad features in the same run.
"""


import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orchestration.defs.features.project import dbt_project
from orchestration.defs.partitions import single_run
from orchestration.defs.scope import Scope
from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.core.usecase import usecase_names
from orchestration.lib.features.catalog import (
    CATALOG_PAGE,
    STATIC_PAGE,
    catalog_is_current,
    model_anchor,
    project_fingerprint,
    publish_catalog,
)
from orchestration.lib.features.feature_definitions import (
    FeatureDefinitionsError,
    load_compiled_chain,
    load_feature_definitions,
)
from orchestration.lib.monitoring.report_index import write_root_index
from orchestration.settings import (
    DBT_PROJECT_DIR,
    FEATURE_CATALOG_DIR,
    USECASES_DIR,
    Settings,
    export_to_subprocesses,
    get_settings,
)


def usecase_models(scope: Scope) -> str:
    """The use case's dbt models: its folder of the project (dbt names are project-wide)."""
    return f"path:models/{scope.name}"


def gated_selection(scope: Scope) -> str:
    """Models built only after the feature quality gate passed: the training table and after."""
    return f"{scope.usecase.data.table}+"


class BlueprintDbtTranslator(DagsterDbtTranslator):
    """Every dbt model in the ``features`` group, keyed under the use case's prefix; raw
    sources keep the keys their YAML names, under the same prefix."""

    def __init__(self, scope: Scope) -> None:
        # Quarantine records come from the same ingestion assets as the snapshots, so several
        # dbt sources map to one asset key.
        super().__init__(DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))
        self.scope = scope
        self.catalog_page = (
            f"http://127.0.0.1:{get_settings(scope.name).reports_port}/{scope.name}/"
            f"{FEATURE_CATALOG_DIR}/{CATALOG_PAGE}"
        )
        """The use case's feature catalog, as `blueprint ui` serves it."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        return super().get_asset_key(dbt_resource_props).with_prefix(self.scope.name)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """dagster-dbt's metadata, plus a link to the model's page in the feature catalog (dbt's
        docs site, served by `blueprint ui` beside the reports) for each model."""
        metadata = dict(super().get_metadata(dbt_resource_props))
        if dbt_resource_props.get("resource_type") == "model":
            metadata["feature_catalog"] = dg.MetadataValue.url(
                self.catalog_page + model_anchor(dbt_resource_props["name"])
            )
        return metadata


def publish_feature_definitions(manifest_path: Path, settings: Settings) -> str:
    """Write the compiled feature SQL of a dbt run where training and serving read it.

    Returns the definitions' hash. Training records it in every model's facts; serving (of an
    online use case) runs exactly this SQL and refuses a champion whose hash differs.
    """
    usecase = settings.usecase
    definitions = (
        load_feature_definitions(manifest_path, usecase.resolved_features())
        if usecase.serving.online
        else load_compiled_chain(manifest_path, usecase.data.features_table)
    )
    target = settings.feature_definitions_path
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, (json.dumps(definitions.to_dict(), indent=2) + "\n").encode())
    return definitions.hash


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def _partial_parse_store(settings: Settings) -> Path:
    """This home's copy of dbt's parse state.

    dbt reuses a previous parse only when the rendered profile is unchanged, and the profile
    holds the warehouse's path under BLUEPRINT_HOME: the parse state ``make setup`` leaves in
    the project's target/ fits one home only, and every dbt call on another home (a test world,
    a benchmark, a second deployment) would parse the whole project again (figures:
    docs/OPERATING_NOTES.md).
    Each home keeps the state of its own last dbt call instead, per use case (each has its
    warehouse, so its own rendered profile).
    """
    return settings.home / "dbt" / settings.usecase_name / PARTIAL_PARSE_FILE


KEPT_DBT_CALLS = 10
"""dbt calls whose folders (manifest, run results, compiled SQL, debug log; their size:
docs/OPERATING_NOTES.md) a home keeps under ``BLUEPRINT_HOME/dbt/calls/``; older ones are
deleted after each call."""


def _calls_dir(settings: Settings) -> Path:
    """Where this home's dbt calls write: inside the home, so one home's logs never mix with
    another's (tests, benchmarks, a second world) and the PII scan of a home sees its own."""
    return settings.home / "dbt" / settings.usecase_name / "calls"


def _target_path(context: dg.AssetExecutionContext, settings: Settings, step: str) -> Path:
    """A fresh target folder for one dbt call, seeded with this home's parse state (dagster-dbt
    seeds it from the project's target/ when the home has none yet)."""
    target = _calls_dir(settings) / f"{step}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    store = _partial_parse_store(settings)
    if store.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(store, target / PARTIAL_PARSE_FILE)
    return target


def _keep_partial_parse(target: Path, settings: Settings) -> None:
    """Keep the parse state a successful dbt call wrote, for this home's next call, and drop
    the folders of all but the newest ``KEPT_DBT_CALLS`` calls."""
    state = target / PARTIAL_PARSE_FILE
    if state.exists():
        store = _partial_parse_store(settings)
        store.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(store) as tmp:
            shutil.copy2(state, tmp)
    prune_dbt_calls(target.parent, KEPT_DBT_CALLS)


def prune_dbt_calls(calls_dir: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently written call folders; return what went."""
    written = {}
    for folder in calls_dir.iterdir():
        try:
            if folder.is_dir():
                written[folder] = folder.stat().st_mtime_ns
        except FileNotFoundError:  # another process pruned it meanwhile
            continue
    calls = sorted(written, key=written.__getitem__)
    gone = calls[:-keep] if keep > 0 else calls
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    return gone


def _build_dbt_assets(
    scope: Scope, name: str, publishes_definitions: bool = False, **selection: str
) -> dg.AssetsDefinition:
    """One dbt step: ``dbt build`` of the selected models and their tests."""
    output = scope.usecase.data.features_table
    features_output = scope.key(output)

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        name=name,
        dagster_dbt_translator=BlueprintDbtTranslator(scope),
        backfill_policy=single_run,
        pool=scope.pool,
        **selection,
    )
    def _dbt_step(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        settings = scope.settings()
        # dbt reads BLUEPRINT_HOME and BLUEPRINT_USECASE (its warehouse file) through env_var()
        export_to_subprocesses(settings)
        # cautious: a test runs only with all the models it reads (a test relating training_set
        # to transaction_features must not run in the step that builds only the latter).
        # Unit tests check the SQL, not the data: `make test` runs them (tests/features), a
        # pipeline run does not (dbt's advice for production runs).
        invocation = dbt.cli(
            ["build", "--indirect-selection", "cautious", "--exclude-resource-type", "unit_test",
             *scope.usecase.dbt_arguments()],
            context=context,
            raise_on_error=True, target_path=_target_path(context, settings, name),
        )
        yield from invocation.stream()
        _keep_partial_parse(invocation.target_path, settings)
        if publishes_definitions and features_output in context.selected_asset_keys:
            manifest = invocation.target_path / "manifest.json"
            try:
                digest = publish_feature_definitions(manifest, settings)
            except FeatureDefinitionsError:
                # a subset run did not build the whole chain: compile it (no data is touched)
                compiled = dbt.cli(
                    ["compile", "--select", f"+{output}", *scope.usecase.dbt_arguments()],
                    raise_on_error=True,
                    target_path=_target_path(context, settings, name),
                )
                compiled.wait()
                manifest = compiled.target_path / "manifest.json"  # the catalog's too
                digest = publish_feature_definitions(manifest, settings)
            context.log.info(f"published feature definitions {digest[:12]}")
            _refresh_feature_catalog(context, dbt, scope, settings, name, manifest)

    return _dbt_step


def _refresh_feature_catalog(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, scope: Scope, settings: Settings,
    step: str, manifest: Path,
) -> None:
    """Generate the use case's feature catalog (dbt's docs site) when its dbt project changed
    since the published one; inside the step, so inside the warehouse pool (dbt reads the
    warehouse's columns). A failure is logged, not raised: the data is built, and the next run
    tries again (the fingerprint is written only with a new page)."""
    fingerprint = project_fingerprint(DBT_PROJECT_DIR, scope.name, scope.usecase.dbt_arguments())
    catalog_dir = settings.feature_catalog_dir
    if catalog_is_current(catalog_dir, fingerprint):
        return
    target = _target_path(context, settings, f"{step}_docs")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(manifest, target / "manifest.json")  # the build's: its compiled SQL, no compile
    try:
        docs = dbt.cli(
            ["docs", "generate", "--static", "--no-compile",
             "--select", usecase_models(scope), *scope.usecase.dbt_arguments()],
            raise_on_error=True, target_path=target,
        )
        docs.wait()
        page = publish_catalog(docs.target_path / STATIC_PAGE, catalog_dir, fingerprint)
        write_root_index(settings.reports_root, usecase_names(USECASES_DIR))
    except Exception as failure:  # noqa: BLE001 - the catalog never blocks the data
        context.log.warning(f"the feature catalog was not generated: {failure}")
        return
    context.log.info(f"published the feature catalog {page}")


def dbt_steps(scope: Scope) -> list[dg.AssetsDefinition]:
    """The use case's two dbt steps: its feature models, then (after the feature gate) the
    table its models learn from and what depends on it."""
    feature_models = _build_dbt_assets(
        scope, "feature_models", publishes_definitions=True,
        select=usecase_models(scope), exclude=gated_selection(scope),
    )
    training_models = _build_dbt_assets(
        scope, "training_models", select=f"{usecase_models(scope)},{gated_selection(scope)}"
    )
    return [feature_models, training_models]
