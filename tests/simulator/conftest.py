"""Small simulated worlds shared by the simulator tests (each takes about a second or less)."""

from __future__ import annotations

from pathlib import Path

import pytest
from churn_files import CHURN_DRIFT_FROM, CHURN_SMALL
from sim_files import DRIFT_FROM, SMALL

from simulator import WorldConfig, simulate
from simulator.churn import ChurnConfig
from simulator.churn import simulate as simulate_churn


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


@pytest.fixture(scope="session")
def churn_config() -> ChurnConfig:
    return ChurnConfig(**CHURN_SMALL, seed=3)


@pytest.fixture(scope="session")
def churn_faulty_config() -> ChurnConfig:
    return ChurnConfig(**CHURN_SMALL, seed=5, faults=True, drift_from=CHURN_DRIFT_FROM)


@pytest.fixture(scope="session")
def churn_world(tmp_path_factory: pytest.TempPathFactory, churn_config: ChurnConfig) -> Path:
    """A churn world without faults or drift."""
    home = tmp_path_factory.mktemp("churn")
    simulate_churn(home, churn_config)
    return home


@pytest.fixture(scope="session")
def churn_faulty_world(
    tmp_path_factory: pytest.TempPathFactory, churn_faulty_config: ChurnConfig
) -> Path:
    """A churn world with every kind of fault and drift."""
    home = tmp_path_factory.mktemp("churn_faulty")
    simulate_churn(home, churn_faulty_config)
    return home
