"""Every resource, chosen by environment in one place (BLUEPRINT_ENV, default ``local``).

``local`` is the embedded default: DuckDB and files under BLUEPRINT_HOME. A deployment that
outgrows one machine adds an entry here (and a dbt target in dbt_project/profiles.yml for its
warehouse adapter); assets never test the environment themselves.
"""


import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from orchestration.defs.features.project import dbt_project
from orchestration.settings import get_settings


def _dbt_executable() -> str:
    """The dbt beside this interpreter (the project's .venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else (shutil.which("dbt") or "dbt")


def _resources(dbt_target: str) -> dict[str, object]:
    settings = get_settings()
    return {
        "dbt": DbtCliResource(
            project_dir=dbt_project, target=dbt_target, dbt_executable=_dbt_executable()
        ),
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
    }


RESOURCES_BY_ENV = {
    "local": lambda: _resources(dbt_target="local"),
}


def resources_for_env(env: str | None = None) -> dict[str, object]:
    """The resources of BLUEPRINT_ENV (default ``local``)."""
    env = env or get_settings().env
    if env not in RESOURCES_BY_ENV:
        raise dg.DagsterInvariantViolationError(
            f"BLUEPRINT_ENV={env!r} is not one of {sorted(RESOURCES_BY_ENV)}"
        )
    return RESOURCES_BY_ENV[env]()
