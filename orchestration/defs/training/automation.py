"""The training job: train a candidate, pass it through the gate, publish the serving files."""

import dagster as dg

from orchestration.defs.scope import Scope
from orchestration.defs.training.assets import TRAINING_GROUP
from orchestration.lib.serving.bento import BENTO_ASSET

TRAINING_JOB = "training_job"


def training_job(scope: Scope):
    """Training and the gate; for an online use case, also the serving snapshot and Bento."""
    selection = dg.AssetSelection.groups(TRAINING_GROUP)
    published = "."
    if scope.usecase.serving.online:
        selection |= dg.AssetSelection.assets(
            *scope.keys("serving_snapshot", BENTO_ASSET)
        )
        published = ", publish the serving snapshot and build the champion's Bento."
    return dg.define_asset_job(
        TRAINING_JOB,
        selection=selection,
        description=(
            "Export the training data, select and train a candidate, run the promotion gate"
            f"{published} Monitoring's sensors and schedule launch it."
        ),
    )
