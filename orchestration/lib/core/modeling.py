"""The modelling part of a declaration: model families by import path with their grids, metrics
with their direction, and the promotion gate."""

from __future__ import annotations

import importlib
import inspect
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestration.lib.core.schema import Identifier, Strict


class ModelFamily(Strict):
    """A model family is an entry: an estimator class by import path and its grid."""

    estimator: str = Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")
    """``module.Class`` of a scikit-learn-compatible estimator."""
    fixed: dict[Identifier, Any] = {}
    """Parameters every candidate of the family gets."""
    grid: dict[Identifier, list[Any]] = Field(min_length=1)
    """Parameter -> values to try; every combination is a candidate."""
    scale: bool = False
    """Standardize the inputs before the estimator (linear models)."""

    @field_validator("grid")
    @classmethod
    def _values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [name for name, values in grid.items() if not values]
        if empty:
            raise ValueError(f"grid parameters with no value to try: {empty}")
        return grid

    @model_validator(mode="after")
    def _importable(self) -> ModelFamily:
        estimator_class(self.estimator)
        return self


def estimator_class(path: str) -> type:
    """The class an import path names (``sklearn.ensemble.RandomForestClassifier``)."""
    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import {path}: {error}") from None
    if not inspect.isclass(found):
        raise ValueError(f"{path} is not a class")
    return found


class Models(Strict):
    name: Identifier
    """The name of the use case's models in the model store (a version is ``<name>:<id>``)."""
    seed: int = 0
    """Random state of every model (and of the reports' samples)."""
    families: dict[Identifier, ModelFamily] = Field(min_length=1)


MetricKind = Literal["auc_roc", "average_precision", "entity_precision_at_k"]
HIGHER_IS_BETTER: frozenset[str] = frozenset({"auc_roc", "average_precision",
                                              "entity_precision_at_k"})


class Metric(Strict):
    kind: MetricKind
    entity: Identifier | None = None
    """For ``entity_precision_at_k``: the entity (of ``data.entities``) ranked each day."""
    k: int | None = Field(default=None, ge=1)
    """For ``entity_precision_at_k``: how many entities a day are alerted."""
    direction: Literal["higher", "lower"] | None = None
    """Whether a higher value is better; defaults from the kind."""

    @model_validator(mode="after")
    def _parameters(self) -> Metric:
        needs_entity = self.kind == "entity_precision_at_k"
        if needs_entity and (self.entity is None or self.k is None):
            raise ValueError(f"{self.kind} needs an entity and k")
        if not needs_entity and (self.entity is not None or self.k is not None):
            raise ValueError(f"{self.kind} takes no entity or k")
        return self

    @property
    def higher_is_better(self) -> bool:
        if self.direction is not None:
            return self.direction == "higher"
        return self.kind in HIGHER_IS_BETTER


class PrimaryMetric(Strict):
    metric: Identifier
    margin: float = Field(ge=0)
    """How much better than the champion a challenger must be, on the same test window."""
    floor: float
    """What the first champion must reach (at least, or at most for a lower-is-better metric)."""


class GuardMetric(Strict):
    metric: Identifier
    tolerance: float = Field(ge=0)
    """How much worse than the champion a challenger may be."""


class Gate(Strict):
    primary: PrimaryMetric
    guards: list[GuardMetric] = []
    required_checks: list[Annotated[str, Field(pattern=r"^\w+:\w+$")]] = []
    """``asset:check`` pairs whose latest evaluation must have passed for a promotion."""
