"""What every benchmark shares: the world it runs on, timings, peak memory, the results page.

A benchmark module exposes ``run(bench: Bench) -> Section``; ``python -m benchmarks`` runs them
in order on one world and rewrites the results page. Timings are medians of repeated runs with
their min and max (:func:`repeat`); peak memory is the resident set of a whole process tree,
sampled (:class:`PeakRss`, :func:`run_measured`), so that subprocesses (dbt, Dagster's, the
service's workers) count.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import psutil

from orchestration.lib.core.markdown import markdown_table as markdown_table  # the sections use it
from orchestration.settings import PROJECT_ROOT

T = TypeVar("T")
MiB = 1024 * 1024
GiB = 1024 * MiB
DOCS_DIR = PROJECT_ROOT / "docs"
PAGE = DOCS_DIR / "BENCHMARKS.md"
QUICK_PAGE = DOCS_DIR / "BENCHMARKS-quick.md"
PLOTS_DIR = DOCS_DIR / "benchmarks"
LIBRARIES = (
    "duckdb", "dbt-core", "dbt-duckdb", "dagster", "great-expectations", "scikit-learn",
    "evidently", "bentoml", "pandas", "numpy",
)


@contextmanager
def environ_applied(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment (the sections' in-process code reads its
    settings there); restore it after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Timing:
    """Seconds over repeated runs: the median, with the min and max."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))

    def __str__(self) -> str:
        return f"{fmt_seconds(self.median)} ({fmt_seconds(self.low)}–{fmt_seconds(self.high)})"


def repeat(fn: Callable[[], T], runs: int, warmup: int = 0) -> tuple[Timing, T]:
    """Run ``fn`` ``warmup`` times untimed, then ``runs`` times timed: (timing, last result)."""
    result: Any = None
    for _ in range(warmup):
        result = fn()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return Timing.of(seconds), result


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (gone ones count zero)."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakRss:
    """Samples a process tree's resident memory in a thread; ``peak`` bytes, ``samples`` kept.

    ``with PeakRss() as peak: ...`` watches this process and its children;
    ``PeakRss(pid)`` another one's tree. Short spikes between samples (every ``interval`` s)
    can be missed: the number is a floor of the true peak, close for allocations that last.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []  # (time.time(), bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss(self.process)
            self.samples.append((time.time(), rss))
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        """The highest sample taken between two ``time.time()`` instants (0 if none)."""
        return max((rss for at, rss in self.samples if start <= at <= end), default=0)


@dataclass(frozen=True)
class Measured:
    """A finished command: its wall time, the peak RSS of its process tree, its output."""

    seconds: float
    peak: int
    completed: subprocess.CompletedProcess
    memory: PeakRss


def run_measured(
    command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = PROJECT_ROOT,
    check: bool = True,
) -> Measured:
    """Run a command to its end, timing it and sampling its process tree's memory."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    with PeakRss(process.pid) as memory:
        stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    completed = subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
    if check and process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {process.returncode}\n{stdout[-3000:]}\n{stderr[-6000:]}"
        )
    return Measured(seconds, memory.peak, completed, memory)


@dataclass(frozen=True)
class Target:
    """A target of the issue: what it is, the goal, what was measured, and whether it holds."""

    what: str
    goal: str
    measured: str
    met: bool


@dataclass
class Section:
    """One table of the page: its markdown (tables and text), targets and plot files."""

    number: int
    title: str
    body: str
    targets: list[Target] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def markdown(self, page_dir: Path) -> str:
        lines = [f"## {self.number}. {self.title}", "", self.body.strip(), ""]
        for plot in self.plots:
            lines += [f"![{plot.stem}]({os.path.relpath(plot, page_dir)})", ""]
        if self.targets:
            lines += ["| target | goal | measured | |", "|---|---|---|---|"]
            lines += [
                f"| {t.what} | {t.goal} | {t.measured} | {'met' if t.met else '**missed**'} |"
                for t in self.targets
            ]
            lines.append("")
        lines += [f"_This section ran in {fmt_seconds(self.seconds)}._", ""]
        return "\n".join(lines)


@dataclass(frozen=True)
class World:
    """The simulated world a run of the benchmarks measures on."""

    customers: int
    terminals: int
    days: int
    seed: int = 0
    env: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        windows = ", ".join(f"{k}={v}" for k, v in self.env.items()) or "the default windows"
        return (
            f"{self.customers:,} customers, {self.terminals:,} terminals, {self.days} days "
            f"(seed {self.seed}); {windows}"
        )


DEFAULT_WORLD = World(customers=5000, terminals=10000, days=183)
"""The handbook-size world `make demo` simulates."""
QUICK_WORLD = World(
    customers=400, terminals=800, days=40, seed=7,
    env={
        "BLUEPRINT_FRAUD_PROTOCOL_TRAIN": "5",
        "BLUEPRINT_FRAUD_PROTOCOL_DELAY": "3",
        "BLUEPRINT_FRAUD_PROTOCOL_TEST": "5",
        "BLUEPRINT_FRAUD_PROTOCOL_FOLDS": "2",
        "BLUEPRINT_FRAUD_PROTOCOL_FOLD_STEP": "5",
        "BLUEPRINT_FRAUD_GATE_PRIMARY_FLOOR": "0.05",
    },
)
"""`make bench-quick`: the e2e tests' world, so that the harness never rots (not for claims)."""


@dataclass
class Bench:
    """What a benchmark run shares: the world, its home, where plots go, quick or full."""

    world: World
    home: Path
    quick: bool
    plots_dir: Path = PLOTS_DIR
    log: Callable[[str], None] = print

    @property
    def env(self) -> dict[str, str]:
        """The environment of the world's commands (its home, its windows, no telemetry)."""
        from orchestration.settings import NO_TELEMETRY_ENV

        return {
            **os.environ, **NO_TELEMETRY_ENV, **self.world.env,
            "BLUEPRINT_HOME": str(self.home), "DAGSTER_HOME": str(self.home / "dagster"),
        }

    @property
    def name(self) -> str:
        return "quick" if self.quick else "full"

    def plot_path(self, stem: str) -> Path:
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        return self.plots_dir / f"{stem}-{self.name}.png"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> list[str]:
    """The machine and versions, one markdown bullet each."""
    memory = psutil.virtual_memory().total / GiB
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        f"- {os.cpu_count()} cores ({cpu_model()}), {memory:.1f} GiB memory, no GPU",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- {', '.join(versions)}",
    ]


def write_page(
    path: Path, sections: Sequence[Section], bench: Bench, started: datetime, seconds: float
) -> None:
    """The results page, written atomically."""
    from orchestration.lib.core.atomic import atomic_write_bytes

    kind = "`make bench-quick` (small world: the harness works; not for claims)" if bench.quick \
        else "`make bench` (the default world)"
    lines = [
        "# Benchmarks",
        "",
        f"Written by {kind} on {started:%Y-%m-%d} (UTC), in {fmt_seconds(seconds)}. Every number "
        "below comes from this one run; comparisons are ratios of two things measured side by "
        "side in it. Timings are medians with (min–max) over the repeats stated.",
        "",
        "**Machine**",
        "",
        *machine(),
        "",
        f"**World**: {bench.world.describe()}.",
        "",
    ]
    targets = [(s, t) for s in sections for t in s.targets]
    if targets:
        lines += ["## Targets", "", "| section | target | goal | measured | |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {s.number} | {t.what} | {t.goal} | {t.measured} | "
            f"{'met' if t.met else '**missed**'} |"
            for s, t in targets
        ]
        lines.append("")
    for section in sorted(sections, key=lambda s: s.number):
        lines.append(section.markdown(path.parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "\n".join(lines).encode())


def now() -> datetime:
    return datetime.now(UTC)


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def fmt_bytes(value: float) -> str:
    return f"{value / GiB:.2f} GiB" if value >= GiB else f"{value / MiB:.0f} MiB"
