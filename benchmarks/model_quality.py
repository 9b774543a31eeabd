"""Model quality of the handbook baseline against the production features, same protocol.

Reads ``training_set`` from the warehouse (read-only), chooses each model family's
hyper-parameters by prequential validation on folds that end before the final test window
(``validation_test_start``, handbook ch. 5.3), retrains each family's best candidate on the
latest training window whose test days have mature labels (``fit_final``) and prints, per
feature set and family: the test-window metrics and the validation folds' mean and std.

    BLUEPRINT_HOME=... .venv/bin/python -m benchmarks.model_quality [--quick] [--sets ...]

``--quick`` uses the routine grids (``DEFAULT_GRIDS``, 9 candidates) instead of the handbook's
chapter-5 grids (``HANDBOOK_GRIDS``, 45 candidates).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from orchestration.lib.metrics import METRICS
from orchestration.lib.model_selection import (
    BASELINE_FEATURES,
    DEFAULT_GRIDS,
    HANDBOOK_GRIDS,
    PRODUCTION_FEATURES,
    Grids,
    fit_final,
    prequential_search,
)
from orchestration.lib.validation import (
    Protocol,
    data_span,
    latest_test_start,
    prequential_folds,
    split_windows,
    validation_test_start,
)
from orchestration.settings import get_settings

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "baseline": BASELINE_FEATURES,
    "production": PRODUCTION_FEATURES,
}
KEY_COLUMNS = ("transaction_id", "tx_date", "card_key", "is_fraud", "report_date")
METRIC_LABELS = {"auc_roc": "AUC", "average_precision": "AP", "card_precision_top_k": "CP@100"}


def max_report_date(warehouse: Path) -> date:
    """The last day whose fraud reports are loaded: the newest report in the warehouse."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        (value,) = conn.sql("select max(report_date) from stg_fraud_reports").fetchall()[0]
    return value


def load_frame(warehouse: Path, columns: Sequence[str], first: date, end: date) -> pd.DataFrame:
    """``training_set`` rows of days ``[first, end)``, only the columns asked for."""
    select = ", ".join(dict.fromkeys([*KEY_COLUMNS, *columns]))
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return conn.execute(
            f"select {select} from training_set where tx_date >= ? and tx_date < ? "
            "order by tx_datetime, transaction_id",
            [first, end],
        ).df()


def measure(
    frame: pd.DataFrame,
    name: str,
    features: Sequence[str],
    protocol: Protocol,
    test_start: date,
    grids: Grids,
    n_threads: int,
    verbose: bool = False,
) -> list[dict[str, object]]:
    """One row per model family: its best candidate's test metrics and fold mean/std."""
    started = time.perf_counter()
    search = prequential_search(
        frame,
        features,
        protocol,
        validation_test_start(protocol, test_start),
        grids=grids,
        n_threads=n_threads,
        log=(lambda line: print(f"{name}: {line}", flush=True)) if verbose else None,
    )
    windows = split_windows(protocol, test_start)
    rows = []
    for candidate_name, summary in search.best_per_family().iterrows():
        final = fit_final(
            search.candidates[candidate_name], frame, windows, features, n_threads=n_threads
        )
        row: dict[str, object] = {
            "features": name,
            "n_features": len(features),
            "family": summary["family"],
            "candidate": candidate_name,
        }
        for metric in METRICS:
            row[f"test_{metric}"] = getattr(final.performance, metric)
            row[f"folds_mean_{metric}"] = summary[f"{metric}_mean"]
            row[f"folds_std_{metric}"] = summary[f"{metric}_std"]
        rows.append(row)
    print(
        f"{name}: {len(search.candidates)} candidates x {len(search.folds)} folds "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return rows


def render(rows: list[dict[str, object]]) -> str:
    """The results as a markdown table, test metrics then validation mean ± std."""
    header = ["features", "family"]
    header += [f"{METRIC_LABELS[m]} test" for m in METRICS]
    header += [f"{METRIC_LABELS[m]} folds" for m in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{row['features']} ({row['n_features']})", str(row["family"])]
        cells += [f"{row[f'test_{m}']:.3f}" for m in METRICS]
        cells += [f"{row[f'folds_mean_{m}']:.3f} ± {row[f'folds_std_{m}']:.3f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="DEFAULT_GRIDS, not HANDBOOK_GRIDS")
    parser.add_argument(
        "--sets", nargs="+", choices=sorted(FEATURE_SETS), default=list(FEATURE_SETS)
    )
    parser.add_argument("--warehouse", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--verbose", action="store_true", help="one line per fitted candidate")
    args = parser.parse_args(argv)

    warehouse = args.warehouse or get_settings().warehouse_path
    protocol = Protocol()
    grids = DEFAULT_GRIDS if args.quick else HANDBOOK_GRIDS
    columns = sorted({c for name in args.sets for c in FEATURE_SETS[name]})
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        (last_day,) = conn.sql("select max(tx_date) from training_set").fetchall()[0]
    test_start = latest_test_start(
        pd.DataFrame({"tx_date": [last_day]}), protocol, max_report_date(warehouse)
    )
    folds = [
        *prequential_folds(protocol, validation_test_start(protocol, test_start)),
        split_windows(protocol, test_start),
    ]
    first, end = data_span(folds)
    frame = load_frame(warehouse, columns, first, end)
    print(
        f"{warehouse}: {len(frame)} rows {first}..{end}, test window "
        f"{split_windows(protocol, test_start)}, grids {'DEFAULT' if args.quick else 'HANDBOOK'}",
        flush=True,
    )
    rows = []
    for name in args.sets:
        rows += measure(
            frame, name, FEATURE_SETS[name], protocol, test_start, grids, args.threads, args.verbose
        )
    print(render(rows))
    if args.csv is not None:
        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
