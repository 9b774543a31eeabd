"""``blueprint scan-pii``: look for personal data outside the raw zone."""

from __future__ import annotations

from typing import Annotated

import typer

from blueprint_cli.home import prepare
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.lib.core.usecase import declared_pii_columns
from orchestration.settings import USECASES_DIR


def scan_pii(
    full: Annotated[
        bool, typer.Option(help="Read every file again, even those unchanged since a clean scan.")
    ] = False,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Scan every table and file outside the raw zone for personal data; exit 1 on a finding."""
    select_usecase(usecase)
    from orchestration.lib.quality.pii import scan_outside_raw_zone

    pii_columns = declared_pii_columns(USECASES_DIR)  # every use case's: the home is shared
    report, _ = scan_outside_raw_zone(prepare(), pii_columns, incremental=not full)
    for finding in report.findings:
        typer.echo(f"LEAK {finding}")
    typer.echo(
        f"Scanned {len(report.scanned)} locations ({report.unchanged} files unchanged since a "
        f"clean scan); {len(report.findings)} findings."
    )
    if report.findings:
        raise typer.Exit(1)
