"""Section 9: the churn use case, end to end, and its model against a naive baseline.

Builds the churn world beside the fraud one (``blueprint simulate --usecase churn``, then
``blueprint materialize --usecase churn``: ingestion, dbt, the gates, training, the promotion
gate, batch scoring and monitoring), timed. Then it compares the champion with the naive
baseline a retention team would use without a model: rank the accounts by the days since their
last viewing session (``features.baseline`` of the declaration). Both are measured on the same
rows: every prequential fold the search validated on, and the final test window, with the
protocol's labels (:func:`orchestration.lib.training.validation.train_test_frames`). The model
beats the baseline when its mean AP over the folds exceeds the baseline's by more than the
folds' spread (their standard deviation, ddof 0 as in the search).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd

from benchmarks.harness import Bench, Section, Target, fmt_seconds, markdown_table, run_measured

NUMBER = 9
TITLE = "Churn: end to end, and the model against a naive baseline"

DEFAULT_ACCOUNTS, QUICK_ACCOUNTS = 5000, 1500
DAYS = 120
"""The shortest world the churn protocol trains on (it needs 119 days)."""


def _blueprint() -> str:
    return str(Path(sys.executable).parent / "blueprint")


def build_world(bench: Bench) -> list[tuple[str, float, int]]:
    """Simulate and materialize the churn world in the bench's home: (step, seconds, peak)."""
    accounts = QUICK_ACCOUNTS if bench.quick else DEFAULT_ACCOUNTS
    steps = []
    for name, args in (
        ("simulate", ["simulate", "--usecase", "churn", "--days", str(DAYS), "--set",
                      f"n_accounts={accounts}", "--force", "--no-progress"]),
        ("materialize", ["materialize", "--usecase", "churn"]),
    ):
        bench.log(f"churn: {name}")
        measured = run_measured([_blueprint(), *args], env=bench.env)
        steps.append((name, measured.seconds, measured.peak))
    return steps


def fold_comparison() -> pd.DataFrame:
    """Per fold and for the final test window: the champion's AP and the baseline's, on the
    same test rows."""
    from sklearn.metrics import average_precision_score

    from orchestration.lib.registry import registry
    from orchestration.lib.serving.scoring import load_scoring_model
    from orchestration.lib.training.families import Candidate, FamilySpec
    from orchestration.lib.training.lineage import TRAINING_DATA_FILE, recorded_windows
    from orchestration.lib.training.metrics import Scorecard
    from orchestration.lib.training.model_selection import fit_final
    from orchestration.lib.training.validation import (
        LABEL,
        labelled_rows,
        prequential_folds,
        protocol_from,
        train_test_frames,
        validation_test_start,
    )
    from orchestration.settings import get_settings

    settings = get_settings("churn")
    usecase = settings.usecase
    champion = registry.champion(settings)
    if champion is None:
        raise RuntimeError("the churn world has no champion: its materialize failed?")
    model = load_scoring_model(champion.version, settings)
    facts = model.facts
    frame = pd.read_parquet(settings.home / facts.params[TRAINING_DATA_FILE])
    rows, protocol = labelled_rows(usecase), protocol_from(usecase)
    final = recorded_windows(facts)
    folds = prequential_folds(protocol, validation_test_start(protocol, final.test_start))
    baseline = usecase.features.baseline[0]
    candidate = Candidate(
        facts.params["family"], tuple(sorted(facts.params["hyperparameters"].items())),
        FamilySpec.from_dict(facts.params["family_spec"]),
    )
    records = []
    for name, windows in [*((f"fold {i}", w) for i, w in enumerate(folds)), ("test", final)]:
        if name == "test":
            _, test = train_test_frames(frame, windows, rows)
            scores = model.score(test)
        else:  # the champion's family and parameters, trained on the fold (as the search did)
            fitted = fit_final(candidate, frame, windows, facts.features, rows,
                               Scorecard.declared(usecase),
                               random_state=facts.params["random_state"])
            test = fitted.test_predictions
            scores = test["score"].to_numpy()
        labels = test[LABEL].to_numpy()
        records.append({
            "window": name,
            "test days": f"{windows.test_start} .. {windows.test_end - timedelta(days=1)}",
            "rows": len(test), "base rate": float(labels.mean()),
            "model AP": float(average_precision_score(labels, scores)),
            # more days since the last session, more likely to leave
            "baseline AP": float(average_precision_score(labels, test[baseline].to_numpy())),
        })
    return pd.DataFrame(records)


def run(bench: Bench) -> Section:
    steps = build_world(bench)
    table = fold_comparison()
    folds = table[table["window"] != "test"]
    model_mean, model_std = folds["model AP"].mean(), folds["model AP"].std(ddof=0)
    base_mean, base_std = folds["baseline AP"].mean(), folds["baseline AP"].std(ddof=0)
    spread = max(model_std, base_std)
    test = table[table["window"] == "test"].iloc[0]
    body = "\n\n".join([
        "The churn world (5 sources, one row per active account and day, a 30-day label known "
        "30 days later) built from nothing beside the fraud world, then its champion against "
        "ranking the accounts by the days since their last session.",
        markdown_table(["step", "time", "peak memory"],
                       [[name, fmt_seconds(seconds), f"{peak / 2**30:.2f} GiB"]
                        for name, seconds, peak in steps]),
        markdown_table(
            list(table.columns),
            [[r["window"], r["test days"], f"{r['rows']:,}", f"{r['base rate']:.3f}",
              f"{r['model AP']:.3f}", f"{r['baseline AP']:.3f}"] for r in table.to_dict("records")],
        ),
        f"Folds: model AP {model_mean:.3f} ± {model_std:.3f}, baseline {base_mean:.3f} ± "
        f"{base_std:.3f}. Test window: model {test['model AP']:.3f}, baseline "
        f"{test['baseline AP']:.3f}.",
    ])
    targets = [
        Target("churn model beats the naive baseline (folds' mean AP)",
               f"gain > spread ({spread:.3f})", f"{model_mean - base_mean:+.3f}",
               model_mean - base_mean > spread),
        Target("churn end to end (simulate + materialize, 120 days)", "runs",
               fmt_seconds(sum(seconds for _, seconds, _ in steps)), True),
    ]
    return Section(NUMBER, TITLE, body, targets=targets)
