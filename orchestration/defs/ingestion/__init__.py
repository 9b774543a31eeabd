"""Ingestion: the raw snapshots of a use case's sources, the service's prediction logs, and
what starts them."""

import dagster as dg

from orchestration.defs.ingestion.assets import raw_assets
from orchestration.defs.ingestion.automation import data_job, ingestion_automation
from orchestration.defs.ingestion.predictions import raw_predictions_asset
from orchestration.defs.scope import Scope


def build_defs(scope: Scope) -> dg.Definitions:
    """The ingestion stage of one use case."""
    job = data_job()
    sensor, schedule = ingestion_automation(scope, job)
    assets = raw_assets(scope)
    if scope.usecase.monitoring.traffic == "prediction_log":
        assets.append(raw_predictions_asset(scope))
    return dg.Definitions(assets=assets, jobs=[job], sensors=[sensor], schedules=[schedule])
