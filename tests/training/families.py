"""The model families tests build pipelines from: the fraud declaration's, and a decision tree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.pipeline import Pipeline

from orchestration.lib.core.usecase import load_usecase
from orchestration.lib.training import families
from orchestration.lib.training.families import FamilySpec, declared_families
from orchestration.lib.training.metrics import Scorecard
from orchestration.lib.training.validation import labelled_rows
from orchestration.settings import USECASES_DIR

LOGISTIC_REGRESSION = "logistic_regression"
DECISION_TREE = "decision_tree"
RANDOM_FOREST = "random_forest"
GRADIENT_BOOSTING = "gradient_boosting"

_DECLARED, DEFAULT_GRIDS = declared_families(load_usecase("fraud", USECASES_DIR, environ={}))
FAMILIES: dict[str, FamilySpec] = {
    **_DECLARED,
    DECISION_TREE: FamilySpec("sklearn.tree.DecisionTreeClassifier"),
}


def build_pipeline(family: str, params: Mapping[str, Any], random_state: int = 0) -> Pipeline:
    """The pipeline of one candidate of a family, by the family's name."""
    return families.build_pipeline(FAMILIES[family], params, random_state)


def candidates(grids) -> list[families.Candidate]:
    return families.candidates(grids, FAMILIES)


FRAUD = load_usecase("fraud", USECASES_DIR, environ={})
ROWS = labelled_rows(FRAUD)
"""How the fraud declaration frames and labels ``training_set`` rows (as the synthetic ones)."""
SCORECARD = Scorecard.declared(FRAUD)
"""The fraud declaration's metrics: AUC ROC, AP and card precision@100."""
