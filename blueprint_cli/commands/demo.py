"""``blueprint demo``: the whole system on the default world, as ``make demo`` runs it."""

from __future__ import annotations

import typer

from blueprint_cli.commands.pipeline import materialize
from blueprint_cli.commands.replay import replay
from blueprint_cli.commands.services import serve, ui
from blueprint_cli.commands.world import simulate, simulated_world, world_exists
from blueprint_cli.home import prepare
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase

DEMO_REPLAY_DAYS = 14
"""Days of the default world `make demo` holds back and replays through the service."""


def demo(
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Simulate the default world if there is none (its last 14 days held back), materialize
    what is stale (training and promotion included), start the scoring service, replay the
    held-back days through it so the reports have traffic, then start the Dagster UI."""
    select_usecase(usecase)
    settings = prepare()
    online = settings.usecase.serving.online
    if not world_exists(settings):
        simulate(
            days=None, start="2018-04-01", seed=0, faults=False, drift_from=None,
            set_fields=None, hold_last=DEMO_REPLAY_DAYS if online else 0, force=False,
            progress=True, usecase=usecase,
        )
    else:
        typer.echo(f"Using the world already simulated in {settings.landing_dir}")
    materialize(select=None, usecase=usecase)
    if not online:  # served in batch: the runs scored every day; the UI shows the rest
        ui(port=None, usecase=usecase)
        typer.echo(f"Models: `blueprint models list --usecase {usecase}`.")
        return
    serve(port=None, usecase=usecase)
    try:
        held = simulated_world(settings).held_days(settings.home)
    except FileNotFoundError:
        held = []
    if held:
        typer.echo(
            f"Replaying the last {len(held)} days ({held[0]} .. {held[-1]}) through the scoring "
            "service: each event scored over HTTP, the labels sent as filed, then the "
            "files delivered and the pipeline run, so that the monitoring reports have traffic."
        )
        replay(from_day=None, to_day=None, step_days=len(held), progress=True, usecase=usecase)
    # last: with the UI up, its daemon's landing sensor would ingest the replay's deliveries too
    ui(port=None, usecase=usecase)
    typer.echo(f"Models: `blueprint models list --usecase {usecase}`.")

