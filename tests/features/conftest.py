"""Fixtures of the feature tests: a tiny raw zone and one ``dbt build`` over it, shared."""

from __future__ import annotations

import secrets

import pytest

from tests.features.raw_world import DbtRun, World, dbt_build, make_world, write_raw_zone


@pytest.fixture(scope="session")
def pseudonymization_key_hex() -> str:
    """The secret key handed to dbt for the test builds (as BLUEPRINT_PSEUDONYMIZATION_KEY)."""
    return secrets.token_hex(32)


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def built(
    world: World, pseudonymization_key_hex: str, tmp_path_factory: pytest.TempPathFactory
) -> DbtRun:
    """``dbt build`` over the tiny world (one per test session and worker)."""
    home = tmp_path_factory.mktemp("blueprint_home")
    write_raw_zone(world, home)
    run = dbt_build(home, pseudonymization_key_hex)
    assert run.returncode == 0, run.output[-5000:]
    return run
