"""Monitoring cost: each Evidently report of one day of the default world, time and peak memory.

Needs a materialized world with a champion (``make demo``). Takes a day of
``transaction_features`` (the last loaded day unless ``--day``), scores it with the champion as
the service would, and builds each report kind exactly as the monitoring assets do
(:mod:`orchestration.lib.monitoring`, the champion's training rows as reference, the settings'
``report_max_rows``), each in a fresh process so that its peak RSS is its own (Evidently's import
included). Reports go to a temporary folder.

    BLUEPRINT_HOME=... .venv/bin/python -m benchmarks.monitoring [--day YYYY-MM-DD] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from orchestration.lib import monitoring
from orchestration.lib.scoring import load_champion
from orchestration.lib.training import TRAINING_DATA_FILE, recorded_windows
from orchestration.settings import get_settings


def _day_rows(day: date | None) -> tuple[date, pd.DataFrame]:
    settings = get_settings()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        if day is None:
            day = con.execute("select max(tx_date) from transaction_features").fetchall()[0][0]
        rows = con.execute(
            "select * from transaction_features where tx_date = ?", [day]
        ).df()
        reported = {
            r[0] for r in con.execute(
                "select transaction_id from stg_fraud_reports where transaction_id in "
                "(select transaction_id from transaction_features where tx_date = ?)", [day]
            ).fetchall()
        }
    return day, rows.assign(label=rows["transaction_id"].isin(reported).astype(int))


def run_one(kind: str, day: str | None, out: Path) -> dict:
    """One report in this process: returns its seconds (after the inputs are loaded)."""
    settings = get_settings()
    model = load_champion(settings)
    the_day, rows = _day_rows(date.fromisoformat(day) if day else None)
    scores = model.score(rows)
    frame = pd.read_parquet(settings.home / model.facts.params[TRAINING_DATA_FILE])
    windows = recorded_windows(model.facts)
    tx_date = pd.to_datetime(frame["tx_date"]).dt.date
    train = frame.loc[(tx_date >= windows.train_start) & (tx_date < windows.train_end)]
    test = frame.loc[(tx_date >= windows.test_start) & (tx_date < windows.test_end)]
    options = {"max_rows": settings.report_max_rows, "seed": settings.seed}
    path = out / f"{kind}.html"
    started = time.perf_counter()
    if kind == "data_drift":
        numbers = monitoring.data_drift_report(
            train[model.features], rows[model.features], model.features, path, **options
        )
    elif kind == "prediction_drift":
        numbers = monitoring.prediction_drift_report(model.score(test), scores, path, **options)
    else:
        frame = rows[["card_key"]].assign(
            fraud_probability=scores, alert=model.alerts(scores), label=rows["label"]
        )
        numbers = monitoring.performance_report(
            frame, path, alert_threshold=model.alert_threshold, **options
        )
    seconds = time.perf_counter() - started
    return {
        "kind": kind, "day": the_day.isoformat(), "rows": len(rows), "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "html_mb": path.stat().st_size / 1e6, "numbers": numbers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", help="the day to report on (default: the last loaded)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.day, Path(args.out)), default=str))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in monitoring.REPORT_KINDS:
            runs = []
            for _ in range(args.repeat):
                command = [sys.executable, "-m", "benchmarks.monitoring", "--one", kind,
                           "--out", tmp] + (["--day", args.day] if args.day else [])
                wall = time.perf_counter()
                output = subprocess.run(command, capture_output=True, text=True, check=True)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                result["process_seconds"] = time.perf_counter() - wall
                runs.append(result)
            seconds = [r["seconds"] for r in runs]
            rows.append((kind, runs[0]["day"], runs[0]["rows"], statistics.median(seconds),
                         min(seconds), max(seconds),
                         statistics.median(r["process_seconds"] for r in runs),
                         max(r["peak_rss_mb"] for r in runs), runs[0]["html_mb"]))
    print("| report | day | rows | median s | min s | max s | whole process s (median) "
          "| peak RSS MB | HTML MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, day, n, med, lo, hi, proc, rss, html in rows:
        print(f"| {kind} | {day} | {n:,} | {med:.1f} | {lo:.1f} | {hi:.1f} | {proc:.1f} "
              f"| {rss:.0f} | {html:.1f} |")


if __name__ == "__main__":
    main()
