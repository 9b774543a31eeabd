"""The one place that assembles Blueprint's Definitions and applies global policy."""

import dagster as dg

from orchestration.defs.features.assets import feature_models, training_models
from orchestration.defs.ingestion.assets import raw_assets
from orchestration.defs.ingestion.automation import (
    daily_ingestion_schedule,
    data_job,
    landing_file_sensor,
)
from orchestration.defs.ingestion.predictions import raw_predictions
from orchestration.defs.monitoring.assets import monitoring_assets
from orchestration.defs.monitoring.automation import (
    monitoring_jobs,
    monitoring_schedules,
    monitoring_sensors,
)
from orchestration.defs.quality.checks import pii_checks, suite_checks
from orchestration.defs.resources import resources_for_env
from orchestration.defs.serving.assets import serving_assets
from orchestration.defs.serving.automation import batch_scoring_schedule, scoring_job
from orchestration.defs.training.assets import training_assets
from orchestration.defs.training.automation import training_job
from orchestration.settings import export_to_subprocesses

export_to_subprocesses()

defs = dg.Definitions(
    assets=[
        *raw_assets,
        raw_predictions,
        feature_models,
        training_models,
        *training_assets,
        *serving_assets,
        *monitoring_assets,
    ],
    asset_checks=[*suite_checks, *pii_checks],
    jobs=[data_job, training_job, scoring_job, *monitoring_jobs],
    sensors=[landing_file_sensor, *monitoring_sensors],
    schedules=[daily_ingestion_schedule, batch_scoring_schedule, *monitoring_schedules],
    resources=resources_for_env(),
    # Steps share one DuckDB file and a 2-core machine: run them in one process, in order.
    executor=dg.in_process_executor,
)
