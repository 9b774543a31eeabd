"""``blueprint models``: list, inspect, promote and roll back a use case's trained models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer

from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.lib.registry import registry
from orchestration.lib.registry.log import CANDIDATE, CHAMPION
from orchestration.settings import get_settings

models_app = typer.Typer(
    help="The model registry: which versions exist, which one is champion, and why.",
    no_args_is_help=True,
)

REASON_HELP = "Why: kept in the registry's history (required)."


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _metric(facts: registry.ModelFacts | None, key: str) -> str:
    value = None if facts is None else facts.test_metrics.get(key)
    return "-" if value is None else f"{value:.4f}"


def _facts_or_none(version: str) -> registry.ModelFacts | None:
    try:
        return registry.model_facts(version)
    except registry.UnknownVersionError:
        return None  # registered, but its store entry is gone: the table says "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


@models_app.command("list")
def list_models(
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Every registered version, newest first; * marks the champion."""
    select_usecase(usecase)
    known = registry.versions()
    if not known:
        typer.echo("No model is registered yet: train one first.")
        return
    shown = _shown_metrics()
    rows = []
    for entry in reversed(known):
        facts = _facts_or_none(entry.version)
        status = entry.status
        if status == CANDIDATE and entry.last_decision == "rejected":
            status = "candidate (rejected)"
        rows.append([
            usecase,
            "*" if entry.status == CHAMPION else "",
            entry.version,
            status,
            _when(entry.registered_at),
            *(_metric(facts, name) for name in shown),
        ])
    header = ["use case", "", "version", "status", "created", *(f"test {m}" for m in shown)]
    typer.echo(_table(header, rows))


def _shown_metrics() -> list[str]:
    """The gate's primary metric and its guards: what decides a promotion."""
    gate = get_settings().usecase.gate
    return list(dict.fromkeys([gate.primary.metric, *(g.metric for g in gate.guards)]))


@models_app.command("show")
def show(version: Annotated[str, typer.Argument(help="The model version.")],
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Everything known about one version: its facts and its history."""
    select_usecase(usecase)
    try:
        current = registry.status(version)
        events = registry.history(version)
    except registry.RegistryError as error:
        raise _fail(str(error)) from None
    typer.echo(f"version: {current.version}")
    typer.echo(f"status:  {current.status} since {_when(current.status_since)}")
    facts = _facts_or_none(current.version)
    if facts is None:
        typer.echo("facts:   missing: the model is not in the model store any more")
    else:
        typer.echo("facts:")
        metadata = facts.to_metadata()
        metadata["params"] = json.loads(metadata["params"])
        typer.echo(json.dumps(metadata, indent=2))
    typer.echo("history:")
    typer.echo(_table(
        ["at", "event", "actor", "reason", "details"],
        [[_when(e.at), e.event, e.actor, e.reason, json.dumps(e.details, sort_keys=True)]
         for e in events],
    ))


@models_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help=REASON_HELP)],
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Make a version champion by hand; the current champion is archived."""
    select_usecase(usecase)
    try:
        previous = registry.promote(version, reason=reason, actor=registry.cli_actor())
    except registry.RegistryError as error:
        raise _fail(str(error)) from None
    replaced = f"; {previous} is archived" if previous else ""
    typer.echo(f"{version} is now the champion{replaced}.")


@models_app.command("rollback")
def rollback(reason: Annotated[str, typer.Option("--reason", help=REASON_HELP)],
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Make the previous champion champion again; the current one is archived."""
    select_usecase(usecase)
    try:
        restored = registry.rollback(reason, actor=registry.cli_actor())
    except registry.RegistryError as error:
        raise _fail(str(error)) from None
    rolled_back = registry.history(restored)[-1].details["rollback_of"]
    typer.echo(f"Rolled back {rolled_back}: {restored} is the champion again.")


@models_app.command("reproduce")
def reproduce(version: Annotated[str, typer.Argument(help="The version to retrain.")],
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Retrain a version from its recorded lineage and compare the test metrics."""
    select_usecase(usecase)
    from orchestration.lib.training.lineage import reproduce as retrain

    try:
        result = retrain(version)
    except (registry.RegistryError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    rows = []
    same = result.same_rows
    for key, value in result.reproduced.items():
        recorded = result.recorded.get(key)
        rows.append([key, "-" if recorded is None else f"{recorded:.6f}", f"{value:.6f}"])
        same = same and recorded is not None and abs(recorded - value) <= 1e-9
    typer.echo(_table(["metric", "recorded", "reproduced"], rows))
    typer.echo(f"rows: {'identical' if result.same_rows else 'DIFFERENT'} (by content hash)")
    if not same:
        raise _fail(f"{version} was not reproduced exactly")
    typer.echo(f"{version} reproduced exactly.")
