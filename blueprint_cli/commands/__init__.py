"""The ``blueprint`` command's commands, one module per group; ``blueprint_cli.main`` assembles
them into the app."""
