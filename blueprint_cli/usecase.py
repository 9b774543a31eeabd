"""The ``--usecase`` option every command takes: which declaration the command runs."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from orchestration.lib.core.usecase import UseCaseError, load_usecase
from orchestration.settings import DEFAULT_USECASE, USECASES_DIR

__all__ = ["DEFAULT_USECASE", "UsecaseOption", "select_usecase"]

UsecaseOption = Annotated[
    str,
    typer.Option(
        "--usecase",
        help="The use case: a declaration in orchestration/usecases/<name>.yaml.",
        envvar="BLUEPRINT_USECASE",
    ),
]


def select_usecase(name: str) -> None:
    """Make ``name`` this command's use case (and its subprocesses'), or exit naming the known
    ones. The CLI runs one use case per command."""
    try:
        load_usecase(name, USECASES_DIR)
    except UseCaseError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    os.environ["BLUEPRINT_USECASE"] = name
