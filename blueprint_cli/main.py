"""The ``blueprint`` command: simulate the world, run the pipeline, start and stop the UI."""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Collection
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from blueprint_cli.models import models_app
from blueprint_cli.usecase import DEFAULT_USECASE, UsecaseOption, select_usecase
from orchestration.lib.core.instance import ensure_instance
from orchestration.lib.core.usecase import declared_pii_columns, usecase_names
from orchestration.settings import (
    PROJECT_ROOT,
    USECASES_DIR,
    Settings,
    export_to_subprocesses,
    get_settings,
)

app = typer.Typer(help="Blueprint: a production-shaped ML system, one declaration per use case.")
app.add_typer(models_app, name="models")


def refuse_old_home(settings: Settings) -> None:
    """A home made before use cases had state of their own cannot be read: say what to do."""
    found = [path for path in OLD_LAYOUT if (settings.home / path).exists()]
    if found:
        _echo(
            f"error: {settings.home} was made by an older Blueprint ({', '.join(found)} at its "
            "top level; each use case now keeps its warehouse, registry, serving, scores, "
            "monitoring and reports in folders of its own). Move it aside or delete it and run "
            "`make demo` again: the world is simulated again from its seed."
        )
        raise typer.Exit(2)


OLD_LAYOUT = (
    "warehouse.duckdb", "registry/registry.db", "serving/snapshots",
    "serving/feature_definitions.json",
)
"""What only a home of the layout before use cases holds."""


def _prepare() -> Settings:
    """Resolve settings, export them for subprocesses and make sure the instance exists."""
    settings = get_settings()
    refuse_old_home(settings)
    export_to_subprocesses(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    ensure_instance(settings.dagster_home)
    return settings


def _echo(message: str) -> None:
    typer.echo(message, err=True)


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


def simulated_world(settings: Settings):
    """The simulator the use case declares (:class:`simulator.worlds.World`), or exit."""
    module = settings.usecase.simulator
    if module is None:
        _echo(f"error: the use case {settings.usecase_name!r} declares no simulator")
        raise typer.Exit(2)
    return importlib.import_module(module).WORLD


def world_exists(settings: Settings) -> bool:
    return simulated_world(settings).exists(settings.home)


def _fields(values: list[str]) -> dict[str, str]:
    fields = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{value!r} is not FIELD=VALUE", param_hint="--set")
        fields[name.strip()] = text.strip()
    return fields


@app.command()
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
    settings = _prepare()
    world = simulated_world(settings)
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
    known = {"start": start_day, "seed": seed, "faults": faults,
             "drift_from": _parse_drift_from(drift_from, start_day)}
    if days is not None:
        known["n_days"] = days
    try:
        config = world.config_with(_fields(set_fields or []), **known)
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(str(error)) from None
    if not 0 <= hold_last < config.n_days:
        raise typer.BadParameter(
            f"{hold_last} is not a number of days in [0, {config.n_days})",
            param_hint="--hold-last",
        )
    hold_from = config.n_days - hold_last if hold_last else None
    try:
        line = world.simulate(settings.home, config, force, hold_from, progress)
    except FileExistsError as error:
        _echo(f"error: {error} (pass --force to replace it)")
        raise typer.Exit(1) from None
    typer.echo(f"{line} into {settings.landing_dir}")
    if hold_from is not None:
        typer.echo(
            f"Held back the files delivered from the night after {config.day(hold_from)} "
            f"in {world.outbox(settings.home)}"
        )


def _dagster_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def plan_runs(select: str | None) -> list[tuple[str, tuple[date, date] | None]]:
    """The runs that bring the selection up to date: (selection, partition range or None).

    First the data and model assets (ingestion over the days with new data, dbt, training, the
    gate, the serving files; without new data only what is older than its upstream), then the
    daily assets downstream of an unpartitioned one (batch scoring, monitoring) over every day
    they lack, which after the first training is more than the days just ingested: one run per
    distinct set of days, upstream first. A daily asset that can only be built up to some day
    (``ready_until``: a performance report needs mature labels) is planned up to that day.
    """
    import dagster as dg

    from orchestration.definitions import definitions_for
    from orchestration.defs.ingestion.predictions import pending_input
    from orchestration.defs.monitoring.assets import ready_until
    from orchestration.defs.scope import Scope
    from orchestration.lib.ingestion.declared import contracts_of
    from orchestration.lib.ingestion.planning import plan_ingestion

    settings = get_settings()
    scope = Scope(settings.usecase)
    pending, limited = pending_input(scope), ready_until(scope)
    graph = definitions_for(scope.name).resolve_asset_graph()
    selected = dg.AssetSelection.from_string(select or "*").resolve(graph)
    unpartitioned = {k for k in selected if graph.get(k).partitions_def is None}
    everything_unpartitioned = {
        k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is None
    }

    @functools.cache
    def ancestors(key: dg.AssetKey) -> frozenset[dg.AssetKey]:
        return frozenset(dg.AssetSelection.assets(key).upstream().resolve(graph) - {key})

    after_model = {
        k for k in selected - unpartitioned if ancestors(k) & everything_unpartitioned
    }
    data = selected - unpartitioned - after_model
    contracts = contracts_of(settings.usecase).values()
    plan = plan_ingestion(contracts, settings.landing_dir, settings.raw_dir)
    for source, days in plan.waiting.items():
        if days:
            _echo(
                f"Waiting for a readable re-delivery of {source} for "
                f"{', '.join(d.isoformat() for d in days)} (the delivered files cannot be read)"
            )
    runs: list[tuple[str, tuple[date, date] | None]] = []
    instance = dg.DagsterInstance.get()
    loaded = {  # the days any source of the use case is loaded for
        date.fromisoformat(p)
        for source in contracts_of(settings.usecase)
        for p in instance.get_materialized_partitions(scope.key(f"raw_{source}"))
    }
    behind: dict[dg.AssetKey, set[date]] = {}  # days loaded earlier that a daily asset lacks
    for key in data:
        lacking = loaded - {
            date.fromisoformat(p) for p in instance.get_materialized_partitions(key)
        }
        if plan.range is not None:
            lacking = {d for d in lacking if d < plan.range[0]}
        if lacking:
            behind[key] = lacking
    if behind:
        days = set().union(*behind.values())
        runs.append((_keys(behind), (min(days), max(days))))
    if data and plan.range is not None:
        runs.append((_keys(data | unpartitioned), plan.range))

    materialized_at = {
        key: event.timestamp
        for key in graph.get_all_asset_keys()
        if (event := instance.get_latest_materialization_event(key)) is not None
    }

    def newest_daily_upstream(key: dg.AssetKey) -> float:
        daily = [a for a in ancestors(key) if graph.get(a).partitions_def is not None]
        return max((materialized_at.get(a, 0.0) for a in daily), default=0.0)

    outdated = []
    for key in sorted(unpartitioned):
        if key not in materialized_at or materialized_at[key] < newest_daily_upstream(key):
            outdated.append(key)
        elif key in pending and pending[key](settings):
            outdated.append(key)
    if outdated and not (data and plan.range is not None):
        runs.append((_keys(outdated), None))

    if after_model:
        have_data = set(loaded)
        if plan.range is not None:
            first, last = plan.range
            have_data |= {first + timedelta(days=i) for i in range((last - first).days + 1)}
        by_days: dict[tuple[date, date], set[dg.AssetKey]] = {}
        for key in after_model:
            done = {date.fromisoformat(p) for p in instance.get_materialized_partitions(key)}
            missing = have_data - done
            if key in limited:
                until = limited[key](settings, instance, plan.stale)
                missing = {d for d in missing if until is not None and d <= until}
            if missing:
                by_days.setdefault((min(missing), max(missing)), set()).add(key)
        ingest_run = (
            len(runs) - 1 if data and plan.range is not None and by_days.get(plan.range) else None
        )
        if ingest_run is not None:  # the same days as the ingestion: one run, one process
            selection = data | unpartitioned | by_days.pop(plan.range)
            runs[ingest_run] = (_keys(selection), plan.range)
        for days, keys in sorted(
            by_days.items(), key=lambda item: min(len(ancestors(k)) for k in item[1])
        ):
            runs.append((_keys(keys), days))
    return runs


def _keys(keys) -> str:
    return " or ".join(f'key:"{k.to_user_string()}"' for k in sorted(keys))


@app.command()
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

    _prepare()
    runs = plan_runs(select)
    if not runs:
        typer.echo(f"Everything of {usecase} is up to date: nothing to materialize.")
        return
    instance = dg.DagsterInstance.get()
    for selection, partition_range in runs:
        if partition_range is not None:
            first, last = partition_range
            _echo(f"Materializing {selection} for {first} … {last}")
        else:
            _echo(f"Materializing {selection}")
        if not materialize_assets(selection, partition_range, instance, skip_checks):
            _echo("error: the Dagster run failed; open the run in the Dagster UI for details.")
            raise typer.Exit(1)
    typer.echo(f"Materialized {usecase}.")


def materialize_now(selection: str) -> None:
    """Materialize the (unpartitioned) assets ``selection`` names in one run, with all their
    checks, stale or not."""
    import dagster as dg

    from blueprint_cli.runs import materialize_assets

    _echo(f"Materializing {selection}")
    if not materialize_assets(selection, None, dg.DagsterInstance.get()):
        _echo("error: the Dagster run failed; open the run in the Dagster UI for details.")
        raise typer.Exit(1)


@app.command()
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

    _prepare()
    _echo("Training a candidate (training_job)")
    if not execute_job("training_job", dg.DagsterInstance.get()):
        _echo("error: the training run failed; open the run in the Dagster UI for details.")
        raise typer.Exit(1)
    typer.echo("Trained.")


def _pid_file(settings: Settings) -> Path:
    return settings.home / "run" / "dagster-dev.pid"


def _ui_running(settings: Settings) -> int | None:
    pid_file = _pid_file(settings)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file.unlink()
        return None
    return pid


def _wait_for_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(1)
    return False


@app.command()
def ui(
    port: Annotated[int | None, typer.Option(help="Port (default BLUEPRINT_DAGSTER_PORT).")] = None,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Start the Dagster UI (webserver and daemon) on 127.0.0.1 in the background."""
    select_usecase(usecase)
    settings = _prepare()
    port = port or settings.dagster_port
    url = f"http://127.0.0.1:{port}"
    if pid := _ui_running(settings):
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
    _pid_file(settings).write_text(str(process.pid))
    if not _wait_for_http(f"{url}/server_info", timeout_s=90):
        _echo(f"error: the Dagster UI did not answer within 90 s; see {log_dir}/dagster-dev.log")
        raise typer.Exit(1)
    typer.echo(f"Dagster UI: {url}  (logs: {log_dir}/dagster-dev.log; stop with `make stop`)")
    _start_reports_server(settings)


def _reports_pid_file(settings: Settings) -> Path:
    return settings.home / "run" / "reports-server.pid"


def _start_reports_server(settings: Settings) -> None:
    """Serve the monitoring reports on 127.0.0.1, so that their links in the Dagster UI open."""
    pid_file = _reports_pid_file(settings)
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), 0)
            return
        except (ProcessLookupError, ValueError):
            pid_file.unlink()
    from orchestration.lib.monitoring.reports import write_root_index

    write_root_index(settings.reports_root, usecase_names(USECASES_DIR))
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(settings.reports_port),
         "--bind", "127.0.0.1", "--directory", str(settings.reports_root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file.write_text(str(process.pid))
    url = f"http://127.0.0.1:{settings.reports_port}/index.html"
    typer.echo(f"Monitoring reports: {url}")


REPORTS_SERVER_STOP_S = 5.0
UI_STOP_S = 30.0


def _stop_reports_server(settings: Settings) -> bool:
    from orchestration.lib.serving.process import stop_process_group

    pid_file = _reports_pid_file(settings)
    try:
        pid = int(pid_file.read_text())
        os.killpg(pid, 0)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pid_file.unlink(missing_ok=True)
        return False
    stop_process_group(pid, REPORTS_SERVER_STOP_S)  # SIGKILL if it ignores SIGTERM
    pid_file.unlink(missing_ok=True)
    return True


CURL_EXAMPLE = """curl -s -X POST {url}/score -H 'Content-Type: application/json' \\
  -d '{{"transaction_id": "demo-1", "timestamp": "{timestamp}",
       "card_number": "4539578763621486", "terminal_id": "3178", "amount": 57.3}}'"""


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default BLUEPRINT_SERVING_PORT).")] = None,
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Start the real-time scoring service (BentoML) on 127.0.0.1 in the background.

    It serves the registry's champion and follows promotions and rollbacks without a restart.
    """
    select_usecase(usecase)
    if not get_settings().usecase.serving.online:
        _echo(f"error: {usecase} is served in batch (its daily lists under scores/{usecase}/): "
              "it has no online service")
        raise typer.Exit(2)
    from orchestration.lib.serving.process import (
        ServingStartError,
        running_scoring_service,
        start_scoring_service,
    )
    from orchestration.lib.serving.snapshot import current_snapshot

    settings = _prepare()
    url = f"http://127.0.0.1:{port or settings.serving_port}"
    if pid := running_scoring_service(settings):
        typer.echo(f"The scoring service is already running (process group {pid}).")
    else:
        try:
            server = start_scoring_service(settings, port)
        except ServingStartError as error:
            _echo(f"error: {error}")
            raise typer.Exit(1) from None
        url = server.url
        typer.echo(f"Scoring service: {url}  (OpenAPI: {url}/; logs: {server.log_path})")
    try:
        last_day = current_snapshot(settings.snapshot_dir).last_day
    except Exception:  # noqa: BLE001 - the example only needs a plausible date
        last_day = date.today()
    timestamp = f"{last_day + timedelta(days=1)}T13:45:10"
    typer.echo("Try it:\n" + CURL_EXAMPLE.format(url=url, timestamp=timestamp))


@app.command()
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
    pid = _ui_running(settings)
    if pid is None:
        typer.echo("The Dagster UI is not running.")
        return
    stop_process_group(pid, UI_STOP_S)  # SIGKILL if it has not stopped by then
    _pid_file(settings).unlink(missing_ok=True)
    typer.echo("Stopped the Dagster UI.")


@app.command()
def demo(
    usecase: UsecaseOption = DEFAULT_USECASE,
) -> None:
    """Simulate the default world if there is none (its last 14 days held back), materialize
    what is stale (training and promotion included), start the scoring service, replay the
    held-back days through it so the reports have traffic, then start the Dagster UI."""
    select_usecase(usecase)
    settings = _prepare()
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
            "service: each payment scored over HTTP, the fraud reports sent as filed, then the "
            "files delivered and the pipeline run, so that the monitoring reports have traffic."
        )
        replay(from_day=None, to_day=None, step_days=len(held), progress=True, usecase=usecase)
    # last: with the UI up, its daemon's landing sensor would ingest the replay's deliveries too
    ui(port=None, usecase=usecase)
    typer.echo(f"Models: `blueprint models list --usecase {usecase}`.")


DEMO_REPLAY_DAYS = 14
"""Days of the default world `make demo` holds back and replays through the service."""


@app.command()
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
    payments and fraud reports through the scoring service (a use case served online), deliver
    the day's files, run the pipeline (no training), and retrain when the retraining sensor
    fires."""
    select_usecase(usecase)
    from tqdm import tqdm

    from blueprint_cli.replay import (
        ReplayError,
        ServiceClient,
        StepResult,
        replay_days,
        replay_step,
        retrain_if_due,
    )
    from orchestration.lib.serving.process import running_service_url

    settings = _prepare()
    online = settings.usecase.serving.online
    world = simulated_world(settings)
    try:
        held = world.held_days(settings.home)
    except FileNotFoundError as error:
        _echo(f"error: {error} (simulate with --hold-last N to hold days back)")
        raise typer.Exit(1) from None
    if not held:
        typer.echo("Every held-back day has been delivered: nothing to replay.")
        return
    url = running_service_url(settings) if online else None
    if online and url is None:
        _echo("error: the scoring service is not running; start it with `blueprint serve`")
        raise typer.Exit(1)
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
    if _ui_running(settings):
        _echo(
            "warning: the Dagster UI is running: its daemon's sensors also react to the files "
            "the replay delivers and may run the same steps at the same time (stop it with "
            "`blueprint stop` for a replay that runs alone)"
        )
    client = ServiceClient(url, settings.serving_max_batch) if url is not None else None
    bar = tqdm(total=sum(len(s) for s in steps), unit="day", desc="replaying", disable=not progress)

    def run_pipeline(selection: str, skip_checks: Collection[str] = ()) -> None:
        materialize_stale(selection, usecase, skip_checks)

    try:
        pending = StepResult(first=first, last=first)
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
            span = f"{result.first}" + (f"..{result.last}" if result.last != result.first else "")
            served = (
                f"scored {result.scored:,} payments ({result.alerts:,} alerts, "
                f"{result.rejected} refused), sent {result.reports} fraud reports"
                if client is not None else f"delivered {result.delivered} files"
            )
            tqdm.write(
                f"{span} in {time.perf_counter() - clock:.1f} s: {served}; "
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
    except ReplayError as error:
        _echo(f"error: {error}")
        raise typer.Exit(1) from None
    finally:
        bar.close()
        if client is not None:
            client.close()
    typer.echo(
        f"Replayed {steps[0][0]} .. {steps[-1][-1]}. Reports: "
        f"{settings.reports_dir / 'index.html'}"
    )


@app.command("scan-pii")
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
    report, _ = scan_outside_raw_zone(_prepare(), pii_columns, incremental=not full)
    for finding in report.findings:
        typer.echo(f"LEAK {finding}")
    typer.echo(
        f"Scanned {len(report.scanned)} locations ({report.unchanged} files unchanged since a "
        f"clean scan); {len(report.findings)} findings."
    )
    if report.findings:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
