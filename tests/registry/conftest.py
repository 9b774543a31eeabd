"""Fixtures of the registry tests: a fresh BLUEPRINT_HOME each, a small fitted pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from orchestration.lib.registry import registry
from tests.registry.models import FEATURES, tiny_facts, tiny_frame, tiny_pipeline

__all__ = ["FEATURES"]


@pytest.fixture(autouse=True)
def home(blueprint_home: Path) -> Path:
    """Every registry test gets its own BLUEPRINT_HOME: store and registry start empty."""
    return blueprint_home


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return tiny_frame()


@pytest.fixture
def fit(frame: pd.DataFrame) -> Callable[..., Pipeline]:
    """Fits a small scaler + logistic regression; a different ``c`` gives other predictions."""
    return lambda c=1.0: tiny_pipeline(frame, c)


@pytest.fixture
def make_facts(frame: pd.DataFrame) -> Callable[..., registry.ModelFacts]:
    """Complete facts for a pipeline fitted on ``frame``; keyword arguments override fields."""
    return lambda pipeline, **overrides: tiny_facts(pipeline, frame, **overrides)
