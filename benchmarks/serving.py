"""Real-time serving: latency under load of the scoring service over real HTTP, beside its floor
and a FastAPI peer.

Three ways of scoring the same payments with the same champion on the same online features:

- the BentoML service (``bentos/scorer``, fraud's), started as ``blueprint serve`` starts it
  (:func:`orchestration.lib.serving.process.start_scoring_service`), with 1 and 2 workers;
- a minimal hand-written FastAPI app (:mod:`benchmarks.fastapi_peer`) under uvicorn, with 1 and
  2 workers: the peer a user would write instead;
- the floor: the service's own class called in-process, no HTTP (:mod:`benchmarks.serving_floor`),
  one request at a time, with where its time goes (online features, model, prediction log).

Each server is driven by an open-loop load generator: requests leave at a fixed rate whatever
the answers do, and each one's latency runs from its scheduled send time, so queueing is never
hidden. The servers run on one core and the generator on the other (CPU affinity, as ``taskset``
sets it). Rates: a light load (half what the floor scores per second), 50, 200 and 500
requests/s, then a search for the highest rate held with p99 under 50 ms. ``/score_batch``
throughput in batches of 500. Everything runs on a copy of the
world's serving files (model store, registry, snapshot, key) in a temporary folder, emptied of
prediction logs before each server starts: every server starts from the same state and sees the
same payments in the same order, and the world is never modified.

    .venv/bin/python -m benchmarks --only serving [--quick] --home HOME
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import numpy as np
import psutil
import uvloop

from benchmarks.harness import Bench, Section, Target, markdown_table
from orchestration.lib.core.cards import luhn_valid
from orchestration.lib.serving.guard import auth_headers, ensure_serving_token
from orchestration.lib.serving.process import (
    ScoringServer,
    free_port,
    service_env,
    start_scoring_service,
)
from orchestration.lib.serving.snapshot import current_snapshot
from orchestration.settings import PROJECT_ROOT, Settings, get_settings

NUMBER = 4
TITLE = "Real-time serving"
RATES = (50, 200, 500)
"""Requests per second every server is measured at (the issue's), beside a light load."""
HELD_P99_S = 0.050
"""A rate is held when its p99 stays under this and no request fails."""
TARGET_RATE, TARGET_P99_S = 200, 0.020
TARGET_BATCH_PER_S = 5000
BATCH_SIZE = 500
LIGHT_LOAD = 0.5
"""The light load: this share of what the floor scores per second on one core."""
MAX_PROBE_RATE = 2000
"""The search for the highest rate held stops here."""
GIVE_UP_S = 0.5
MIN_QUEUE = 25
"""A run stops, overloaded, once a request has waited :data:`GIVE_UP_S` with at least
:data:`MIN_QUEUE` requests in flight: a queue that old and long (not one slow request) already
puts more than 1 % of a run of up to 45 s over 50 ms, and letting it grow would only lengthen
the drain."""
WARMUP_REQUESTS = 10
"""Sent one after the other before each run, not counted (a connection, warm caches)."""
IDLE_S = 2.0
"""Seconds a started server is watched idle: its background CPU (polling, metrics)."""
SERVER_CORE, CLIENT_CORE = 0, 1
SEED = 0
JSON_HEADERS = {"Content-Type": "application/json"}
SERVICE, PEER = "BentoML service", "FastAPI peer"


@dataclass(frozen=True)
class Plan:
    """How long and how often: the full run or the quick one."""

    duration_s: float
    """Seconds of a run at a fixed rate."""
    repeats: int
    """Runs per rate of the ladder (the light load and :data:`RATES`)."""
    probes: int
    """Single runs spent searching for the highest rate held."""
    min_requests: int
    """A run at a low rate lasts long enough to send this many."""
    floor_requests: int
    batches: int
    """Batches of :data:`BATCH_SIZE` per throughput run."""
    batch_repeats: int
    workers: tuple[int, ...] = (1, 2)

    def max_payments(self) -> int:
        """An upper bound of the payments one server is sent."""
        rates = self.repeats * (RATES[0] + sum(RATES)) + self.probes * MAX_PROBE_RATE
        runs = self.repeats * (len(RATES) + 1) + self.probes
        return math.ceil(
            rates * self.duration_s + runs * WARMUP_REQUESTS
            + self.batches * self.batch_repeats * BATCH_SIZE + self.floor_requests + 100
        )


FULL = Plan(duration_s=20, repeats=3, probes=5, min_requests=20, floor_requests=1000, batches=10,
            batch_repeats=3)
QUICK = Plan(duration_s=2, repeats=1, probes=1, min_requests=5, floor_requests=50, batches=2,
             batch_repeats=1, workers=(1,))
"""Quick: one worker only; each server start costs tens of seconds."""


# -- the payments ------------------------------------------------------------------------------


class PaymentStream:
    """New payments of the world's cards at its terminals, on the day after the serving
    snapshot, in time order; payment ``i`` is the same for every server (same seed).

    The card numbers come from the raw zone and stay in this process's memory: never printed,
    never written (the servers log the card_key, as in production).
    """

    def __init__(self, raw_dir: Path, snapshot_dir: Path, capacity: int, seed: int = SEED):
        snapshot = current_snapshot(snapshot_dir)
        with duckdb.connect() as con:
            cards = [
                row[0]
                for row in con.execute(
                    "select distinct card_number from read_parquet(?) order by 1",
                    [str(raw_dir / "customers" / "*" / "data.parquet")],
                ).fetchall()
                if luhn_valid(row[0])
            ]
            terminals = [
                row[0]
                for row in con.execute(
                    "select distinct terminal_id from read_parquet(?) order by 1",
                    [str(snapshot.table_path("stg_transactions"))],
                ).fetchall()
            ]
        rng = np.random.default_rng(seed)
        self._cards = [cards[i] for i in rng.integers(len(cards), size=capacity)]
        self._terminals = [terminals[i] for i in rng.integers(len(terminals), size=capacity)]
        self._amounts = np.round(rng.gamma(2.0, 25.0, size=capacity), 2)
        self._start = datetime.combine(snapshot.last_day + timedelta(days=1), day_time(0, 30))
        self._step = timedelta(seconds=(23 * 3600) / capacity)  # the whole stream in one day
        self.capacity = capacity
        self.cards, self.terminals = len(cards), len(terminals)
        self.position = 0

    def payment(self, i: int) -> dict[str, Any]:
        return {
            "transaction_id": f"bench-{i}",
            "timestamp": (self._start + i * self._step).isoformat(),
            "card_number": self._cards[i],
            "terminal_id": self._terminals[i],
            "amount": float(self._amounts[i]),
        }

    def take(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` payments."""
        if self.position + n > self.capacity:
            raise RuntimeError(f"the payment stream holds {self.capacity} payments")
        taken = [self.payment(i) for i in range(self.position, self.position + n)]
        self.position += n
        return taken


def request_bodies(payments: Sequence[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(p).encode() for p in payments]


def batch_request_bodies(payments: Sequence[dict[str, Any]]) -> list[bytes]:
    return [
        json.dumps({"transactions": list(payments[i : i + BATCH_SIZE])}).encode()
        for i in range(0, len(payments), BATCH_SIZE)
    ]


# -- the world's serving files, copied ---------------------------------------------------------


def copy_serving_home(source: Settings, home: Path) -> Settings:
    """What the service reads, copied from ``source`` into ``home``: the model store, the
    registry, the pseudonymization key, the feature definitions and the current snapshot."""
    target = replace(source, home=home)
    for folder in ("bentoml/models", "registry", "secrets"):
        shutil.copytree(source.home / folder, home / folder)
    target.snapshot_dir.mkdir(parents=True)
    shutil.copy2(source.feature_definitions_path, target.feature_definitions_path)
    snapshot = current_snapshot(source.snapshot_dir)
    shutil.copytree(snapshot.path, target.snapshot_dir / snapshot.path.name)
    shutil.copy2(source.snapshot_dir / "CURRENT", target.snapshot_dir / "CURRENT")
    return target


def _forget_traffic(settings: Settings) -> None:
    """Remove what a server logged, so that the next one starts from the snapshot alone."""
    for folder in (settings.prediction_log_dir, settings.label_log_dir):
        shutil.rmtree(folder, ignore_errors=True)


# -- pinning and servers -----------------------------------------------------------------------


@contextmanager
def pinned(core: int | None) -> Iterator[None]:
    """Run this thread, and the processes it starts meanwhile, on one core (what ``taskset``
    does); ``None``: leave the affinity alone."""
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def settle(pid: int, timeout_s: float = 300.0) -> float:
    """Wait until a server's process tree is idle (it drained its queue, or finished loading):
    under 15 % of a core over two windows of 0.25 s in a row. Returns the seconds waited."""
    started = time.perf_counter()
    idle = 0
    while idle < 2 and time.perf_counter() - started < timeout_s:
        before = _cpu_seconds(pid)
        time.sleep(0.25)
        idle = idle + 1 if _cpu_seconds(pid) - before < 0.25 * 0.15 else 0
    return time.perf_counter() - started


@dataclass(frozen=True)
class Server:
    """A running server of the comparison."""

    kind: str
    workers: int
    process: ScoringServer
    started_s: float
    affinity: set[int]
    idle_cpu_per_s: float
    """CPU seconds per second of its processes while no request comes."""
    headers: dict[str, str]
    """What every request carries: JSON, and the bearer token both servers check."""

    @property
    def label(self) -> str:
        return f"{self.kind}, {self.workers} worker{'s' if self.workers > 1 else ''}"


def start_service(settings: Settings, workers: int, env: dict[str, str]) -> ScoringServer:
    """The BentoML service as ``blueprint serve`` starts it, with ``workers`` workers."""
    overrides = {"services": {"fraud_scorer": {"workers": workers}}}
    return start_scoring_service(
        settings, free_port(), env={**env, "BENTOML_CONFIG_OVERRIDES": json.dumps(overrides)}
    )


def start_peer(settings: Settings, workers: int, env: dict[str, str]) -> ScoringServer:
    """The FastAPI peer under uvicorn (its defaults, access log included, as BentoML's)."""
    port = free_port()
    ensure_serving_token(settings)  # the peer checks the same token as the service
    log_path = settings.logs_dir / f"fastapi-peer-{workers}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.fastapi_peer:app", "--host",
             "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=PROJECT_ROOT, env=service_env(settings, env), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    server = ScoringServer(pid=process.pid, url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + settings.serving_start_timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the FastAPI peer exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{server.url}/livez", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:  # not listening yet
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError("the FastAPI peer did not answer in time")


@contextmanager
def serving(
    kind: str, workers: int, settings: Settings, env: dict[str, str], core: int | None
) -> Iterator[Server]:
    """Start a server of ``kind`` pinned to ``core`` on a fresh copy of the state; stop it."""
    _forget_traffic(settings)
    start = start_service if kind == SERVICE else start_peer
    clock = time.perf_counter()
    try:
        with pinned(core):
            process = start(settings, workers, env)
    except Exception as failure:  # the log goes with the temporary home: show its end
        logs = sorted(settings.logs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        tail = logs[-1].read_text(errors="replace")[-3000:] if logs else "(no log)"
        raise RuntimeError(
            f"{kind} with {workers} workers did not start: {failure}\n{tail}"
        ) from failure
    try:
        settle(process.pid)  # every worker loaded, not only the one that answered
        affinity: set[int] = set()
        for member in _tree(process.pid):
            try:
                affinity |= set(member.cpu_affinity())
            except psutil.Error:
                pass
        started_s = time.perf_counter() - clock
        cpu = _cpu_seconds(process.pid)
        time.sleep(IDLE_S)
        idle = (_cpu_seconds(process.pid) - cpu) / IDLE_S
        headers = {**JSON_HEADERS, **auth_headers(settings)}
        yield Server(kind, workers, process, started_s, affinity, idle, headers)
    finally:
        process.stop()


# -- the open-loop load generator --------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One run at a fixed rate: each request's latency from its scheduled send time."""

    rate: float
    latencies: np.ndarray
    """Seconds; a request unanswered when the run stopped counts its age then."""
    errors: int
    stopped_after_s: float | None
    """Set when the run stopped early, overloaded (see :data:`MIN_QUEUE`)."""
    send_lag_p99_s: float
    """How late the generator itself sent requests (p99): near 0 when it kept up."""
    cpu_per_request_s: float = math.nan
    """CPU seconds of the server's processes (all threads) from the run's start until it
    drained, less their idle CPU over that time, per request sent."""

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))

    @property
    def overloaded(self) -> bool:
        return self.stopped_after_s is not None


async def open_loop(
    url: str, bodies: Sequence[bytes], rate: float, headers: dict[str, str]
) -> Run:
    """Send the first :data:`WARMUP_REQUESTS` ``bodies`` one after the other, then the others
    at ``rate`` per second whatever the answers (a request waits for no other)."""
    loop = asyncio.get_running_loop()
    warmup, bodies = bodies[:WARMUP_REQUESTS], bodies[WARMUP_REQUESTS:]
    n = len(bodies)
    sent, done = np.full(n, np.nan), np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    finished = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for body in warmup:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        due = loop.time() + 0.01 + np.arange(n) / rate

        async def send(i: int) -> None:
            sent[i] = loop.time()
            try:
                async with session.post(url, data=bodies[i], headers=headers) as response:
                    await response.read()
                    ok[i] = response.status == 200
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass  # an error: ok stays False
            done[i] = loop.time()
            finished[0] += 1

        tasks = []
        oldest = 0
        stopped = None
        while stopped is None and finished[0] < n:
            now = loop.time()
            while len(tasks) < n and due[len(tasks)] <= now:
                tasks.append(loop.create_task(send(len(tasks))))
            while oldest < len(tasks) and not np.isnan(done[oldest]):
                oldest += 1
            in_flight = len(tasks) - finished[0]
            if in_flight >= MIN_QUEUE and now - due[oldest] > GIVE_UP_S:
                stopped = now - due[0]
            elif len(tasks) < n:
                await asyncio.sleep(max(0.0, due[len(tasks)] - loop.time()))
            else:
                await asyncio.sleep(0.005)
        end = loop.time()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    launched = len(tasks)
    answered = ~np.isnan(done[:launched])
    return Run(
        rate=rate,
        latencies=np.where(answered, done[:launched], end) - due[:launched],
        errors=int(np.sum(answered & ~ok[:launched])),
        stopped_after_s=stopped,
        send_lag_p99_s=float(np.nanpercentile(sent[:launched] - due[:launched], 99))
        if launched else math.nan,
    )


async def batch_throughput(
    url: str, bodies: Sequence[bytes], clients: int, headers: dict[str, str]
) -> tuple[float, int]:
    """Send the batches over ``clients`` connections, each one after the other: (seconds,
    failed batches)."""
    queue = list(bodies)
    failed = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def client() -> None:
            nonlocal failed
            while queue:
                body = queue.pop(0)
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    failed += response.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started, failed


# -- measuring one server ----------------------------------------------------------------------


@dataclass
class ServerResult:
    label: str
    kind: str
    workers: int
    started_s: float
    affinity: set[int]
    idle_cpu_per_s: float
    runs: dict[float, list[Run]] = field(default_factory=dict)
    """Runs by rate: the ladder's repeats and the search's single runs."""
    skipped: dict[float, list[float]] = field(default_factory=dict)
    """Rates of the ladder not run in some repeats, each time with the lower rate that was
    already overloaded."""
    batch_per_s: list[float] = field(default_factory=list)
    batch_failures: int = 0

    def held(self, rate: float) -> bool:
        runs = self.runs[rate]
        return (
            not any(r.overloaded or r.errors for r in runs) and _median_p(runs, 99) < HELD_P99_S
        )

    def highest_held(self) -> float | None:
        return max((rate for rate in self.runs if self.held(rate)), default=None)

    def lowest_missed_above(self, rate: float) -> float | None:
        return min((r for r in self.runs if r > rate and not self.held(r)), default=None)


def measure_server(
    server: Server, stream: PaymentStream, plan: Plan, ladder: Sequence[float],
    core: int | None, log: Callable[[str], None],
) -> ServerResult:
    """The ladder of rates (a rate above one found overloaded in the same repeat is not run:
    it is overloaded too), the search for the highest rate held, then batch throughput."""
    result = ServerResult(server.label, server.kind, server.workers, server.started_s,
                          server.affinity, server.idle_cpu_per_s)
    url = server.process.url

    def payments(rate: float) -> int:
        return WARMUP_REQUESTS + max(plan.min_requests, round(rate * plan.duration_s))

    def run_at(rate: float) -> Run:
        bodies = request_bodies(stream.take(payments(rate)))
        cpu, clock = _cpu_seconds(server.process.pid), time.perf_counter()
        with pinned(core), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            run = runner.run(open_loop(f"{url}/score", bodies, rate, server.headers))
        drained = settle(server.process.pid)
        busy = (_cpu_seconds(server.process.pid) - cpu
                - server.idle_cpu_per_s * (time.perf_counter() - clock))
        run = replace(run, cpu_per_request_s=busy / (WARMUP_REQUESTS + len(run.latencies)))
        result.runs.setdefault(rate, []).append(run)
        log(f"serving: {server.label} at {rate:g}/s: p50 {run.p(50) * 1000:.1f} ms, p99 "
            f"{run.p(99) * 1000:.1f} ms"
            + (f", overloaded after {run.stopped_after_s:.2f} s (drained in {drained:.1f} s)"
               if run.overloaded else ""))
        return run

    for _ in range(plan.repeats):
        overloaded_at = None
        for rate in ladder:
            if overloaded_at is not None:
                result.skipped.setdefault(rate, []).append(overloaded_at)
                stream.take(payments(rate))  # unsent: the next runs get the same payments
            elif run_at(rate).overloaded:
                overloaded_at = rate
    for _ in range(plan.probes):
        rate = next_probe(result)
        if rate is None:
            break
        run_at(rate)

    batched = plan.batches * plan.batch_repeats * BATCH_SIZE
    stream.position = stream.capacity - batched  # the same batches whatever the search ran
    bodies = batch_request_bodies(stream.take(batched))
    for repeat in range(plan.batch_repeats):
        chunk = bodies[repeat * plan.batches : (repeat + 1) * plan.batches]
        with pinned(core), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            seconds, failed = runner.run(
                batch_throughput(f"{url}/score_batch", chunk, server.workers, server.headers)
            )
        result.batch_per_s.append(len(chunk) * BATCH_SIZE / seconds)
        result.batch_failures += failed
        settle(server.process.pid)
    log(f"serving: {server.label}: /score_batch {statistics.median(result.batch_per_s):,.0f}/s")
    return result


def next_probe(result: ServerResult) -> float | None:
    """The next rate of the search for the highest held: up by half while every rate holds,
    down by 4 while none does, then the geometric middle of the highest held and the lowest
    missed, to within 10 %."""
    low = result.highest_held()
    high = result.lowest_missed_above(low or 0)
    if high is None:
        assert low is not None
        rate = _round_rate(low * 1.5)
        return rate if rate <= MAX_PROBE_RATE else None
    if low is None:
        rate = _round_rate(high / 4)
        return rate if rate < high else None
    rate = _round_rate(math.sqrt(low * high))
    return rate if high / low > 1.1 and low < rate < high else None


def _round_rate(rate: float) -> float:
    """Whole rates; multiples of 5 from 50 on."""
    step = 5 if rate >= 50 else 1
    return float(max(1, round(rate / step) * step))


# -- the floor ---------------------------------------------------------------------------------


def measure_floor(
    settings: Settings, raw_dir: Path, plan: Plan, env: dict[str, str], core: int | None,
    workdir: Path,
) -> dict[str, Any]:
    """:mod:`benchmarks.serving_floor` in its own process, pinned to the server core."""
    _forget_traffic(settings)
    out = workdir / "floor.json"
    command = [
        sys.executable, "-m", "benchmarks.serving_floor", "--raw-dir", str(raw_dir),
        "--out", str(out), "--requests", str(plan.floor_requests), "--batches",
        str(plan.batches * plan.batch_repeats), "--capacity", str(plan.max_payments()),
    ]
    with pinned(core):
        completed = subprocess.run(
            command, cwd=PROJECT_ROOT, env=service_env(settings, env), capture_output=True,
            text=True, stdin=subprocess.DEVNULL,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"the floor exited {completed.returncode}:\n{completed.stderr[-4000:]}")
    return json.loads(out.read_text())


# -- the section -------------------------------------------------------------------------------


def run(bench: Bench) -> Section:
    """Measure the floor, then each server, on a copy of ``bench.home``'s serving files."""
    plan = QUICK if bench.quick else FULL
    pin = {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)
    server_core, client_core = (SERVER_CORE, CLIENT_CORE) if pin else (None, None)
    load = os.getloadavg()[0]
    source = replace(get_settings(), home=bench.home)
    with tempfile.TemporaryDirectory(prefix="blueprint-serving-") as workdir:
        settings = copy_serving_home(source, Path(workdir) / "home")
        env = {
            **bench.env,
            "BLUEPRINT_HOME": str(settings.home),
            "DAGSTER_HOME": str(settings.dagster_home),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p
            ),
        }
        bench.log("serving: the floor (the service's class, in-process)")
        floor = measure_floor(settings, source.raw_dir, plan, env, server_core, Path(workdir))
        light = min(RATES[0], max(1, math.floor(LIGHT_LOAD / np.mean(floor["single"]["wall"]))))
        ladder = sorted({light, *RATES})
        stream = PaymentStream(source.raw_dir, settings.snapshot_dir, plan.max_payments())
        results = []
        for workers in plan.workers:
            for kind in (SERVICE, PEER):
                stream.position = 0  # the same payments for every server
                with serving(kind, workers, settings, env, server_core) as server:
                    bench.log(f"serving: {server.label} ready in {server.started_s:.1f} s")
                    results.append(
                        measure_server(server, stream, plan, ladder, client_core, bench.log)
                    )
    page = Page(bench, plan, results, floor, ladder, stream)
    return page.section(load, server_core, client_core)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:,.0f}"


def _median_p(runs: Sequence[Run], q: float) -> float:
    return statistics.median(r.p(q) for r in runs)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


@dataclass
class Page:
    """The section's tables, plot and targets from the measurements."""

    bench: Bench
    plan: Plan
    results: list[ServerResult]
    floor: dict[str, Any]
    ladder: list[float]
    stream: PaymentStream

    def __post_init__(self) -> None:
        self.by = {(r.kind, r.workers): r for r in self.results}
        self.floor_total = np.asarray(self.floor["single"]["wall"])

    def overloaded(self, result: ServerResult, rate: float) -> bool:
        return rate in result.skipped or any(r.overloaded for r in result.runs.get(rate, []))

    def cell(self, result: ServerResult, rate: float, q: float) -> str:
        """Median (min–max) over the runs, in ms; "≥" when a run stopped overloaded (its
        percentiles count unanswered requests at their age then: floors)."""
        runs = result.runs.get(rate, [])
        if not runs:
            return "overloaded" if rate in result.skipped else "–"
        values = [r.p(q) for r in runs]
        text = _ms(statistics.median(values))
        if len(values) > 1:
            text += f" ({_ms(min(values))}–{_ms(max(values))})"
        return f"≥ {text}" if any(r.overloaded for r in runs) else text

    def p99_at(self, result: ServerResult, rate: float) -> str:
        """The p99 at ``rate``, or why there is none."""
        if not self.overloaded(result, rate):
            return f"{self.cell(result, rate, 99)} ms"
        lowest = min(
            [r for r in result.runs if any(x.overloaded for x in result.runs[r])]
            + [r for lower in result.skipped.values() for r in lower]
        )
        held = result.highest_held()
        return (
            f"overloaded{f' from {lowest:g} req/s' if lowest < rate else ''} "
            f"(highest held: {f'{held:g} req/s' if held else 'none'})"
        )

    def status(self, result: ServerResult, rate: float) -> str:
        runs = result.runs.get(rate, [])
        parts = []
        stopped = [r for r in runs if r.overloaded]
        if stopped:
            after = ", ".join(f"{r.stopped_after_s:.1f} s" for r in stopped)
            parts.append(f"**overloaded** (stopped after {after})")
        if rate in result.skipped:
            lower = result.skipped[rate]
            parts.append(
                f"not run in {len(lower)} of {self.plan.repeats} repeats: overloaded at "
                f"{min(lower):g} req/s already"
            )
        errors = sum(r.errors for r in runs)
        if errors:
            parts.append(f"{errors} errors")
        if not parts:
            parts.append("held" if result.held(rate) else "p99 over 50 ms")
        return "; ".join(parts)

    def latency_table(self) -> str:
        rows = []
        for workers in self.plan.workers:
            for rate in self.ladder:
                for kind in (SERVICE, PEER):
                    result = self.by[(kind, workers)]
                    runs = result.runs.get(rate, [])
                    lag = max((r.send_lag_p99_s for r in runs), default=math.nan)
                    rows.append((
                        f"{rate:g}", result.label,
                        *(self.cell(result, rate, q) for q in (50, 95, 99)),
                        f"{len(runs)}", "–" if math.isnan(lag) else _ms(lag),
                        self.status(result, rate),
                    ))
        return markdown_table(
            ["req/s", "server", "p50 ms", "p95 ms", "p99 ms", "runs", "generator lag p99 ms",
             ""],
            rows,
        )

    def held_table(self) -> str:
        rows = []
        for result in self.results:
            best = result.highest_held()
            missed = result.lowest_missed_above(best or 0)
            rows.append((
                result.label,
                f"**{best:g}**" if best is not None else "**none**",
                self.cell(result, best, 99) if best is not None else "–",
                f"{missed:g} (p99 {self.cell(result, missed, 99)} ms)" if missed else "–",
                ", ".join(f"{r:g}" for r in sorted(result.runs)),
                f"{result.started_s:.0f} s",
            ))
        return markdown_table(
            ["server", "highest req/s held (p99 < 50 ms)", "its p99 ms", "lowest rate missed",
             "rates run", "ready after"],
            rows,
        )

    def comparison(self) -> tuple[str, str, bool]:
        """The service against the peer: the table, the worst case in words, and whether the
        service was never slower (its p99 never above the peer's, never overloaded alone)."""
        rows = []
        worst, where, alone = 0.0, "", []
        for workers in self.plan.workers:
            service, peer = self.by[(SERVICE, workers)], self.by[(PEER, workers)]
            for rate in self.ladder:
                over = [n for n, r in (("service", service), ("peer", peer))
                        if self.overloaded(r, rate)]
                if over:
                    if over == ["service"]:
                        alone.append(f"{rate:g} req/s, {_plural(workers, 'worker')}")
                    rows.append((f"{workers}", f"{rate:g}", "–", "–",
                                 f"{' and '.join(over)} overloaded"))
                    continue
                p50, p99 = (_median_p(service.runs[rate], q) / _median_p(peer.runs[rate], q)
                            for q in (50, 99))
                if p99 > worst:
                    worst, where = p99, f"{rate:g} req/s, {_plural(workers, 'worker')}"
                rows.append((f"{workers}", f"{rate:g}", f"{p50:.2f}×", f"{p99:.2f}×", ""))
        table = markdown_table(
            ["workers", "req/s", "p50 service / peer", "p99 service / peer", ""], rows
        )
        words = [f"worst p99 ratio {worst:.2f}× ({where})"] if where else []
        if alone:
            words.append(f"the service alone overloaded at {'; '.join(alone)}")
        return table, "; ".join(words) or "no rate where either completed", (
            worst <= 1 and not alone
        )

    def batch_table(self) -> str:
        rows = [(r.label, _per_s(r.batch_per_s), f"{r.batch_failures}") for r in self.results]
        rows.append(("floor: the service's class in-process, no HTTP",
                     _per_s(self.floor["batch_per_s"]), "0"))
        runs = (f"median (min–max) of {self.plan.batch_repeats} runs of "
                f"{self.plan.batches} batches" if self.plan.batch_repeats > 1
                else f"one run of {self.plan.batches} batches")
        table = markdown_table(
            [f"`/score_batch`, batches of {BATCH_SIZE}, {runs}", "transactions/s",
             "failed batches"],
            rows,
        )
        return (
            f"`/score_batch` throughput: batches of {BATCH_SIZE} sent one after the other, on "
            "as many connections as the server has workers; the floor scores them one after "
            f"the other in-process.\n\n{table}"
        )

    def profile(self) -> str:
        """Where the time goes: the floor's stages (one payment, a batch), then what HTTP and
        the framework add at the light load."""
        single, batch = self.floor["single"], self.floor["batch"]
        total, batch_total = np.asarray(single["wall"]), np.asarray(batch["wall"])
        rows = []
        for name, label in (
            ("validate", "request: JSON into the service's pydantic model"),
            ("features", "online features (`OnlineFeatureStore.staged_features`)"),
            ("model", "model: score and reason codes (`ScoringModel.score_and_explain`)"),
            ("log", "prediction log (`PredictionLog.write`: group commit, fsync)"),
            ("rest", "the rest: response model and JSON, locks"),
        ):
            one, many = np.asarray(single["stages"][name]), np.asarray(batch["stages"][name])
            rows.append((
                label, f"{np.median(one) * 1000:.2f}", f"{np.percentile(one, 99) * 1000:.2f}",
                f"{np.mean(single['stages_cpu'][name]) * 1000:.2f}",
                f"{one.mean() / total.mean():.0%}", f"{np.median(many) * 1000:,.0f}",
                f"{np.mean(batch['stages_cpu'][name]) * 1000:,.0f}",
                f"{many.mean() / batch_total.mean():.0%}",
            ))
        rows.append((
            "**the floor: all of it, in-process**", f"**{np.median(total) * 1000:.2f}**",
            f"**{np.percentile(total, 99) * 1000:.2f}**",
            f"**{np.mean(single['cpu']) * 1000:.2f}**", "100%",
            f"**{np.median(batch_total) * 1000:,.0f}**",
            f"**{np.mean(batch['cpu']) * 1000:,.0f}**", "100%",
        ))
        table = markdown_table(
            ["stage", "`/score` p50 ms", "p99 ms", "CPU ms (mean)", "share of wall",
             f"`/score_batch` of {BATCH_SIZE}: median ms", "CPU ms (mean)", "share of wall"],
            rows,
        )
        return (
            "Where the time goes. The floor is the service's own class (`Scorer`) called "
            f"in-process on the server core, one request at a time ({len(total):,} requests "
            f"after {WARMUP_REQUESTS} of warm-up), then {len(batch_total)} batches, with its "
            "three calls that do the work timed: wall time, and the CPU time of the request's "
            "thread (`time.thread_time`; wall above CPU is time spent waiting for the core on "
            "this shared machine, or, for the log, for its writer thread's fsync). "
            f"Model: {self.floor['model']}.\n\n{table}\n\n{self.overhead()}"
        )

    def overhead(self) -> str:
        """What HTTP and the framework add to the floor, per request at the light load: in
        latency, and in CPU (which the machine's other load does not inflate as much)."""
        light = self.ladder[0]
        floor_cpu = float(np.mean(self.floor["single"]["process_cpu"]))
        rows = [(
            "floor (in-process)", _ms(float(np.median(self.floor_total))),
            _ms(float(np.percentile(self.floor_total, 99))), f"{floor_cpu * 1000:.1f}", "", "",
        )]
        for result in self.results:
            runs = result.runs.get(light, [])
            if not runs or self.overloaded(result, light):
                continue
            cpu = statistics.median(r.cpu_per_request_s for r in runs)
            rows.append((
                result.label, self.cell(result, light, 50), self.cell(result, light, 99),
                f"{cpu * 1000:.1f}", f"{(cpu - floor_cpu) * 1000:+.1f}",
                f"{result.idle_cpu_per_s * 1000:.0f}",
            ))
        table = markdown_table(
            [f"at {light:g} req/s", "p50 ms", "p99 ms", "CPU ms per request",
             "CPU over the floor: HTTP and framework", "idle CPU ms/s (subtracted)"],
            rows,
        )
        return (
            "What HTTP and the framework add, at the light load: in latency, and in CPU per "
            "request: all threads of the server's processes from a run's start until it "
            f"drained, less their CPU when idle (measured for {IDLE_S:g} s after start: "
            "BentoML's registry and snapshot polling, metrics), per request; the floor's whole "
            "process, per call.\n\n" + table
        )

    def section(self, load: float, server_core: int | None, client_core: int | None) -> Section:
        plan = self.plan
        service = self.by[(SERVICE, 1)]
        comparison, versus_peer, never_slower = self.comparison()
        target_p99 = (math.inf if self.overloaded(service, TARGET_RATE)
                      else _median_p(service.runs[TARGET_RATE], 99))
        batch = statistics.median(service.batch_per_s)
        two = [w for w in plan.workers if w != 1]
        p99_more = "; ".join(
            f"{_plural(w, 'worker')}: {self.p99_at(self.by[(SERVICE, w)], TARGET_RATE)}"
            for w in two
        )
        batch_more = "; ".join(
            f"{_plural(w, 'worker')}: {statistics.median(self.by[(SERVICE, w)].batch_per_s):,.0f}/s"
            for w in two
        )
        missed = [name for name, met in (
            (f"p99 at {TARGET_RATE} req/s", target_p99 <= TARGET_P99_S),
            ("`/score_batch` throughput", batch >= TARGET_BATCH_PER_S),
            ("never slower than the peer", never_slower),
        ) if not met]
        pinning = (
            f"Every process of each server ran on core {server_core} and the load generator "
            f"on core {client_core} (CPU affinity, as `taskset` sets it, checked on the "
            "servers' processes: "
            + ", ".join(f"{r.label} on {sorted(r.affinity)}" for r in self.results) + ")."
            if server_core is not None
            else "Fewer than two cores were available: servers and load generator shared them."
        )
        workers_note = (
            "With 2 workers both share the server core: a second worker adds concurrency (one "
            "request's fsync or wait overlaps another's work), not CPU; and each worker holds "
            "its own online state, for the service as for the peer, so a card's payments "
            "scored by the other worker are missing from its features (the service ships with "
            "1 worker)."
            if two
            else "This quick run measures 1 worker only (each server start costs tens of "
            "seconds); `make bench` measures 1 and 2."
        )
        cores = os.cpu_count()
        busy = (
            f" Load average when the section started: {load:.1f} on {cores} cores: other work "
            "competed for the cores, which inflates every time here (CPU time, in the profile, "
            "less so); the comparisons are side by side, under the same load."
            if load > 1.5
            else f" Load average when the section started: {load:.1f} on {cores} cores."
        )
        runs = (f"median (min–max) of {plan.repeats} runs" if plan.repeats > 1 else "one run")
        poll = get_settings().serving_poll_seconds
        method = (
            "Three ways of scoring the same payments with the same champion on the same online "
            "features: the BentoML service as `blueprint serve` starts it; a minimal "
            "hand-written FastAPI app under uvicorn (`benchmarks/fastapi_peer.py`), the peer a "
            "user would write instead; and the floor, the service's own class called in-process "
            "with no HTTP. Each does the same work per payment: validate the request (the "
            "service's own strict pydantic models; the peer validates the raw body with them, "
            "as FastAPI's body parameters validate parsed Python objects, which a strict "
            "datetime refuses), compute the online features from the same snapshot "
            "(`OnlineFeatureStore`), score and explain with the champion, and write the "
            "prediction log row (group commit, fsync) before answering. The peer lacks only "
            "what is not per-request work: following the registry and the snapshot (the "
            f"service polls both every {poll:g} s), readiness, fraud reports. Both log each "
            "request (BentoML's access log, uvicorn's). One difference is the service's own "
            "design, not missing work: requests that wait for the feature store together are "
            "scored in one call (`Coalescer`, up to 64 payments), so the service's CPU per "
            "request falls as the load rises; the peer, as a user would write it, scores each "
            "request on its own. The floor scores one request at a time."
        )
        load_text = (
            f"Payments: new ones of the world's cards ({self.stream.cards:,}) at its terminals "
            f"({self.stream.terminals:,}), on the day after the serving snapshot, unique ids, "
            "the same ones in the same order for every server (the ladder's runs and the "
            "batches; the search's runs follow each server's results), each server started on "
            "the same "
            "copy of the world's serving files (prediction logs emptied). Load is open-loop: "
            "requests leave at a fixed rate whatever the answers do (aiohttp, keep-alive, a new "
            "connection whenever all are busy) and each latency runs from the request's "
            "**scheduled** send time, so a server that falls behind pays for its queue (the "
            "generator's own lateness is shown: near 0, it kept up). A run lasts "
            f"{plan.duration_s:g} s (at least {plan.min_requests} requests) after "
            f"{WARMUP_REQUESTS} requests of warm-up sent one by one; it stops early, overloaded, "
            f"once a request has waited {GIVE_UP_S:g} s with {MIN_QUEUE} or more in flight "
            "(its percentiles, marked ≥, count the "
            "unanswered at their age then: floors), and a higher rate is then not run in that "
            "repeat. Servers drain (their processes idle) between runs. The ladder: the issue's "
            f"{', '.join(map(str, RATES))} req/s and a light load of {self.ladder[0]:g} req/s, "
            f"{LIGHT_LOAD:.0%} of what the floor scores per second. {pinning} {workers_note}"
            f"{busy}"
        )
        body = "\n\n".join([
            method,
            load_text,
            f"`/score` latency, {runs}:",
            self.latency_table(),
            f"Highest rate held with p99 under 50 ms (the ladder, then up to {plan.probes} "
            "single runs searching between the highest rate held and the lowest missed, to "
            "within 10 %):",
            self.held_table(),
            "The service against the peer, same workers, same rate, same payments (below 1: "
            "the service is faster; ratios of medians, where neither was overloaded):",
            comparison,
            self.batch_table(),
            self.profile(),
        ])
        if missed:
            body += f"\n\n**Missed: {', '.join(missed)}.** " + self.diagnosis(
                target_p99 <= TARGET_P99_S, batch >= TARGET_BATCH_PER_S, never_slower,
                versus_peer,
            )
        return Section(
            NUMBER, TITLE, body,
            targets=[
                Target(f"`/score` p99 at {TARGET_RATE} req/s (1 worker)",
                       f"≤ {TARGET_P99_S * 1000:.0f} ms",
                       self.p99_at(service, TARGET_RATE)
                       + (f" ({p99_more})" if p99_more else ""),
                       target_p99 <= TARGET_P99_S),
                Target(f"`/score_batch` throughput (1 worker, batches of {BATCH_SIZE})",
                       f"≥ {TARGET_BATCH_PER_S:,}/s",
                       f"{batch:,.0f}/s" + (f" ({batch_more})" if batch_more else ""),
                       batch >= TARGET_BATCH_PER_S),
                Target("never slower than the FastAPI peer (p99, every rate, "
                       f"{' and '.join(map(str, plan.workers))} worker{'s' if two else ''})",
                       "service / peer ≤ 1",
                       versus_peer, never_slower),
            ],
            plots=[self.plot()],
        )

    def diagnosis(
        self, p99_met: bool, batch_met: bool, never_slower: bool, versus_peer: str
    ) -> str:
        """Why each missed target was missed, from the profile's numbers."""
        single, batch = self.floor["single"], self.floor["batch"]

        def cpu_ms(timings: dict[str, Any], stage: str) -> float:
            return float(np.mean(timings["stages_cpu"][stage])) * 1000

        cpu = float(np.mean(single["process_cpu"]))
        reasons = []
        if not p99_met:
            held = self.by[(SERVICE, 1)].highest_held()
            floor_p99 = float(np.percentile(self.floor_total, 99))
            service_cpu = [
                f"{rate:g} req/s: {statistics.median(r.cpu_per_request_s for r in runs) * 1000:.1f}"
                for rate, runs in sorted(self.by[(SERVICE, 1)].runs.items())
                if not any(r.overloaded for r in runs)
            ]
            reasons.append(
                f"`/score`: one payment scored alone costs {cpu * 1000:.0f} ms of CPU "
                f"in-process ({cpu_ms(single, 'features'):.0f} ms online features, "
                f"{cpu_ms(single, 'model'):.0f} ms model and reason codes), so a server that "
                f"scores each request on its own, as the peer does, manages at most about "
                f"{1 / cpu:.0f} payments a second on one core"
                + (f", fewer than {TARGET_RATE}" if 1 / cpu < TARGET_RATE else "")
                + ". The service scores the requests that wait together in one call, so its "
                "CPU per request (all its processes, idle subtracted) falls as the load rises: "
                + (", ".join(service_cpu) + " ms" if service_cpu else "no rate held")
                + f". The floor's own p99, with no HTTP and no queue, is {_ms(floor_p99)} ms"
                + (f", above the {TARGET_P99_S * 1000:.0f} ms target" if floor_p99 > TARGET_P99_S
                   else ": the rest is HTTP, the framework and queueing")
                + ". The service held "
                + (f"{held:g} req/s" if held else "no rate") + " with p99 under 50 ms."
            )
        if not batch_met:
            reasons.append(
                f"`/score_batch`: in-process the floor scores "
                f"{statistics.median(self.floor['batch_per_s']):,.0f} transactions/s; of a "
                f"batch's CPU, {cpu_ms(batch, 'features') / np.mean(batch['cpu']) / 1000:.0%} "
                "goes to the online features (the compiled feature SQL over each card's "
                f"history) and {cpu_ms(batch, 'model') / np.mean(batch['cpu']) / 1000:.0%} to "
                "the model and its reason codes."
            )
        if not never_slower:
            light = self.ladder[0]
            extra = [
                statistics.median(r.cpu_per_request_s for r in self.by[(SERVICE, w)].runs[light])
                - statistics.median(r.cpu_per_request_s for r in self.by[(PEER, w)].runs[light])
                for w in self.plan.workers
                if light in self.by[(SERVICE, w)].runs and light in self.by[(PEER, w)].runs
            ]
            if extra and max(extra) > 0:
                why = (f"; at the light load it used {max(extra) * 1000:.1f} ms more CPU per "
                       "request than the peer for the same work (idle CPU subtracted): what "
                       "BentoML's HTTP and framework layers cost over FastAPI's.")
            else:
                why = "; its CPU per request was not higher than the peer's."
            reasons.append(f"Against the peer: {versus_peer}{why}")
        return " ".join(reasons)

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker

        path = self.bench.plot_path("serving-latency")
        workers = self.plan.workers
        figure, axes = plt.subplots(1, len(workers), figsize=(max(8, 6 * len(workers)), 5.5),
                                    sharey=True, squeeze=False)
        colors = {SERVICE: "tab:blue", PEER: "tab:orange"}
        for ax, count in zip(axes[0], workers, strict=True):
            for result in (r for r in self.results if r.workers == count):
                rates = sorted(result.runs)
                for q, style in ((50, "--o"), (99, "-o")):
                    values = [[x.p(q) * 1000 for x in result.runs[r]] for r in rates]
                    medians = [statistics.median(v) for v in values]
                    ax.errorbar(
                        rates, medians,
                        yerr=[np.subtract(medians, [min(v) for v in values]),
                              np.subtract([max(v) for v in values], medians)],
                        fmt=style, color=colors[result.kind], capsize=3, markersize=4,
                        label=f"{result.kind} p{q}",
                    )
                over = [i for i, r in enumerate(rates) if self.overloaded(result, r)]
                ax.plot([rates[i] for i in over],
                        [_median_p(result.runs[rates[i]], 99) * 1000 for i in over],
                        "x", color="black", markersize=9)
            ax.axhline(np.median(self.floor_total) * 1000, color="grey", linestyle=":",
                       label="floor p50 (in-process)")
            ax.axhline(np.percentile(self.floor_total, 99) * 1000, color="grey",
                       linestyle="-.", label="floor p99")
            ax.axhline(HELD_P99_S * 1000, color="red", linewidth=0.8, label="50 ms")
            ax.axhline(TARGET_P99_S * 1000, color="green", linewidth=0.8,
                       label=f"20 ms (p99 target at {TARGET_RATE}/s)")
            top = ax.get_xaxis_transform()  # x in data, y in axes
            for rate in RATES:
                ax.axvline(rate, color="grey", linewidth=0.5, alpha=0.5)
                results = [r for r in self.results if r.workers == count]
                if all(rate in r.skipped and rate not in r.runs for r in results):
                    ax.text(rate, 0.97, "overloaded: not run", rotation=90, fontsize=7,
                            ha="right", va="top", transform=top)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
                axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xlabel("requests per second, open loop")
            ax.set_title(f"{_plural(count, 'worker')} (×: overloaded, a floor; grey lines: the "
                         "issue's rates)", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("latency from scheduled send, ms")
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=7)
        figure.suptitle(f"/score latency against load ({self.bench.name} run)")
        figure.tight_layout(rect=(0, 0.1, 1, 1))
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


def _per_s(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:,.0f}"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"
