"""Daily monitoring reports (Evidently 0.7 HTML).

Three kinds of report are written per day, each to ``reports/<day>/<kind>.html``:

- ``data_drift``: Evidently's ``DataDriftPreset`` over the model's features, the day against a
  reference (the model's training rows);
- ``prediction_drift``: Evidently's ``ValueDrift`` of the model's score against a reference;
- ``performance``: Evidently's ``ClassificationPreset`` of the score against the labels, with
  the handbook's metrics (:mod:`orchestration.lib.training.metrics`) computed on every row.

A report's charts are drawn from at most ``max_rows`` rows (:func:`sample_for_report`); the
drift numbers are Evidently's own results on those rows, the performance numbers use all rows.
Each report function returns a JSON-able summary. The index that lists the reports
(``reports/index.json`` and its page) is :mod:`orchestration.lib.monitoring.report_index`.

Evidently is imported inside the report functions: its import takes seconds (figures:
docs/OPERATING_NOTES.md), which every process loading the Dagster definitions would otherwise
pay.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from orchestration.lib.core.atomic import atomic_output
from orchestration.lib.training import metrics

SCORE = "score"
"""Column of the model's score (the probability of the positive class) in the reports' data."""
LABEL = "label"
"""Column of the true label (1: positive)."""
ALERT = "alert"

# Type names Evidently gives its metric configs in ``Snapshot.dict()``.
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFT_TEST_FAILED = "FAIL"


# --- sampling -------------------------------------------------------------------------------


def sample_for_report(
    frame: pd.DataFrame, max_rows: int, seed: int, label: str | None = None
) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame`` for a report's charts, chosen by a seeded rule.

    A frame of ``max_rows`` rows or fewer is returned unchanged. Otherwise, when ``label`` is
    given and is a column, every row with ``label == 1`` is kept and the other rows are a
    uniform sample without replacement (``numpy.random.default_rng(seed)``) filling the rest
    of ``max_rows``; should the positives alone exceed ``max_rows``, a uniform sample of
    ``max_rows`` positives is kept instead. Without ``label`` the whole frame is sampled
    uniformly. Rows keep their original order; the same input and seed give the same rows.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    if label is not None and label in frame.columns:
        positive = frame[label].to_numpy() == 1
    else:
        positive = np.zeros(len(frame), dtype=bool)
    positives = np.flatnonzero(positive)
    others = np.flatnonzero(~positive)
    if len(positives) >= max_rows:
        kept = rng.choice(positives, size=max_rows, replace=False)
    else:
        kept = np.concatenate(
            [positives, rng.choice(others, size=max_rows - len(positives), replace=False)]
        )
    return frame.iloc[np.sort(kept)]


# --- the three reports ----------------------------------------------------------------------


def data_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    html_path: Path,
    *,
    max_rows: int,
    seed: int,
) -> dict:
    """Evidently data drift of the numeric ``features``, ``current`` against ``reference``.

    Both frames are sampled uniformly with :func:`sample_for_report`. The HTML report replaces
    ``html_path`` atomically. The numbers are Evidently's: the share and count of drifted
    features (``DriftedColumnsCount``) and the features whose drift test failed.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(features)
    if not columns:
        raise ValueError("data_drift_report needs at least one feature")
    current_sample = sample_for_report(current[columns], max_rows, seed)
    reference_sample = sample_for_report(reference[columns], max_rows, seed)
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([DataDriftPreset(columns=columns)], include_tests=True).run(
        current_data=Dataset.from_pandas(current_sample, data_definition=definition),
        reference_data=Dataset.from_pandas(reference_sample, data_definition=definition),
    )
    _save_html(snapshot, html_path)
    results = snapshot.dict()
    counts = _metric_values(results, _DRIFTED_COLUMNS_COUNT)[0]
    drifted = sorted(
        test["metric_config"]["params"]["column"]
        for test in _drift_tests(results)
        if test["status"] == _DRIFT_TEST_FAILED
    )
    return {
        "drifted_share": float(counts["share"]),
        "drifted_features": int(counts["count"]),
        "features": len(columns),
        "drifted": drifted,
        "rows_current": len(current),
        "rows_reference": len(reference),
        "sampled": len(current_sample) < len(current) or len(reference_sample) < len(reference),
    }


def prediction_drift_report(
    reference_scores: pd.Series | np.ndarray,
    current_scores: pd.Series | np.ndarray,
    html_path: Path,
    *,
    max_rows: int,
    seed: int,
) -> dict:
    """Evidently drift of the model's score, ``current_scores`` against ``reference_scores``.

    Evidently picks the test by sample size (Kolmogorov-Smirnov p-value up to 1,000 rows,
    normed Wasserstein distance above); its drift score, method, threshold and verdict are
    returned as they are. The mean scores use every row; the charts at most ``max_rows``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    reference = pd.DataFrame({SCORE: np.asarray(reference_scores, dtype=float)})
    current = pd.DataFrame({SCORE: np.asarray(current_scores, dtype=float)})
    current_sample = sample_for_report(current, max_rows, seed)
    reference_sample = sample_for_report(reference, max_rows, seed)
    definition = DataDefinition(numerical_columns=[SCORE])
    snapshot = Report([ValueDrift(column=SCORE)], include_tests=True).run(
        current_data=Dataset.from_pandas(current_sample, data_definition=definition),
        reference_data=Dataset.from_pandas(reference_sample, data_definition=definition),
    )
    _save_html(snapshot, html_path)
    results = snapshot.dict()
    (test,) = _drift_tests(results)
    params = test["metric_config"]["params"]
    return {
        "score_drift": test["status"] == _DRIFT_TEST_FAILED,
        "score_drift_statistic": float(_metric_values(results, _VALUE_DRIFT)[0]),
        "score_drift_method": str(params["method"]),
        "score_drift_threshold": float(params["threshold"]),
        "mean_score_reference": _number(reference[SCORE].mean()),
        "mean_score_current": _number(current[SCORE].mean()),
        "rows_current": len(current),
        "rows_reference": len(reference),
        "sampled": len(current_sample) < len(current) or len(reference_sample) < len(reference),
    }


def performance_report(
    frame: pd.DataFrame,
    html_path: Path,
    *,
    alert_threshold: float,
    scorecard: metrics.Scorecard,
    max_rows: int,
    seed: int,
) -> dict:
    """Evidently classification report of a day's scores against its labels, and our metrics.

    ``frame`` holds ``score``, ``alert`` (bool), ``label`` (0/1) and the columns the scorecard's
    entity metrics rank (their entity keys; the day column is optional: all rows are one day
    without it). The HTML (``ClassificationPreset`` at ``alert_threshold``, on a sample keeping
    every positive) replaces ``html_path`` atomically. The numbers use every row: the use
    case's declared metrics (:class:`orchestration.lib.training.metrics.Scorecard`, by their
    declared names) and the precision of the alerts raised. A metric undefined on the day (a
    single class, no alert) is ``None``. When the sample holds a single class, Evidently cannot
    draw its per-class and curve sections: the HTML then has the confusion-matrix quality and
    the score's statistics, and ``note`` says why.
    """
    if frame.empty:
        raise ValueError("performance_report needs at least one scored row")
    labels = frame[LABEL].astype(int)
    scores = frame[SCORE].astype(float)
    alerts = frame[ALERT].astype(bool)
    test = frame.assign(**{LABEL: labels})
    if scorecard.day not in test.columns:
        test[scorecard.day] = 0
    n_alerts = int(alerts.sum())
    numbers: dict = {
        **{name: _number(value) for name, value in scorecard(test, scores, LABEL).items()},
        "alert_precision": float(labels[alerts].sum() / n_alerts) if n_alerts else None,
        "alerts": n_alerts,
        "positives": int(labels.sum()),
        "rows": len(frame),
        "metrics": scorecard.names,
    }

    sample = sample_for_report(
        pd.DataFrame({LABEL: labels, SCORE: scores}), max_rows, seed, label=LABEL
    )
    numbers["sampled"] = len(sample) < len(frame)
    one_class = sample[LABEL].nunique() < 2
    _classification_html(sample, html_path, alert_threshold, one_class=one_class)
    if one_class:
        present = "positive" if int(sample[LABEL].iloc[0]) == 1 else "negative"
        undefined = (
            "Average Precision and AUC ROC are undefined; "
            if numbers["average_precision"] is None
            else ""
        )
        numbers["note"] = (
            f"only {present} rows in the report's rows: {undefined}the report shows the "
            "quality at the alert threshold and the score's statistics, without the per-class "
            "and curve sections that need both classes"
        )
    return numbers


def _classification_html(
    sample: pd.DataFrame, html_path: Path, alert_threshold: float, *, one_class: bool
) -> None:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, ClassificationQuality, ValueStats
    from sklearn.exceptions import UndefinedMetricWarning

    definition = DataDefinition(
        numerical_columns=[SCORE],
        categorical_columns=[LABEL],
        classification=[BinaryClassification(target=LABEL, prediction_probas=SCORE, pos_label=1)],
    )
    dataset = Dataset.from_pandas(sample, data_definition=definition)
    if one_class:
        # ClassificationPreset's per-class ROC AUC and its PR curve fail on a single class
        items = [
            ClassificationQuality(probas_threshold=alert_threshold, conf_matrix=True),
            ValueStats(column=SCORE),
        ]
    else:
        items = [ClassificationPreset(probas_threshold=alert_threshold)]
    with warnings.catch_warnings():
        # Undefined precision (no alert), recall or ROC AUC (one class) are expected on some
        # days; scikit-learn and Evidently warn about them, the summary reports them as None
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        snapshot = Report(items).run(current_data=dataset, reference_data=None)
    _save_html(snapshot, html_path)


def _save_html(snapshot, html_path: Path) -> None:
    """Write an Evidently snapshot's HTML so that ``html_path`` is replaced atomically."""
    with atomic_output(Path(html_path)) as temp:
        # save_html writes only when given a str (a Path is silently ignored)
        snapshot.save_html(str(temp))
        if not temp.exists():
            raise RuntimeError(f"Evidently wrote no HTML for {html_path}")


def _metric_values(results: dict, metric_type: str) -> list:
    return [m["value"] for m in results["metrics"] if m["config"]["type"] == metric_type]


def _drift_tests(results: dict) -> list[dict]:
    """Evidently's drift test of each ``ValueDrift`` (status FAIL = drift detected)."""
    return [
        test for test in results["tests"] if test["metric_config"]["params"]["type"] == _VALUE_DRIFT
    ]


def _number(value: float) -> float | None:
    """A JSON-able float, ``None`` for NaN (an undefined metric)."""
    value = float(value)
    return None if math.isnan(value) else value
