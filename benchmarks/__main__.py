"""Run the benchmarks on one world and rewrite the results page.

    .venv/bin/python -m benchmarks          # `make bench`: the default world, docs/BENCHMARKS.md
    .venv/bin/python -m benchmarks --quick  # `make bench-quick`: small world, sections 1-7 (3 min)
    .venv/bin/python -m benchmarks --only serving monitoring --home data

The end-to-end section builds the world (simulate + materialize, measured) in a fresh home
under ``--workdir``; the others measure on it. ``--home`` measures on an existing materialized
world instead (the end-to-end section then does not run unless named). A section that fails is
reported on the page with its error and makes the command exit 1 after the others ran.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.harness import (
    DEFAULT_WORLD,
    PAGE,
    QUICK_PAGE,
    QUICK_WORLD,
    Bench,
    Section,
    fmt_seconds,
    now,
    write_page,
)

SECTIONS = (
    "end_to_end",
    "model_quality",
    "features",
    "ingestion",
    "serving",
    "batch_scoring",
    "monitoring",
    "closed_loop",
    "churn_quality",
)
"""Run order: the end-to-end section first, since it builds the world the others measure (the
closed loop builds its own drift world)."""
QUICK_SKIPS = ("closed_loop",)
"""Not in the quick run unless named: CI replays the tiny closed loop in `make test-loop`, whose
test renders this section from that run."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small world (CI's run)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="these sections only")
    parser.add_argument("--home", type=Path, help="measure an existing materialized world")
    parser.add_argument(
        "--workdir", type=Path,
        default=Path(os.environ.get("BLUEPRINT_BENCH_DIR", tempfile.gettempdir())),
        help="where the end-to-end section builds its world (default $BLUEPRINT_BENCH_DIR "
        "or the temp folder)",
    )
    parser.add_argument("--page", type=Path, help="the results page to rewrite")
    args = parser.parse_args(argv)

    world = QUICK_WORLD if args.quick else DEFAULT_WORLD
    names = list(args.only or SECTIONS)
    if args.quick and args.only is None:
        names = [n for n in names if n not in QUICK_SKIPS]
    if args.home is not None:
        home = args.home.resolve()
        if args.only is None:
            names.remove("end_to_end")
    else:
        home = (args.workdir / f"blueprint-bench-{'quick' if args.quick else 'full'}").resolve()
        measured_on_world = set(names) - {"end_to_end", "closed_loop", "churn_quality"}
        if ("end_to_end" not in names and measured_on_world
                and not (home / "warehouse" / "fraud.duckdb").exists()):
            parser.error(f"no world at {home}: run the end_to_end section first or pass --home")
    bench = Bench(world=world, home=home, quick=args.quick)
    # the sections' in-process code reads the world's settings from the environment
    os.environ.update(
        {**world.env, "BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    )

    started, clock = now(), time.perf_counter()
    sections: list[Section] = []
    failed = []
    for name in SECTIONS:
        if name not in names:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        bench.log(f"== {module.TITLE}")
        section_clock = time.perf_counter()
        try:
            section = module.run(bench)
        except Exception:  # a broken section is shown on the page; the others still run
            failed.append(name)
            section = Section(
                module.NUMBER, module.TITLE,
                "**This section failed:**\n\n```\n" + traceback.format_exc()[-4000:] + "```",
            )
        section.seconds = time.perf_counter() - section_clock
        sections.append(section)
        print(section.markdown(Path.cwd()), flush=True)
    page = args.page or (QUICK_PAGE if args.quick else PAGE)
    write_page(page, sections, bench, started, time.perf_counter() - clock)
    bench.log(f"wrote {page} in {fmt_seconds(time.perf_counter() - clock)}")
    if failed:
        bench.log(f"failed sections: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
