"""dbt models as Dagster assets, split in two so a quality gate can sit between them.

``feature_models`` builds staging, intermediate and the feature marts; ``training_models`` builds
``training_set`` and what depends on it. A blocking check on ``transaction_features`` therefore
stops the training data from being built from bad features in the same run.
"""


from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from orchestration.defs.features.project import dbt_project
from orchestration.defs.partitions import WAREHOUSE_POOL, single_run
from orchestration.settings import export_to_subprocesses

GATED_SELECTION = "training_set+"
"""Models built only after the feature quality gate passed."""


class BlueprintDbtTranslator(DagsterDbtTranslator):
    """Every dbt model in the ``features`` group; raw sources keep the keys their YAML names."""

    def __init__(self) -> None:
        # Quarantine records come from the same ingestion assets as the snapshots, so several
        # dbt sources map to one asset key.
        super().__init__(DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"


def _dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    export_to_subprocesses()  # dbt reads BLUEPRINT_HOME through env_var()
    yield from dbt.cli(["build"], context=context, raise_on_error=True).stream()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=GATED_SELECTION,
    name="feature_models",
    dagster_dbt_translator=BlueprintDbtTranslator(),
    backfill_policy=single_run,
    pool=WAREHOUSE_POOL,
)
def feature_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Staging (PII removed), intermediate models and the feature marts."""
    yield from _dbt_build(context, dbt)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select=GATED_SELECTION,
    name="training_models",
    dagster_dbt_translator=BlueprintDbtTranslator(),
    backfill_policy=single_run,
    pool=WAREHOUSE_POOL,
)
def training_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """The training set: features, label and when the label became known."""
    yield from _dbt_build(context, dbt)
