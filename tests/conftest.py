"""Fixtures shared by every stage's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration.settings import NO_TELEMETRY_ENV


def pytest_configure(config: pytest.Config) -> None:
    """Tests never reach the internet: switch every library's telemetry off."""
    for name, value in NO_TELEMETRY_ENV.items():
        os.environ.setdefault(name, value)


@pytest.fixture
def blueprint_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BLUEPRINT_HOME for one test, exported for subprocesses too."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BLUEPRINT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home
