"""``blueprint replay``: live the days the simulator held back through the running system, a
step of days at a time (the steps themselves are ``blueprint_cli.replay``'s)."""

from __future__ import annotations

import functools
import time
from collections.abc import Collection
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

from blueprint_cli.commands.pipeline import materialize_now, materialize_stale
from blueprint_cli.commands.services import ui_running
from blueprint_cli.commands.world import simulated_world
from blueprint_cli.home import echo_err, prepare
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.settings import Settings

if TYPE_CHECKING:
    from blueprint_cli.replay import ServiceClient, StepResult


def replay(
    from_day: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: the first held).")
    ] = None,
    to_day: Annotated[
        str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: the last held).")
    ] = None,
    step_days: Annotated[
        int, typer.Option(help="Days delivered (and scored online) before each pipeline run.")
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Live the days the simulator held back through the running system: score each day's
    events and labels through the scoring service (a use case served online), deliver
    the day's files, run the pipeline (no training), and retrain when the retraining sensor
    fires."""
    select_usecase(usecase)
    settings = prepare()
    world = simulated_world(settings)
    held = _held_days(settings, world)
    if not held:
        typer.echo("Every held-back day has been delivered: nothing to replay.")
        return
    url = _service_url(settings)
    steps = _steps(from_day, to_day, step_days, held)
    if ui_running(settings):
        echo_err(
            "warning: the Dagster UI is running: its daemon's sensors also react to the files "
            "the replay delivers and may run the same steps at the same time (stop it with "
            "`blueprint stop` for a replay that runs alone)"
        )
    _live(settings, world, steps, url, usecase, progress)
    typer.echo(
        f"Replayed {steps[0][0]} .. {steps[-1][-1]}. Reports: "
        f"{settings.reports_dir / 'index.html'}"
    )


def _held_days(settings: Settings, world) -> list[date]:
    """The days the simulator holds back, or exit when it holds none."""
    try:
        return world.held_days(settings.home)
    except FileNotFoundError as error:
        echo_err(f"error: {error} (simulate with --hold-last N to hold days back)")
        raise typer.Exit(1) from None


def _service_url(settings: Settings) -> str | None:
    """The running scoring service's URL for a use case served online (None: batch), or exit."""
    from orchestration.lib.serving.process import running_service_url

    online = settings.usecase.serving.online
    url = running_service_url(settings) if online else None
    if online and url is None:
        echo_err("error: the scoring service is not running; start it with `blueprint serve`")
        raise typer.Exit(1)
    return url


def _steps(
    from_day: str | None, to_day: str | None, step_days: int, held: list[date]
) -> list[list[date]]:
    """The replay's steps over the chosen held days; a bad choice is a bad parameter."""
    from blueprint_cli.replay import ReplayError, replay_days

    try:
        first = date.fromisoformat(from_day) if from_day else held[0]
        last = date.fromisoformat(to_day) if to_day else held[-1]
        steps = replay_days(first, last, step_days)
    except (ValueError, ReplayError) as error:
        raise typer.BadParameter(str(error)) from None
    if first > held[0]:
        raise typer.BadParameter(
            f"--from {first} skips held days from {held[0]}: replay them first",
            param_hint="--from",
        )
    return steps


def _live(
    settings: Settings,
    world,
    steps: list[list[date]],
    url: str | None,
    usecase: str,
    progress: bool,
) -> None:
    """Play the steps (a retraining an interrupted replay left due first); exit on an error."""
    from tqdm import tqdm

    from blueprint_cli.replay import (
        ReplayError,
        ServiceClient,
        StepResult,
        replay_step,
        retrain_if_due,
    )

    client = ServiceClient(url, settings.serving_max_batch) if url is not None else None
    bar = tqdm(total=sum(len(s) for s in steps), unit="day", desc="replaying", disable=not progress)

    def run_pipeline(selection: str, skip_checks: Collection[str] = ()) -> None:
        materialize_stale(selection, usecase, skip_checks)

    try:
        pending = StepResult(first=steps[0][0], last=steps[0][0])
        retrain_if_due(  # a retraining an interrupted replay left due
            settings, client, pending, rebuild=materialize_now,
        )
        if pending.retrained:
            tqdm.write(f"Retrained first ({pending.decision}); champion {pending.champion_after}")
        for days in steps:
            clock = time.perf_counter()
            result = replay_step(
                settings, client, days,
                deliver=functools.partial(world.deliver, settings.home),
                materialize=run_pipeline, rebuild=materialize_now, on_stage=bar.set_postfix_str,
            )
            bar.update(len(days))
            _report_step(result, client, time.perf_counter() - clock)
    except ReplayError as error:
        echo_err(f"error: {error}")
        raise typer.Exit(1) from None
    finally:
        bar.close()
        if client is not None:
            client.close()


def _report_step(result: StepResult, client: ServiceClient | None, seconds: float) -> None:
    """What a step did, above the progress bar."""
    from tqdm import tqdm

    span = f"{result.first}" + (f"..{result.last}" if result.last != result.first else "")
    served = (
        f"scored {result.scored:,} events ({result.alerts:,} alerts, "
        f"{result.rejected} refused), sent {result.labels} labels "
        f"({result.labels_refused} refused)"
        if client is not None else f"delivered {result.delivered} files"
    )
    tqdm.write(
        f"{span} in {seconds:.1f} s: {served}; "
        f"retraining: {'ran' if result.retrained else 'no'} ({result.decision})"
    )
    for rejection in result.rejections:
        tqdm.write(f"  refused {rejection}")
    if result.switched:
        where = "the service serves it" if client is not None else "batch scoring uses it"
        tqdm.write(
            f"  champion switched {result.champion_before} -> {result.champion_after}; "
            f"{where}"
        )

