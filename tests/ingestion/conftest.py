"""Fixtures of the ingestion tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from landing_builders import Zones


@pytest.fixture
def zones(tmp_path: Path) -> Zones:
    return Zones(tmp_path / "data")
