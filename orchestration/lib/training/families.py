"""Model families as data: an estimator class by import path, its fixed parameters and its grid.

A new family is an entry in a use case's declaration (``models.families``), never a branch
here. Every candidate is a scikit-learn ``Pipeline`` whose preprocessing travels with the model:
missing feature values become 0 (a feature with no history yet), and a family that asks for it
(``scale``, linear models) standardizes its inputs. An estimator whose constructor takes
``random_state`` gets the run's seed, so the same seed gives the same model.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from orchestration.lib.core.usecase import estimator_class

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import UseCase

Grids = Mapping[str, Mapping[str, Sequence[Any]]]
"""Model family -> hyper-parameter -> values to try (every combination is a candidate)."""


@dataclass(frozen=True)
class FamilySpec:
    """How to build one family's pipeline."""

    estimator: str
    """``module.Class`` of a scikit-learn-compatible estimator."""
    fixed: tuple[tuple[str, Any], ...] = ()
    """Parameters every candidate of the family gets, as sorted pairs."""
    scale: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "fixed": dict(self.fixed), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FamilySpec:
        return cls(data["estimator"], tuple(sorted(dict(data.get("fixed", {})).items())),
                   bool(data.get("scale", False)))


Families = Mapping[str, FamilySpec]
"""Model family name -> how to build it."""


def declared_families(usecase: UseCase) -> tuple[dict[str, FamilySpec], dict[str, dict]]:
    """The families and grids a use case declares (``models.families``)."""
    families = {
        name: FamilySpec(entry.estimator, tuple(sorted(entry.fixed.items())), entry.scale)
        for name, entry in usecase.models.families.items()
    }
    grids = {name: dict(entry.grid) for name, entry in usecase.models.families.items()}
    return families, grids


def build_pipeline(spec: FamilySpec, params: Mapping[str, Any], random_state: int = 0) -> Pipeline:
    """Imputation, scaling if the family asks for it, then the estimator."""
    cls = estimator_class(spec.estimator)
    arguments = {**dict(spec.fixed), **params}
    if "random_state" in inspect.signature(cls).parameters:
        arguments.setdefault("random_state", random_state)
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="constant", fill_value=0, keep_empty_features=True))
    ]
    if spec.scale:
        steps.append(("scale", StandardScaler()))
    steps.append(("model", cls(**arguments)))
    return Pipeline(steps)


@dataclass(frozen=True)
class Candidate:
    """One model family with one set of hyper-parameters."""

    family: str
    params: tuple[tuple[str, Any], ...]
    """Sorted ``(name, value)`` pairs (a tuple, so candidates are hashable)."""
    spec: FamilySpec

    @property
    def name(self) -> str:
        """Readable and unique, e.g. ``random_forest(max_depth=20, n_estimators=100)``."""
        return f"{self.family}({', '.join(f'{k}={v}' for k, v in self.params)})"

    def pipeline(self, random_state: int = 0) -> Pipeline:
        """A fresh, unfitted pipeline for this candidate."""
        return build_pipeline(self.spec, dict(self.params), random_state)


def candidates(grids: Grids, families: Families) -> list[Candidate]:
    """Every combination of every family's grid, in a stable order."""
    unknown = sorted(set(grids) - set(families))
    if unknown:
        raise ValueError(f"unknown model families {unknown} (known: {sorted(families)})")
    found = []
    for family, grid in grids.items():
        names = sorted(grid)
        for values in itertools.product(*(grid[name] for name in names)):
            found.append(
                Candidate(family, tuple(zip(names, values, strict=True)), families[family])
            )
    return found
