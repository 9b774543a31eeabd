"""Scoring speed: single-request latency of the real service over HTTP, and batch scoring.

Needs a materialized world with a champion (``make demo``). Starts ``bentoml serve`` on a free
port with that BLUEPRINT_HOME (or uses ``--url``), sends ``--requests`` sequential ``/score``
requests of new payments the day after the serving snapshot (cards and terminals of the world,
so the online features have history), and times batch scoring of ``--days`` days of
``transaction_features`` with the champion, as the ``batch_scores`` asset does.

    BLUEPRINT_HOME=... .venv/bin/python -m benchmarks.serving [--requests 500] [--days 7]

The requests are appended to the service's prediction log (they are real requests): run it on
a copy of the home, or accept the extra rows.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
import urllib.request
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from orchestration.lib.scoring import load_champion, score_day
from orchestration.lib.serve import start_scoring_service
from orchestration.lib.serving_snapshot import current_snapshot
from orchestration.settings import get_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _payments(n: int, seed: int = 0) -> list[dict]:
    """New payments of known cards at known terminals, the day after the snapshot."""
    settings = get_settings()
    day = current_snapshot(settings.snapshot_dir).last_day + timedelta(days=1)
    with duckdb.connect() as con:
        # the raw zone holds the PANs; they stay in this process's memory
        cards = [
            row[0]
            for row in con.execute(
                "select distinct card_number from read_parquet(?) limit 2000",
                [str(settings.raw_dir / "customers" / "*" / "data.parquet")],
            ).fetchall()
        ]
        terminals = [
            row[0]
            for row in con.execute(
                "select distinct terminal_id from read_parquet(?) limit 2000",
                [str(settings.raw_dir / "transactions" / "*" / "data.parquet")],
            ).fetchall()
        ]
    rng = np.random.default_rng(seed)
    start = datetime.combine(day, datetime.min.time()) + timedelta(hours=8)
    run = f"bench-{int(time.time())}"
    return [
        {
            "transaction_id": f"{run}-{i}",
            "timestamp": (start + timedelta(seconds=30 * i)).isoformat(),
            "card_number": str(cards[rng.integers(len(cards))]),
            "terminal_id": str(terminals[rng.integers(len(terminals))]),
            "amount": round(float(rng.gamma(2.0, 25.0)), 2),
        }
        for i in range(n)
    ]


def _post(url: str, body: dict) -> float:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return time.perf_counter() - started


def latency(url: str, n: int) -> dict[str, float]:
    payments = _payments(n + 20)
    for payment in payments[:20]:  # warm-up
        _post(f"{url}/score", payment)
    times = sorted(_post(f"{url}/score", p) * 1000 for p in payments[20:])
    return {
        "requests": n,
        "p50_ms": statistics.median(times),
        "p90_ms": times[int(0.90 * (n - 1))],
        "p99_ms": times[int(0.99 * (n - 1))],
    }


def batch(days: int) -> dict[str, float]:
    settings = get_settings()
    model = load_champion(settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        [(last,)] = con.execute("select max(tx_date) from transaction_features").fetchall()
        frame = con.execute(
            "select * from transaction_features where tx_date > ? order by tx_datetime",
            [last - timedelta(days=days)],
        ).df()
    started = time.perf_counter()
    for _, rows in frame.groupby("tx_date", sort=True):
        score_day(model, rows.reset_index(drop=True))
    seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": seconds, "rows_per_s": len(frame) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--url", help="a running service (default: start one)")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        server = start_scoring_service(get_settings(), _free_port())
        url = server.url
    try:
        single = latency(url, args.requests)
    finally:
        if server is not None:
            server.stop()
    scored = batch(args.days)
    table = pd.DataFrame(
        [
            (
                "/score over HTTP, sequential",
                f"{single['requests']} requests",
                f"p50 {single['p50_ms']:.1f} ms, p90 {single['p90_ms']:.1f} ms, "
                f"p99 {single['p99_ms']:.1f} ms",
            ),
            (
                "batch scoring + queue",
                f"{scored['rows']:,} rows in {scored['seconds']:.1f} s",
                f"{scored['rows_per_s']:,.0f} rows/s",
            ),
        ],
        columns=["measure", "size", "result"],
    )
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
