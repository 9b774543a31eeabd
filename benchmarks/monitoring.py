"""Monitoring: each Evidently report's time and peak memory at 10k, 100k and 1M rows.

Needs a materialized world with a champion. The current rows are the world's newest
``transaction_features`` rows (drawn with replacement, seeded, when the world has fewer than
asked), scored by the champion as the service would, labelled from the fraud reports; each
report kind is built exactly as the monitoring assets build it (:mod:`orchestration.lib.
monitoring`, the champion's training rows as reference, ``report_max_rows`` from the settings:
above it the charts come from the documented seeded sample and the numbers from every row).
Each report runs in a fresh process so that its peak RSS is its own (Evidently's import
included). Reports go to a temporary folder.

    .venv/bin/python -m benchmarks --only monitoring --home data
    BLUEPRINT_HOME=... .venv/bin/python -m benchmarks.monitoring --rows 10000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from benchmarks.harness import Bench, MiB, PeakRss, Section, Timing, fmt_bytes, markdown_table
from orchestration.lib.monitoring import reports as monitoring
from orchestration.lib.monitoring.report_index import REPORT_KINDS
from orchestration.lib.serving.scoring import load_champion
from orchestration.lib.training.lineage import reference_rows
from orchestration.lib.training.metrics import Scorecard
from orchestration.settings import get_settings

NUMBER = 6
TITLE = "Monitoring reports"


def _rows(n: int, seed: int, features: list[str]) -> pd.DataFrame:
    """The world's newest ``n`` feature rows with their labels (resampled if it has fewer):
    the columns a report reads."""
    settings = get_settings()
    columns = ", ".join(f"f.{c}" for c in dict.fromkeys(["transaction_id", "card_key", *features]))
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute(
            f"select {columns}, (r.transaction_id is not null)::int as label "
            "from (select * from transaction_features order by tx_datetime desc limit ?) f "
            "left join (select distinct transaction_id from stg_fraud_reports) r "
            "using (transaction_id)",
            [n],
        ).df()
    if len(rows) < n:
        rows = rows.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    return rows


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``: its own address space's
    high-water mark. ``getrusage``'s ``ru_maxrss`` survives ``exec``: a child of the benchmark's
    process reported that process's own size, 3.38 GiB, whatever it loaded)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def run_one(kind: str, n: int, out: Path) -> dict:
    """One report of ``n`` rows in this process: its seconds and the process's memory while it
    ran (after the inputs are loaded), and the process's peak over its whole life."""
    settings = get_settings()
    model = load_champion(settings)
    rows = _rows(n, settings.usecase.models.seed, model.features)
    world_rows = int(rows["transaction_id"].nunique())
    scores = model.score(rows)
    train, test = reference_rows(model.facts, settings)
    reference_scores = model.score(test) if kind == "prediction_drift" else None
    options = {"max_rows": settings.report_max_rows, "seed": settings.usecase.models.seed}
    path = out / f"{kind}.html"
    gc.collect()
    started = time.perf_counter()
    with PeakRss(interval=0.02) as during:
        if kind == "data_drift":
            numbers = monitoring.data_drift_report(
                train, rows[model.features], model.features, path, **options
            )
        elif kind == "prediction_drift":
            numbers = monitoring.prediction_drift_report(
                reference_scores, scores, path, **options
            )
        else:
            frame = rows[["card_key"]].assign(
                score=scores, alert=model.alerts(scores), label=rows["label"]
            )
            numbers = monitoring.performance_report(
                frame, path, alert_threshold=model.alert_threshold,
                scorecard=Scorecard.declared(settings.usecase), **options
            )
    seconds = time.perf_counter() - started
    return {
        "kind": kind, "rows": len(rows), "distinct_rows": world_rows, "seconds": seconds,
        "report_rss_mb": during.peak / MiB,
        "peak_rss_mb": _peak_rss_mb(),
        "html_mb": path.stat().st_size / 1e6, "numbers": numbers,
    }


def measure(kind: str, n: int, repeat: int, out: str) -> dict:
    """``repeat`` fresh processes building one report of ``n`` rows: their timings and peak."""
    runs = []
    for _ in range(repeat):
        command = [sys.executable, "-m", "benchmarks.monitoring", "--one", kind,
                   "--rows", str(n), "--out", out]
        wall = time.perf_counter()
        output = subprocess.run(command, capture_output=True, text=True)
        if output.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{output.stderr[-4000:]}")
        result = json.loads(output.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - wall
        runs.append(result)
    return {
        "kind": kind, "rows": n, "distinct_rows": runs[0]["distinct_rows"],
        "report": Timing.of([r["seconds"] for r in runs]),
        "process": Timing.of([r["process_seconds"] for r in runs]),
        "peak_rss": max(r["peak_rss_mb"] for r in runs) * MiB,
        "report_rss": max(r["report_rss_mb"] for r in runs) * MiB,
        "html_mb": runs[0]["html_mb"], "sampled": bool(runs[0]["numbers"].get("sampled")),
    }


def table(results: list[dict]) -> str:
    return markdown_table(
        ["report", "rows", "report time", "whole process", "memory while the report ran",
         "process peak", "HTML", "charts from"],
        [
            (r["kind"], f"{r['rows']:,}", str(r["report"]), str(r["process"]),
             fmt_bytes(r["report_rss"]), fmt_bytes(r["peak_rss"]), f"{r['html_mb']:.1f} MB",
             "the seeded sample" if r["sampled"] else "every row")
            for r in results
        ],
    )


def run(bench: Bench) -> Section:
    # quick: one size above BLUEPRINT_REPORT_MAX_ROWS (the sampling rule's path; the same
    # code measures every size), three processes instead of six
    sizes = (100_000,) if bench.quick else (10_000, 100_000, 1_000_000)
    repeat = 1 if bench.quick else 3
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        for n in sizes:
            for kind in REPORT_KINDS:
                bench.log(f"monitoring: {kind} of {n:,} rows x{repeat}")
                results.append(measure(kind, n, repeat, tmp))
    distinct = max(r["distinct_rows"] for r in results)
    settings = get_settings()
    body = (
        f"Each report built in a fresh process ({repeat} run(s) each; report time after the "
        "inputs are loaded, whole process including Python, Evidently's import and loading; "
        "memory while the report ran: the process's RSS sampled every 20 ms during the report, "
        "its inputs included; process peak: its maximum RSS over its life, loading the inputs "
        "from the warehouse included). Current rows: the world's newest "
        f"feature rows (at most {distinct:,} distinct; larger sizes are drawn with replacement, "
        f"seeded). Above `BLUEPRINT_REPORT_MAX_ROWS` = {settings.report_max_rows:,} the charts "
        "come from the seeded sample (`sample_for_report`: uniform for drift, every fraud kept "
        "for performance) and the numbers from every row.\n\n" + table(results)
    )
    return Section(NUMBER, TITLE, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.rows, Path(args.out)), default=str))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(kind, args.rows, args.repeat, tmp) for kind in REPORT_KINDS]
    print(table(results))


if __name__ == "__main__":
    main()
