"""What every command does first: resolve its use case's settings, refuse a home of an older
layout, export the settings to its subprocesses and make sure the Dagster instance exists."""

from __future__ import annotations

import os

import typer

from orchestration.lib.core.instance import ensure_instance
from orchestration.settings import Settings, export_to_subprocesses, get_settings

OLD_LAYOUT = (
    "warehouse.duckdb", "registry/registry.db", "serving/snapshots",
    "serving/feature_definitions.json",
)
"""What only a home of the layout before use cases holds."""


def echo_err(message: str) -> None:
    """A line on standard error: progress, warnings and errors, apart from the results."""
    typer.echo(message, err=True)


def refuse_old_home(settings: Settings) -> None:
    """A home made before use cases had state of their own cannot be read: say what to do."""
    found = [path for path in OLD_LAYOUT if (settings.home / path).exists()]
    if found:
        echo_err(
            f"error: {settings.home} was made by an older Blueprint ({', '.join(found)} at its "
            "top level; each use case now keeps its warehouse, registry, serving, scores, "
            "monitoring and reports in folders of its own). Move it aside or delete it and run "
            "`make demo` again: the world is simulated again from its seed."
        )
        raise typer.Exit(2)


def prepare() -> Settings:
    """Resolve settings, export them for subprocesses and make sure the instance exists."""
    settings = get_settings()
    refuse_old_home(settings)
    export_to_subprocesses(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    ensure_instance(settings.dagster_home)
    return settings
