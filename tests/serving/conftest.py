"""Fixtures of the serving tests: the feature tests' tiny synthetic world, built by dbt once."""

from __future__ import annotations

import secrets

import pytest

from orchestration.lib.features.feature_definitions import (
    FeatureDefinitions,
    load_feature_definitions,
)
from tests.features.raw_world import (
    DbtRun,
    World,
    dbt_build,
    declared_features,
    make_world,
    write_raw_zone,
)


@pytest.fixture(scope="session")
def tiny_key_hex() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def tiny_world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def tiny_build(
    tiny_world: World, tiny_key_hex: str, tmp_path_factory: pytest.TempPathFactory
) -> DbtRun:
    """``dbt build`` over the tiny world (once per session and worker)."""
    home = tmp_path_factory.mktemp("serving_tiny") / "home"
    home.mkdir()
    write_raw_zone(tiny_world, home)
    run = dbt_build(home, tiny_key_hex)
    assert run.returncode == 0, run.output[-5000:]
    return run


@pytest.fixture(scope="session")
def tiny_definitions(tiny_build: DbtRun) -> FeatureDefinitions:
    return load_feature_definitions(
        tiny_build.target_path / "manifest.json", declared_features()
    )
