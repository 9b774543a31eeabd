"""The ``blueprint`` command: simulate the world, run the pipeline, start and stop the UI.

Each group of commands is a module of ``blueprint_cli.commands``; this module assembles them,
in the order ``blueprint --help`` lists them."""

from __future__ import annotations

import typer

from blueprint_cli.commands.demo import demo
from blueprint_cli.commands.pii import scan_pii
from blueprint_cli.commands.pipeline import materialize, train
from blueprint_cli.commands.replay import replay
from blueprint_cli.commands.services import serve, stop, ui
from blueprint_cli.commands.world import simulate
from blueprint_cli.models import models_app

app = typer.Typer(help="Blueprint: a production-shaped ML system, one declaration per use case.")
app.add_typer(models_app, name="models")
for command in (simulate, materialize, train, ui, serve, stop, demo, replay):
    app.command()(command)
app.command("scan-pii")(scan_pii)

if __name__ == "__main__":
    app()
