"""``blueprint simulate``: the use case's simulated world (the outside world the pipeline reads)."""

from __future__ import annotations

import importlib
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import typer

from blueprint_cli.home import echo_err, prepare
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.settings import Settings

if TYPE_CHECKING:
    from simulator.worlds import World


def simulated_world(settings: Settings):
    """The simulator the use case declares (:class:`simulator.worlds.World`), or exit."""
    module = settings.usecase.simulator
    if module is None:
        echo_err(f"error: the use case {settings.usecase_name!r} declares no simulator")
        raise typer.Exit(2)
    return importlib.import_module(module).WORLD


def world_exists(settings: Settings) -> bool:
    return simulated_world(settings).exists(settings.home)


def _parse_drift_from(value: str | None, start: date) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return (date.fromisoformat(value) - start).days
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a day index nor a date YYYY-MM-DD", param_hint="--drift-from"
        ) from None


def _fields(values: list[str]) -> dict[str, str]:
    fields = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{value!r} is not FIELD=VALUE", param_hint="--set")
        fields[name.strip()] = text.strip()
    return fields


def simulate(
    days: Annotated[
        int | None, typer.Option(help="Number of days (default: the world's own).")
    ] = None,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2018-04-01",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 0,
    faults: Annotated[bool, typer.Option(help="Inject realistic source faults.")] = False,
    drift_from: Annotated[
        str | None, typer.Option(help="Change the world from this day (index or YYYY-MM-DD).")
    ] = None,
    set_fields: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any other parameter of the world, FIELD=VALUE (repeatable), e.g. "
            "--set n_customers=400 or --set n_accounts=2000: the fields of the world's config."
        ),
    ] = None,
    hold_last: Annotated[
        int,
        typer.Option(
            help="Hold the files of the last N days back in the simulator's outbox for a "
            "replay (0: deliver everything now)."
        ),
    ] = 0,
    force: Annotated[bool, typer.Option(help="Replace an existing world.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Simulate the use case's source systems and deliver their files to the landing zone."""
    select_usecase(usecase)
    settings = prepare()
    world = simulated_world(settings)
    start_day = _start_day(start, settings)
    known = {"start": start_day, "seed": seed, "faults": faults,
             "drift_from": _parse_drift_from(drift_from, start_day)}
    if days is not None:
        known["n_days"] = days
    try:
        config = world.config_with(_fields(set_fields or []), **known)
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(str(error)) from None
    _deliver(world, settings, config, _hold_from(hold_last, config.n_days), force, progress)


def _start_day(start: str, settings: Settings) -> date:
    """``--start`` as a date, no earlier than the first daily partition."""
    try:
        start_day = date.fromisoformat(start)
    except ValueError:
        raise typer.BadParameter(
            f"{start!r} is not a date YYYY-MM-DD", param_hint="--start"
        ) from None
    if start_day < settings.partitions_start:
        raise typer.BadParameter(
            f"{start} is before the first daily partition {settings.partitions_start}; "
            "set BLUEPRINT_PARTITIONS_START to an earlier date",
            param_hint="--start",
        )
    return start_day


def _hold_from(hold_last: int, n_days: int) -> int | None:
    """The first day index whose files stay in the outbox; ``None`` when nothing is held."""
    if not 0 <= hold_last < n_days:
        raise typer.BadParameter(
            f"{hold_last} is not a number of days in [0, {n_days})",
            param_hint="--hold-last",
        )
    return n_days - hold_last if hold_last else None


def _deliver(
    world: World, settings: Settings, config: Any, hold_from: int | None, force: bool,
    progress: bool,
) -> None:
    """Simulate the world into the landing zone (the held days into the outbox) and say so."""
    try:
        line = world.simulate(settings.home, config, force, hold_from, progress)
    except FileExistsError as error:
        echo_err(f"error: {error} (pass --force to replace it)")
        raise typer.Exit(1) from None
    typer.echo(f"{line} into {settings.landing_dir}")
    if hold_from is not None:
        typer.echo(
            f"Held back the files delivered from the night after {config.day(hold_from)} "
            f"in {world.outbox(settings.home)}"
        )
