"""Batch scoring: the ``batch_scores`` asset's rows per second against bare ``predict_proba``.

The asset is materialized for the world's last days through Dagster (in-process executor, the
project's resources), on a scratch home holding a copy of the warehouse and the registry, so
the world is not touched: it reads the days' ``transaction_features``, scores them with the
champion, builds each day's investigation queue with reason codes and writes both as Parquet.
The floor is the champion's fitted pipeline's ``predict_proba`` alone on the same rows already
in memory as a float feature matrix, one thread, as the asset scores. A phase breakdown of the
asset's work (read, score, queue and reasons, write), timed in-process on the same rows, shows
where the rest of the time goes.

    .venv/bin/python -m benchmarks --only batch_scoring --home data
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from benchmarks.harness import (
    Bench,
    Section,
    Target,
    Timing,
    environ_applied,
    fmt_seconds,
    markdown_table,
    repeat,
)

NUMBER = 5
TITLE = "Batch scoring"
TARGET_SHARE = 0.5


WAREHOUSE = "warehouse/fraud.duckdb"
"""The benchmarked use case's warehouse, relative to a home."""


def _scratch_home(world: Path, scratch: Path) -> Path:
    home = scratch / "home"
    home.mkdir()
    (home / "warehouse").mkdir()
    shutil.copy2(world / WAREHOUSE, home / WAREHOUSE)
    shutil.copytree(world / "registry", home / "registry")
    shutil.copytree(world / "bentoml" / "models", home / "bentoml" / "models")  # the model store
    return home


def _last_days(warehouse: Path, days: int) -> list:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (last,) = con.execute("select max(tx_date) from transaction_features").fetchone()
    return [last - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _materialize(days: list) -> None:
    """The real asset over the days, as one run (its backfill policy is a single run)."""
    from orchestration.defs.resources import resources_for_env
    from orchestration.defs.scope import Scope
    from orchestration.defs.serving.assets import batch_scores_asset
    from orchestration.settings import get_settings

    usecase = get_settings().usecase
    result = dg.materialize(
        [batch_scores_asset(Scope(usecase))],
        resources=resources_for_env(usecase.name),
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        },
        raise_on_error=True,
    )
    assert result.success


def _phases(model, warehouse: Path, days: list, scratch: Path) -> list[tuple[str, float]]:
    """The asset's work, phase by phase, in this process (one pass, seconds each)."""
    from orchestration.defs.serving.assets import BATCH_SCORING_CHUNK_DAYS
    from orchestration.lib.serving.scoring import DailyScoring, score_days
    from orchestration.settings import get_settings

    scoring = DailyScoring.declared(get_settings().usecase)
    columns = ", ".join(dict.fromkeys([*scoring.kept, *model.features]))
    chunks = [days[i:i + BATCH_SCORING_CHUNK_DAYS]
              for i in range(0, len(days), BATCH_SCORING_CHUNK_DAYS)]
    started = time.perf_counter()
    frames = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for chunk in chunks:
            frames.append(con.execute(
                f"select {columns} from transaction_features where tx_date >= ? and tx_date <= ? "
                "order by tx_datetime, transaction_id",
                [chunk[0], chunk[-1]],
            ).df())
    read = time.perf_counter() - started
    started = time.perf_counter()
    for frame in frames:
        model.score(frame)
    score = time.perf_counter() - started
    started = time.perf_counter()
    outputs = [
        output for frame, chunk in zip(frames, chunks, strict=True)
        for output in score_days(model, frame, chunk, scoring).values()
    ]
    whole = time.perf_counter() - started
    started = time.perf_counter()
    for i, (scored, queue) in enumerate(outputs):
        scored.to_parquet(scratch / f"scores-{i}.parquet", index=False)
        queue.to_parquet(scratch / f"queue-{i}.parquet", index=False)
    write = time.perf_counter() - started
    return [
        (f"read the days' features from DuckDB ({len(chunks)} chunks of at most "
         f"{BATCH_SCORING_CHUNK_DAYS} days)", read),
        ("score (the model's `score`: column selection, float cast, predict_proba)", score),
        ("queue: top cards and their reason codes, result frames", max(whole - score, 0.0)),
        ("write Parquet (scores and queue)", write),
    ]


def run(bench: Bench) -> Section:
    from orchestration.lib.serving.scoring import (
        _THREADPOOLS,  # noqa: PLC2701 - the asset's own limit
        load_champion,
    )

    n_days = 7 if bench.quick else 30
    runs = 3 if bench.quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        scratch = Path(tmp)
        home = _scratch_home(bench.home, scratch)
        with environ_applied(
            {"BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
        ):
            days = _last_days(home / WAREHOUSE, n_days)
            model = load_champion()
            with duckdb.connect(str(home / WAREHOUSE), read_only=True) as con:
                frame = con.execute(
                    "select * from transaction_features where tx_date >= ? and tx_date <= ?",
                    [days[0], days[-1]],
                ).df()
            rows = len(frame)
            bench.log(f"batch scoring: {rows:,} rows of {n_days} days, asset x{runs}")
            asset, _ = repeat(lambda: _materialize(days), runs=runs, warmup=1)
            written = sorted((home / "scores" / "fraud").glob("tx_date=*/scores.parquet"))
            assert len(written) == n_days, f"the asset wrote {len(written)} days, not {n_days}"
            assert sum(len(pd.read_parquet(p)) for p in written) == rows

            matrix = frame[model.features].astype(float)  # prebuilt, outside the timing

            def bare() -> None:
                with _THREADPOOLS.limit(limits=1):
                    model.pipeline.predict_proba(matrix)

            floor, _ = repeat(bare, runs=runs * 2, warmup=1)
            phases = _phases(model, home / WAREHOUSE, days, scratch)

    def rate(timing: Timing) -> str:
        return (
            f"{rows / timing.median:,.0f} ({rows / timing.high:,.0f}–{rows / timing.low:,.0f})"
        )

    share = floor.median / asset.median
    table = markdown_table(
        ["what", "rows", "time", "rows/s"],
        [
            (f"`batch_scores` asset, {n_days} days in one run (x{runs})", f"{rows:,}",
             str(asset), rate(asset)),
            (f"floor: bare `predict_proba` on the prebuilt matrix (x{runs * 2})", f"{rows:,}",
             str(floor), rate(floor)),
        ],
    )
    total = sum(seconds for _, seconds in phases)
    breakdown = markdown_table(
        ["phase of the asset's work (one pass, in-process)", "time", "share"],
        [(name, fmt_seconds(seconds), f"{seconds / total:.0%}") for name, seconds in phases],
    )
    body = (
        f"Champion `{model.version}` ({type(model.pipeline[-1]).__name__}, "
        f"{len(model.features)} features), the world's last {n_days} days. The asset's time "
        "includes Dagster's in-process run (an ephemeral instance) around it.\n\n"
        f"{table}\n\nThe asset reaches **{share:.0%}** of the floor's rate.\n\n{breakdown}"
    )
    return Section(
        NUMBER, TITLE, body,
        targets=[
            Target("batch scoring asset against bare predict_proba", "≥ 50 % of the floor",
                   f"{share:.0%}", share >= TARGET_SHARE)
        ],
    )
