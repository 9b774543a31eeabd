"""``blueprint ui``, ``blueprint serve`` and ``blueprint stop``: the background processes a
person looks at (the Dagster UI, the monitoring reports' server, the scoring service)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from blueprint_cli.home import echo_err, prepare
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.lib.core.processes import live_pid, write_pid_file
from orchestration.lib.core.usecase import usecase_names
from orchestration.settings import PROJECT_ROOT, USECASES_DIR, Settings, get_settings

REPORTS_SERVER_STOP_S = 5.0
UI_STOP_S = 30.0


def _dagster_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _pid_file(settings: Settings) -> Path:
    return settings.home / "run" / "dagster-dev.pid"


def ui_running(settings: Settings) -> int | None:
    """The process group of the Dagster UI this home started, if it is still running."""
    return live_pid(_pid_file(settings))


def _wait_for_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


def ui(
    port: Annotated[int | None, typer.Option(help="Port (default BLUEPRINT_DAGSTER_PORT).")] = None,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Start the Dagster UI (webserver and daemon) on 127.0.0.1 in the background."""
    select_usecase(usecase)
    settings = prepare()
    port = port or settings.dagster_port
    url = f"http://127.0.0.1:{port}"
    if pid := ui_running(settings):
        typer.echo(f"The Dagster UI is already running (process group {pid}): {url}")
        _start_reports_server(settings)
        return
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    _pid_file(settings).parent.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "dagster-dev.log", "ab") as log:
        process = subprocess.Popen(
            [_dagster_bin("dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so `blueprint stop` ends it all
        )
    write_pid_file(_pid_file(settings), process.pid)
    if not _wait_for_http(f"{url}/server_info", timeout_s=90):
        echo_err(f"error: the Dagster UI did not answer within 90 s; see {log_dir}/dagster-dev.log")
        raise typer.Exit(1)
    typer.echo(f"Dagster UI: {url}  (logs: {log_dir}/dagster-dev.log; stop with `make stop`)")
    _start_reports_server(settings)


def _reports_pid_file(settings: Settings) -> Path:
    return settings.home / "run" / "reports-server.pid"


def _start_reports_server(settings: Settings) -> None:
    """Serve the monitoring reports on 127.0.0.1, so that their links in the Dagster UI open."""
    pid_file = _reports_pid_file(settings)
    if live_pid(pid_file) is not None:
        return
    from orchestration.lib.monitoring.report_index import write_root_index

    write_root_index(settings.reports_root, usecase_names(USECASES_DIR))
    process = subprocess.Popen(
        [sys.executable, "-m", "blueprint_cli.report_server", str(settings.reports_port),
         str(settings.reports_root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    write_pid_file(pid_file, process.pid)
    url = f"http://127.0.0.1:{settings.reports_port}/index.html"
    typer.echo(f"Monitoring reports: {url}")


def _stop_reports_server(settings: Settings) -> bool:
    from orchestration.lib.serving.process import stop_process_group

    pid_file = _reports_pid_file(settings)
    pid = live_pid(pid_file)
    if pid is None:
        return False
    stop_process_group(pid, REPORTS_SERVER_STOP_S)  # SIGKILL if it ignores SIGTERM
    pid_file.unlink(missing_ok=True)
    return True
CURL_WIDTH = 90
"""Columns the curl example's JSON is wrapped to."""


def curl_example(url: str, request: dict[str, Any], token: str) -> str:
    """A curl command that scores ``request``, its JSON wrapped to `CURL_WIDTH` columns, with
    the bearer token read by the shell from ``token`` (a file, or ``$VARIABLE``): the command
    never prints the token itself."""
    items = [f"{json.dumps(field)}: {json.dumps(value)}" for field, value in request.items()]
    lines = [items[:1]]
    for item in items[1:]:
        # each line is indented 7 columns ("  -d '{") and ends with 2 ("," or "}'") at most
        if 7 + len(", ".join([*lines[-1], item])) + 2 > CURL_WIDTH:
            lines.append([item])
        else:
            lines[-1].append(item)
    body = ",\n       ".join(", ".join(line) for line in lines)
    reader = token if token.startswith("$") else f"$(cat {shlex.quote(token)})"
    return (f"curl -s -X POST {url}/score -H 'Content-Type: application/json' \\\n"
            f"  -H \"Authorization: Bearer {reader}\" \\\n"
            f"  -d '{{{body}}}'")


def serve(
    port: Annotated[int | None, typer.Option(help="Port (default BLUEPRINT_SERVING_PORT).")] = None,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Start the real-time scoring service (BentoML) on 127.0.0.1 in the background.

    It serves the registry's champion and follows promotions and rollbacks without a restart.
    """
    select_usecase(usecase)
    if not get_settings().usecase.serving.online:
        echo_err(f"error: {usecase} is served in batch (its daily lists under scores/{usecase}/): "
              "it has no online service")
        raise typer.Exit(2)
    from orchestration.lib.serving.process import (
        ServingStartError,
        running_scoring_service,
        start_scoring_service,
    )
    from orchestration.lib.serving.snapshot import current_snapshot

    settings = prepare()
    url = f"http://127.0.0.1:{port or settings.serving_port}"
    if pid := running_scoring_service(settings):
        typer.echo(f"The scoring service is already running (process group {pid}).")
    else:
        try:
            server = start_scoring_service(settings, port)
        except ServingStartError as error:
            echo_err(f"error: {error}")
            raise typer.Exit(1) from None
        url = server.url
        typer.echo(f"Scoring service: {url}  (OpenAPI: {url}/; logs: {server.log_path})")
    try:
        last_day = current_snapshot(settings.snapshot_dir).last_day
    except Exception:  # noqa: BLE001 - the example only needs a plausible date
        last_day = date.today()
    timestamp = f"{last_day + timedelta(days=1)}T13:45:10"
    example = settings.usecase.example_request(timestamp)
    if example is not None:
        from orchestration.lib.serving.guard import TOKEN_ENV, token_path

        token = f"${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else str(token_path(settings))
        typer.echo("Try it:\n" + curl_example(url, example, token))


def stop(
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Stop what `blueprint ui`, `blueprint serve` and `make demo` started."""
    select_usecase(usecase)
    from orchestration.lib.serving.process import stop_process_group, stop_scoring_service

    settings = get_settings()
    if stop_scoring_service(settings):
        typer.echo("Stopped the scoring service.")
    if _stop_reports_server(settings):
        typer.echo("Stopped the reports server.")
    pid = ui_running(settings)
    if pid is None:
        typer.echo("The Dagster UI is not running.")
        return
    stop_process_group(pid, UI_STOP_S)  # SIGKILL if it has not stopped by then
    _pid_file(settings).unlink(missing_ok=True)
    typer.echo("Stopped the Dagster UI.")

