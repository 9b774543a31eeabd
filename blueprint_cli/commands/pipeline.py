"""``blueprint materialize`` and ``blueprint train``: the pipeline's Dagster runs, recorded on the
persistent instance."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

import typer

from blueprint_cli.home import echo_err, prepare
from blueprint_cli.planning import plan_runs
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase


def materialize(
    select: Annotated[
        str | None, typer.Option(help="Dagster asset selection, e.g. 'group:features'.")
    ] = None,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Materialize every partition that has data and is missing or stale, through Dagster.

    Runs are recorded on the persistent instance under BLUEPRINT_HOME/dagster, so they appear in
    the Dagster UI as if launched there.
    """
    materialize_stale(select, usecase)


def materialize_stale(select: str | None, usecase: str, skip_checks: Collection[str] = ()) -> None:
    """``blueprint materialize``, leaving the checks named in ``skip_checks`` out of its runs."""
    select_usecase(usecase)
    import dagster as dg

    from blueprint_cli.runs import materialize_assets

    prepare()
    runs = plan_runs(select)
    if not runs:
        typer.echo(f"Everything of {usecase} is up to date: nothing to materialize.")
        return
    instance = dg.DagsterInstance.get()
    for selection, partition_range in runs:
        if partition_range is not None:
            first, last = partition_range
            echo_err(f"Materializing {selection} for {first} … {last}")
        else:
            echo_err(f"Materializing {selection}")
        if not materialize_assets(selection, partition_range, instance, skip_checks):
            echo_err("error: the Dagster run failed; open the run in the Dagster UI for details.")
            raise typer.Exit(1)
    typer.echo(f"Materialized {usecase}.")


def materialize_now(selection: str) -> None:
    """Materialize the (unpartitioned) assets ``selection`` names in one run, with all their
    checks, stale or not."""
    import dagster as dg

    from blueprint_cli.runs import materialize_assets

    echo_err(f"Materializing {selection}")
    if not materialize_assets(selection, None, dg.DagsterInstance.get()):
        echo_err("error: the Dagster run failed; open the run in the Dagster UI for details.")
        raise typer.Exit(1)


def train(
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Train a candidate now, run the promotion gate and publish the serving snapshot.

    Launches Dagster's ``training_job`` on the persistent instance (it appears in the UI); the
    features must have been materialized.
    """
    select_usecase(usecase)
    import dagster as dg

    from blueprint_cli.runs import execute_job

    prepare()
    echo_err("Training a candidate (training_job)")
    if not execute_job("training_job", dg.DagsterInstance.get()):
        echo_err("error: the training run failed; open the run in the Dagster UI for details.")
        raise typer.Exit(1)
    typer.echo("Trained.")

