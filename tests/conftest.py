"""Fixtures shared by every stage's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def blueprint_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh BLUEPRINT_HOME for one test, exported for subprocesses too."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BLUEPRINT_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home
