"""Small simulated worlds shared by the simulator tests (each takes well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_files import DRIFT_FROM, SMALL

from simulator import WorldConfig, simulate


@pytest.fixture(scope="session")
def clean_config() -> WorldConfig:
    return WorldConfig(**SMALL, seed=7)


@pytest.fixture(scope="session")
def faulty_config() -> WorldConfig:
    return WorldConfig(**SMALL, seed=11, faults=True, drift_from=DRIFT_FROM)


@pytest.fixture(scope="session")
def clean_world(tmp_path_factory: pytest.TempPathFactory, clean_config: WorldConfig) -> Path:
    """A world without faults or drift."""
    home = tmp_path_factory.mktemp("clean")
    simulate(clean_config, home, progress=False)
    return home


@pytest.fixture(scope="session")
def faulty_world(tmp_path_factory: pytest.TempPathFactory, faulty_config: WorldConfig) -> Path:
    """A world with every kind of fault and drift from day 30."""
    home = tmp_path_factory.mktemp("faulty")
    simulate(faulty_config, home, progress=False)
    return home
