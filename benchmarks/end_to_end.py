"""End to end: simulate the world and materialize everything, wall time and peak memory per stage.

Builds the world every other section measures on, from nothing, through the real `blueprint`
command as `make demo` does (without the replay): ``blueprint simulate`` then
``blueprint materialize``. The materialize stage is broken down by Dagster step, from the step
timings the runs recorded on the instance, each with the peak memory of the whole process tree
(Dagster's processes, dbt's, the Bento build's) sampled while it ran: that is where the time
goes.

    .venv/bin/python -m benchmarks --only end_to_end [--quick]
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg

from benchmarks.harness import (
    Bench,
    GiB,
    Section,
    Target,
    fmt_bytes,
    fmt_seconds,
    markdown_table,
    run_measured,
)

NUMBER = 7
TITLE = "End to end: simulate and materialize everything"
TARGET_SECONDS = 10 * 60
TARGET_BYTES = 4 * GiB
TOP_STEPS = 12


def _blueprint() -> str:
    return str(Path(sys.executable).parent / "blueprint")


def _steps(home: Path, since: float, memory) -> tuple[list[tuple[str, float, int, int]], int]:
    """(step, seconds, peak bytes, runs) per Dagster step of the runs started after ``since``,
    slowest first, and the number of those runs."""
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    seconds: dict[str, float] = defaultdict(float)
    peak: dict[str, int] = defaultdict(int)
    runs: dict[str, int] = defaultdict(int)
    launched = 0
    for record in instance.get_run_records():
        if record.create_timestamp.timestamp() < since:
            continue
        launched += 1
        for step in instance.get_run_step_stats(record.dagster_run.run_id):
            if step.start_time is None or step.end_time is None:
                continue
            seconds[step.step_key] += step.end_time - step.start_time
            peak[step.step_key] = max(
                peak[step.step_key], memory.peak_between(step.start_time, step.end_time)
            )
            runs[step.step_key] += 1
    rows = sorted(
        ((key, seconds[key], peak[key], runs[key]) for key in seconds), key=lambda row: -row[1]
    )
    return rows, launched


def run(bench: Bench) -> Section:
    """Simulate and materialize the world in ``bench.home`` (replaced), measured."""
    if bench.home.exists():
        shutil.rmtree(bench.home)
    bench.home.mkdir(parents=True)
    world = bench.world
    bench.log(f"end to end: simulating {world.describe()} in {bench.home}")
    simulate = run_measured(
        [_blueprint(), "simulate", "--set", f"n_customers={world.customers}", "--set",
         f"n_terminals={world.terminals}", "--days", str(world.days), "--seed", str(world.seed),
         "--no-progress"],
        env=bench.env,
    )
    bench.log(f"end to end: simulated in {fmt_seconds(simulate.seconds)}; materializing")
    since = time.time()
    materialize = run_measured([_blueprint(), "materialize"], env=bench.env)
    bench.log(f"end to end: materialized in {fmt_seconds(materialize.seconds)}")
    steps, launched = _steps(bench.home, since, materialize.memory)
    in_steps = sum(row[1] for row in steps)

    total = simulate.seconds + materialize.seconds
    peak = max(simulate.peak, materialize.peak)
    stages = markdown_table(
        ["stage", "wall time", "peak memory (process tree)"],
        [
            ("`blueprint simulate`", fmt_seconds(simulate.seconds), fmt_bytes(simulate.peak)),
            ("`blueprint materialize`", fmt_seconds(materialize.seconds),
             fmt_bytes(materialize.peak)),
            ("**total**", f"**{fmt_seconds(total)}**", f"**{fmt_bytes(peak)}**"),
        ],
    )
    top = steps[:TOP_STEPS]
    rest = steps[TOP_STEPS:]
    rows = [
        (f"`{key}`", runs, fmt_seconds(seconds), f"{seconds / materialize.seconds:.0%}",
         fmt_bytes(step_peak))
        for key, seconds, step_peak, runs in top
    ]
    if rest:
        rows.append((f"{len(rest)} other steps", sum(r[3] for r in rest),
                     fmt_seconds(sum(r[1] for r in rest)),
                     f"{sum(r[1] for r in rest) / materialize.seconds:.0%}",
                     fmt_bytes(max(r[2] for r in rest))))
    rows.append(("outside steps (processes starting, planning, Dagster's bookkeeping)", "",
                 fmt_seconds(materialize.seconds - in_steps),
                 f"{(materialize.seconds - in_steps) / materialize.seconds:.0%}", ""))
    profile = markdown_table(
        ["materialize step", "runs", "time", "share", "peak memory while it ran"], rows
    )
    body = (
        f"One run from nothing, through the real `blueprint` command, on {world.describe()}.\n\n"
        f"{stages}\n\nWhere `blueprint materialize`'s time goes (Dagster's recorded step "
        f"timings, summed over the {launched} runs it launched; "
        "memory sampled every 50 ms over the whole process tree):\n\n"
        f"{profile}"
    )
    return Section(
        NUMBER, TITLE, body,
        targets=[
            Target("simulate + materialize, wall time", "< 10 min", fmt_seconds(total),
                   total < TARGET_SECONDS),
            Target("simulate + materialize, peak memory", "< 4 GiB", fmt_bytes(peak),
                   peak < TARGET_BYTES),
        ],
    )
