"""The closed loop: a drift world replayed through the service until a retrained champion takes
over; how soon the loop reacts, what the switch buys, and what the loop costs.

The scenario and its driver are the end-to-end test's (``blueprint_cli/closed_loop.py``): the
full run plays the default world's size with the handbook's windows (`make test-slow`'s
scenario, about 30 min here), in its own home next to the benchmark world, with its own ports.
The quick run skips it: CI already replays the tiny world in `make test-loop` (4 to 5 min),
whose test renders this section's tables from that run (``section``), so they never rot.

    .venv/bin/python -m benchmarks --only closed_loop
"""

from __future__ import annotations

import shutil

from benchmarks.harness import (
    Bench,
    PeakRss,
    Section,
    Target,
    environ_applied,
    fmt_bytes,
    fmt_seconds,
    markdown_table,
)
from blueprint_cli import closed_loop, loop_numbers
from orchestration.lib.serving.process import free_port

NUMBER = 8
TITLE = "Closed loop: drift, retraining, switch"
TINY_TARGET_SECONDS = 5 * 60
"""The issue's bound for the closed-loop test on a tiny world."""


def run(bench: Bench) -> Section:
    scenario = closed_loop.TINY if bench.quick else closed_loop.FULL  # quick: only when named
    home = bench.home.parent / f"blueprint-closed-loop-{scenario.name}"
    if home.exists():
        shutil.rmtree(home)
    environment = closed_loop.scenario_environment(scenario, home, free_port(), free_port())
    bench.log(f"closed loop: {scenario.describe()} in {home}")
    with environ_applied(environment), PeakRss() as memory:
        loop = closed_loop.run_loop(scenario, log=bench.log)
        numbers = loop_numbers.loop_numbers(loop)
    bench.log(f"closed loop: {loop_numbers.summary(numbers)}")
    return section(loop, numbers, memory.peak)


def section(loop: closed_loop.LoopRun, numbers: dict, peak_bytes: int) -> Section:
    """The section's tables and targets for a finished run of the scenario (also rendered by
    the closed-loop test, on CI's tiny run: the quick benchmark does not replay the loop)."""
    scenario = loop.scenario

    def ap(key: str) -> str:
        mean, days = numbers[key]
        return f"{mean:.3f} ({days} mature days)"

    results = markdown_table(
        ["", ""],
        [
            ("drift starts", str(numbers["drift_day"])),
            ("first day whose reports breach a threshold",
             f"{numbers['first_breach']} (+{numbers['days_to_breach']} days)"),
            ("sensor fired, challenger trained, promoted and served after",
             f"{numbers['switched_after']} (+{numbers['days_to_switch']} days)"),
            ("switches in the run (a growing drift may retrain again)",
             str(numbers["switches"])),
            ("realized AP, old champion, replayed days before the drift",
             ap("realized_ap_before_drift")),
            ("realized AP, old champion, after the drift", ap("realized_ap_after_drift")),
            ("realized AP, the drift's challenger, the days it served",
             ap("realized_ap_challenger")),
            (f"AP on the days after the switch ({numbers['rows_after_switch']:,} payments, "
             f"{numbers['frauds_after_switch']} frauds), both scored in batch: old / new",
             f"{numbers['batch_ap_after_switch_old']:.3f} / "
             f"{numbers['batch_ap_after_switch_new']:.3f}"),
            ("prober requests during the whole replay (failed)",
             f"{numbers['prober_requests']:,} ({numbers['prober_failures']})"),
        ],
    )
    phases = markdown_table(
        ["phase", "wall time"],
        [(name, fmt_seconds(seconds)) for name, seconds in loop.phases]
        + [("**total**", f"**{fmt_seconds(loop.seconds)}**")],
    )
    body = (
        f"{scenario.describe()}; windows "
        f"{', '.join(f'{k}={v}' for k, v in scenario.env.items())}. "
        "Realized AP is the performance reports' (days whose labels are mature); the batch "
        "AP scores every payment of the days after the switch with both versions from the "
        f"registry.\n\n{results}\n\nWhere the time goes (peak memory of this process and its "
        f"children, the service and every `blueprint` command included: "
        f"{fmt_bytes(peak_bytes) if peak_bytes else 'not sampled'}):\n\n{phases}"
    )
    targets = [
        Target("the new champion beats the old one after the switch", "AP new > old",
               f"{numbers['batch_ap_after_switch_new']:.3f} vs "
               f"{numbers['batch_ap_after_switch_old']:.3f}",
               numbers["batch_ap_after_switch_new"] > numbers["batch_ap_after_switch_old"]),
        Target("requests failed while the champion switched", "0",
               str(numbers["prober_failures"]), numbers["prober_failures"] == 0),
    ]
    if scenario.name == closed_loop.TINY.name:
        targets.append(Target(
            "closed loop on the tiny world (the loop, without the UI test)", "< 5 min",
            fmt_seconds(loop.seconds), loop.seconds < TINY_TARGET_SECONDS,
        ))
    return Section(NUMBER, TITLE, body, targets=targets)
