"""Serving: what an online use case's scoring service needs, and batch scoring."""

import dagster as dg

from orchestration.defs.scope import Scope
from orchestration.defs.serving.assets import serving_assets
from orchestration.defs.serving.automation import batch_scoring


def build_defs(scope: Scope) -> dg.Definitions:
    """The serving stage of one use case."""
    if scope.usecase.serving.mode == "online":
        return dg.Definitions(assets=serving_assets(scope))
    job, schedule = batch_scoring(scope)
    return dg.Definitions(assets=serving_assets(scope), jobs=[job], schedules=[schedule])
