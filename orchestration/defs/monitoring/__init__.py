"""Monitoring: each day's traffic, its drift and performance reports, and the closed loop."""

import dagster as dg

from orchestration.defs.monitoring.assets import monitoring_assets
from orchestration.defs.monitoring.automation import monitoring_automation
from orchestration.defs.scope import Scope


def build_defs(scope: Scope) -> dg.Definitions:
    """The monitoring stage of one use case."""
    jobs, sensors, schedules = monitoring_automation(scope)
    assets = monitoring_assets(scope)
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors, schedules=schedules)
