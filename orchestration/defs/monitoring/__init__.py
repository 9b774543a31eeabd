"""Monitoring: each day's traffic, its drift and performance reports, and the closed loop."""

import dagster as dg

from orchestration.defs.monitoring.assets import monitoring_assets
from orchestration.defs.monitoring.automation import monitoring_automation
from orchestration.defs.scope import Scope


def build_defs(scope: Scope) -> dg.Definitions:
    """The monitoring stage of one use case."""
    jobs, sensors, schedules = monitoring_automation(scope)
    served = scope.usecase.monitoring.traffic == "prediction_log"
    assets = monitoring_assets(scope) if served else []
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors, schedules=schedules)
