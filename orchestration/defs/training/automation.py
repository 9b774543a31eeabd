"""The training job: train a candidate, pass it through the gate, publish the serving files."""

import dagster as dg

from orchestration.defs.training.assets import TRAINING_GROUP

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups(TRAINING_GROUP)
    | dg.AssetSelection.assets("serving_snapshot", "fraud_scorer_bento"),
    description=(
        "Export the training data, select and train a candidate, run the promotion gate, "
        "publish the serving snapshot and build the champion's Bento. Monitoring's sensors "
        "and schedule launch it."
    ),
)
