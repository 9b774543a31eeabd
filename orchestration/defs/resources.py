"""Every resource, chosen by environment in one place (BLUEPRINT_ENV, default ``local``).

``local`` is the embedded default: DuckDB and files under BLUEPRINT_HOME. A deployment that
outgrows one machine adds an entry here (and a dbt target in dbt_project/profiles.yml for its
warehouse adapter); assets never test the environment themselves.
"""


import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource
from packaging import version

from orchestration.defs.features.project import dbt_project
from orchestration.settings import get_settings


def _dbt_executable() -> str:
    """The dbt beside this interpreter (the project's .venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else (shutil.which("dbt") or "dbt")


@functools.cache
def dbt_version(executable: str) -> version.Version:
    """The version of the dbt at ``executable``: for this interpreter's own dbt, the installed
    dbt-core distribution's; for another, what ``dbt --version`` prints (asked once a process)."""
    if Path(executable).parent == Path(sys.executable).parent:
        return version.parse(importlib.metadata.version("dbt-core"))
    printed = subprocess.check_output([executable, "--version"], text=True)
    match = re.search(r"(\d+\.\d+\.\d+)", printed)
    if match is None:
        raise ValueError(f"cannot read a version in what {executable} --version printed")
    return version.parse(match.group(1))


class BlueprintDbtCliResource(DbtCliResource):
    """``DbtCliResource`` without two costs it pays on every dbt call, most of a replay day's dbt
    step apart from dbt's own run (figures: docs/OPERATING_NOTES.md, "dbt and dagster-dbt"):

    - it runs ``dbt --version`` (a Python start importing dbt) to tell dbt Core from the Fusion
      engine: the version comes from :func:`dbt_version`;
    - it loads dbt's macros to open an adapter handle, which dagster-dbt uses only for
      ``fetch_column_metadata`` and ``fetch_row_counts``; no asset here calls them.

    Both replace private members of dagster-dbt 0.29 (``tests/features/test_dbt_calls.py``
    fails if a new version renames them, so the saving cannot vanish unnoticed).
    """

    @property
    def _cli_version(self) -> version.Version:
        return dbt_version(self.dbt_executable)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def _resources(dbt_target: str, usecase: str) -> dict[str, object]:
    settings = get_settings(usecase)
    return {
        "dbt": BlueprintDbtCliResource(
            project_dir=dbt_project, target=dbt_target, dbt_executable=_dbt_executable()
        ),
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
    }


RESOURCES_BY_ENV = {
    "local": lambda usecase: _resources(dbt_target="local", usecase=usecase),
}


def resources_for_env(usecase: str, env: str | None = None) -> dict[str, object]:
    """The resources of one use case in BLUEPRINT_ENV (default ``local``)."""
    env = env or get_settings(usecase).env
    if env not in RESOURCES_BY_ENV:
        raise dg.DagsterInvariantViolationError(
            f"BLUEPRINT_ENV={env!r} is not one of {sorted(RESOURCES_BY_ENV)}"
        )
    return RESOURCES_BY_ENV[env](usecase)
