"""The closed-loop scenario: a drift world replayed through the service until a retrained
champion takes over.

One driver for the end-to-end test (``tests/e2e/test_closed_loop.py``: CI's tiny world, and the
default world's size as ``make test-slow``) and the benchmark row (``benchmarks/closed_loop.py``):

1. ``blueprint simulate`` a world whose fraud changes on the drift day, its last days held back;
2. ``blueprint materialize`` the rest: a champion is trained and promoted;
3. the scoring service starts, and a prober sends it a known payment every 0.2 s all along;
4. ``blueprint replay`` lives the held days in steps: each day's payments scored over HTTP in
   time order, the fraud reports sent as filed, the files delivered, the pipeline run, the
   retraining sensor evaluated (a promoted challenger reaches the service through the
   registry).

The scenario's windows come from the use case's declaration with the scenario's overrides. What
the loop measures is :mod:`blueprint_cli.loop_numbers`. Everything runs through the real
``blueprint`` command, Dagster and BentoML.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

import httpx

from orchestration.lib.core.usecase import UseCase, load_usecase
from orchestration.lib.serving.guard import auth_headers
from orchestration.settings import NO_TELEMETRY_ENV, PROJECT_ROOT, USECASES_DIR, Settings

START = date(2018, 4, 1)

SWITCHED = re.compile(r"champion switched (\S+) -> (\S+);")
"""How ``blueprint replay`` reports a switch (old -> new)."""
STEP_LINE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))? in ([0-9.]+) s: scored ", re.MULTILINE
)
"""How ``blueprint replay`` reports a step (first day, last day when more than one, seconds);
the lines after it, up to the next step's, belong to that step (a switch among them)."""
SERVING = re.compile(r"serving model (\S+) \(was (\S+)\)")
"""How the service logs a switch (new, old)."""


@dataclass(frozen=True)
class Scenario:
    """A drift world, its windows, and the replay's steps (first, last day of each)."""

    name: str
    world: dict[str, int]
    """The simulator's size settings (``blueprint simulate --set name=value``)."""
    days: int
    hold: int
    drift: int
    env: dict[str, str]
    """The environment's overrides of the use case's declaration (and of the settings)."""
    step_days: int
    usecase: str = "fraud"
    """The use case played: its declaration gives the windows (:attr:`declaration`)."""

    @property
    def first_held(self) -> date:
        return START + timedelta(days=self.days - self.hold)

    @property
    def drift_day(self) -> date:
        return START + timedelta(days=self.drift)

    @property
    def last_day(self) -> date:
        return START + timedelta(days=self.days - 1)

    @property
    def held_days(self) -> list[date]:
        return [self.first_held + timedelta(days=offset) for offset in range(self.hold)]

    @cached_property
    def declaration(self) -> UseCase:
        """The use case's declaration with the scenario's overrides."""
        return load_usecase(self.usecase, USECASES_DIR, environ=self.env)

    @property
    def max_report_delay(self) -> int:
        """The days after its event a label can still arrive."""
        return self.declaration.label.maturity.days

    @property
    def fire_day(self) -> date:
        """The first day after which the sensor can fire: the newest mature training window
        (:func:`orchestration.lib.monitoring.retraining.newest_training_window`) then holds the
        required days from the drift day on."""
        declared = self.declaration
        lag = (
            declared.monitoring.min_post_drift_days
            + self.max_report_delay
            + declared.protocol.test.days - 1
            + declared.protocol.delay.days
        )
        return self.drift_day + timedelta(days=lag)

    def steps(self) -> list[tuple[date, date]]:
        """Replay steps: up to just after the drift starts, up to the day the sensor can fire,
        then the days the new champion serves; each cut in chunks of ``step_days``."""
        cuts = [self.drift_day + timedelta(days=2), self.fire_day, self.last_day]
        steps, first = [], self.first_held
        for cut in cuts:
            while first <= cut:
                last = min(cut, first + timedelta(days=self.step_days - 1))
                steps.append((first, last))
                first = last + timedelta(days=1)
        return steps

    def invocations(self) -> list[tuple[date, date, int]]:
        """The ``blueprint replay`` commands that play :meth:`steps`: (first day, last day,
        step days) for each run of consecutive steps of the same length (one process for
        them all when every step is one day)."""
        runs: list[tuple[date, date, int]] = []
        for first, last in self.steps():
            length = (last - first).days + 1
            if runs and runs[-1][2] == length:
                runs[-1] = (runs[-1][0], last, length)
            else:
                runs.append((first, last, length))
        return runs

    @property
    def switch_step(self) -> int:
        """The replay step in which the sensor can first fire (it ends on ``fire_day``)."""
        return next(i for i, (_, last) in enumerate(self.steps()) if last == self.fire_day)

    def describe(self) -> str:
        sizes = ", ".join(f"{n:,} {name.removeprefix('n_')}" for name, n in self.world.items())
        return (
            f"{sizes}, {self.days} days, drift from day {self.drift} ({self.drift_day}), the "
            f"last {self.hold} held back and replayed in {len(self.steps())} steps"
        )


TINY = Scenario(
    name="tiny", world={"n_customers": 1000, "n_terminals": 2000}, days=28, hold=12, drift=17,
    step_days=1,
    env={
        "BLUEPRINT_FRAUD_PROTOCOL_TRAIN": "4",
        "BLUEPRINT_FRAUD_PROTOCOL_DELAY": "1",
        "BLUEPRINT_FRAUD_PROTOCOL_TEST": "3",
        "BLUEPRINT_FRAUD_PROTOCOL_FOLDS": "1",
        "BLUEPRINT_FRAUD_PROTOCOL_FOLD_STEP": "3",
        "BLUEPRINT_FRAUD_GATE_PRIMARY_FLOOR": "0.05",
        "BLUEPRINT_FRAUD_LABEL_MATURITY": "2",
        "BLUEPRINT_FRAUD_MONITORING_MIN_POST_DRIFT_DAYS": "2",
        "BLUEPRINT_FRAUD_DECISION_BUDGET_PER_DAY": "20",
        "BLUEPRINT_SERVING_POLL_SECONDS": "0.2",
    },
)
"""CI's scenario: a 28-day world whose frauds are all reported within 2 days, short windows;
the held days fed to the pipeline one at a time."""
FULL = Scenario(
    name="full", world={"n_customers": 5000, "n_terminals": 10000}, days=140, hold=42,
    drift=100, step_days=7,
    env={"BLUEPRINT_SERVING_POLL_SECONDS": "0.2"},
)
"""`make test-slow` and the full benchmark: the default world's size and the handbook's windows,
drift on day 100."""
SCENARIOS = {s.name: s for s in (TINY, FULL)}


def scenario_environment(
    scenario: Scenario, home: Path, serving_port: int, reports_port: int
) -> dict[str, str]:
    """The environment the scenario's commands, its service and its readers run with."""
    return {
        **NO_TELEMETRY_ENV,
        **scenario.env,
        "BLUEPRINT_SERVING_PORT": str(serving_port),
        "BLUEPRINT_REPORTS_PORT": str(reports_port),
        "BLUEPRINT_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
    }


class Prober(threading.Thread):
    """Sends a known payment again and again: every answer must be a 200."""

    def __init__(self, url: str, payment: dict, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.payment, self.headers = url, payment, headers
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.versions: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30, headers=self.headers) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(f"{self.url}/score", json=self.payment)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                    else:
                        self.versions.append(response.json()["model_version"])
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.sent += 1
                time.sleep(0.2)


@dataclass
class LoopRun:
    """What a run of the scenario left: its home, the champions, the replay's output per step,
    the service's log, the prober, and how long each phase took."""

    scenario: Scenario
    home: Path
    settings: Settings
    first_champion: str
    prober: Prober
    outputs: list[str]
    log: str
    phases: list[tuple[str, float]] = field(default_factory=list)

    @cached_property
    def switches(self) -> list[tuple[int, str, str]]:
        """(replay step, old champion, new champion) of every switch, in order."""
        return [
            (step, *match.groups())
            for step, out in enumerate(self.outputs) for match in SWITCHED.finditer(out)
        ]

    @property
    def challenger(self) -> str:
        """The version the first switch promoted: the challenger the drift's retraining
        trained (a growing drift may retrain again later)."""
        if not self.switches:
            raise AssertionError("the champion never switched")
        return self.switches[0][2]

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.phases)


class LoopError(RuntimeError):
    """A command of the scenario failed (the message holds its output)."""


def blueprint(*args: str) -> str:
    """Run the real ``blueprint`` command (this environment's); its stdout."""
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "blueprint"), *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        raise LoopError(
            f"blueprint {' '.join(args)} exited {completed.returncode}\n"
            f"--- stdout\n{completed.stdout[-5000:]}\n--- stderr\n{completed.stderr[-10000:]}"
        )
    return completed.stdout


class PhaseClock:
    """How long each phase of a run took, each logged as it ends."""

    def __init__(self, scenario: Scenario, log) -> None:
        self.scenario, self.log = scenario, log
        self.phases: list[tuple[str, float]] = []

    def add(self, name: str, seconds: float, logged: bool = True) -> None:
        self.phases.append((name, seconds))
        if logged:
            self.log(f"closed loop ({self.scenario.name}): {name} in {seconds:.1f} s")

    def timed(self, name: str, fn, *args):
        clock = time.perf_counter()
        value = fn(*args)
        self.add(name, time.perf_counter() - clock)
        return value


def run_loop(scenario: Scenario, log=lambda message: None) -> LoopRun:
    """Run the scenario in the home the environment names (see :func:`scenario_environment`:
    the caller sets it, and keeps it while it reads the results)."""
    from blueprint_cli.replay import day_events
    from orchestration.lib.serving.process import start_scoring_service
    from orchestration.settings import get_settings

    settings = get_settings()
    clock = PhaseClock(scenario, log)
    first_champion = simulate_and_train(scenario, settings, clock)
    server = clock.timed("start the service", start_scoring_service, settings,
                         settings.serving_port)
    # the first payment the replay will send: the prober's copies are retries of it
    prober = Prober(server.url, day_events(settings, scenario.first_held)[0],
                    auth_headers(settings))
    prober.start()
    outputs: list[str] = []
    try:
        for first, last, step_days in scenario.invocations():
            outputs += replay(scenario, first, last, step_days, clock)
    finally:
        prober.stop.set()
        prober.join(timeout=30)
        server.stop()
    return LoopRun(
        scenario=scenario, home=settings.home, settings=settings, first_champion=first_champion,
        prober=prober, outputs=outputs, log=server.log_path.read_text(), phases=clock.phases,
    )


def simulate_and_train(scenario: Scenario, settings: Settings, clock: PhaseClock) -> str:
    """Simulate the scenario's world and materialize its first days; the champion promoted."""
    from orchestration.lib.registry import registry

    sizes = [arg for name, n in scenario.world.items() for arg in ("--set", f"{name}={n}")]
    clock.timed(
        "simulate", blueprint, "simulate", *sizes, "--days", str(scenario.days),
        "--drift-from", str(scenario.drift), "--hold-last", str(scenario.hold),
        "--set", f"max_report_delay_days={scenario.max_report_delay}", "--seed", "3",
        "--no-progress",
    )
    clock.timed("materialize the first days", blueprint, "materialize")
    first_champion = registry.champion_version(settings)
    if first_champion is None:
        raise LoopError("the first materialize promoted no champion")
    return first_champion


def replay(
    scenario: Scenario, first: date, last: date, step_days: int, clock: PhaseClock
) -> list[str]:
    """One ``blueprint replay`` command over [first, last]: the output of each of its steps."""
    started = time.perf_counter()
    output = blueprint(
        "replay", "--from", first.isoformat(), "--to", last.isoformat(),
        "--step-days", str(step_days), "--no-progress",
    )
    seconds = time.perf_counter() - started
    steps = step_outputs(output)
    expected = [(a, b) for a, b in scenario.steps() if first <= a and b <= last]
    if len(steps) != len(expected):
        raise LoopError(
            f"blueprint replay {first}..{last} reported {len(steps)} steps, not "
            f"{len(expected)}:\n{output[-5000:]}"
        )
    for span, step_seconds, _ in steps:
        clock.add(f"replay {span}", step_seconds)
    # the command's start (Python, the definitions) and its end, outside every step
    clock.add(
        f"replay {first}..{last}: outside the steps",
        seconds - sum(step_seconds for _, step_seconds, _ in steps), logged=False,
    )
    return [text for _, _, text in steps]


def step_outputs(output: str) -> list[tuple[str, float, str]]:
    """A ``blueprint replay`` output cut by step: (days, seconds, the step's lines)."""
    found = list(STEP_LINE.finditer(output))
    steps = []
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(output)
        first, last, seconds = match.groups()
        span = first if last is None else f"{first}..{last}"
        steps.append((span, float(seconds), output[match.start():end]))
    return steps
