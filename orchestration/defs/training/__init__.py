"""Training: the training data, the candidate, the promotion gate and the training job."""

import dagster as dg

from orchestration.defs.scope import Scope
from orchestration.defs.training.assets import training_assets
from orchestration.defs.training.automation import training_job


def build_defs(scope: Scope) -> dg.Definitions:
    """The training stage of one use case."""
    return dg.Definitions(assets=training_assets(scope), jobs=[training_job(scope)])
