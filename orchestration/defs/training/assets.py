"""Training, the model registry and the promotion gate, as assets.

``training_data`` exports the exact rows a model learns from (and is tested on) to a Parquet
file named by its content hash; ``model_candidate`` selects a model by prequential validation,
trains it, and registers it in the model store with its immutable facts; ``champion_model`` is
the promotion gate: it scores the candidate and the current champion on the same latest test
window and promotes the candidate only if its inputs passed their checks and it is better.
One module each: ``training_data``, ``candidate``, ``gate``.
"""

import dagster as dg

from orchestration.defs.scope import Scope
from orchestration.defs.training.candidate import model_candidate_asset
from orchestration.defs.training.gate import champion_model_asset
from orchestration.defs.training.training_data import (
    TRAINING_GROUP,
    TrainingDataRef,
    load_published_definitions,
    training_data_asset,
)

__all__ = ["TRAINING_GROUP", "TrainingDataRef", "load_published_definitions", "training_assets"]


def training_assets(scope: Scope) -> list[dg.AssetsDefinition]:
    """The use case's training data, candidate and promotion gate."""
    return [training_data_asset(scope), model_candidate_asset(scope), champion_model_asset(scope)]
