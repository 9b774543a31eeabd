"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.e2e_world import shared_world, short_windows_env


@pytest.fixture(scope="module", autouse=True)
def short_windows():
    with short_windows_env():
        yield


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_world(tmp_path_factory)
