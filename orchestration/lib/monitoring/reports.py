"""Daily monitoring reports (Evidently 0.7 HTML) and the index that lists them.

Three kinds of report are written per day, each to ``reports/<day>/<kind>.html``:

- ``data_drift``: Evidently's ``DataDriftPreset`` over the model's features, the day against a
  reference (the model's training rows);
- ``prediction_drift``: Evidently's ``ValueDrift`` of the fraud score against a reference;
- ``performance``: Evidently's ``ClassificationPreset`` of the score against the labels, with
  the handbook's metrics (:mod:`orchestration.lib.training.metrics`) computed on every row.

A report's charts are drawn from at most ``max_rows`` rows (:func:`sample_for_report`); the
drift numbers are Evidently's own results on those rows, the performance numbers use all rows.
Each report function returns a JSON-able summary that :func:`record_report` stores in
``reports/index.json``; ``reports/index.html`` is regenerated from it on every change.

Evidently is imported inside the report functions: importing it costs about 7 s, which every
process loading the Dagster definitions would otherwise pay.
"""

from __future__ import annotations

import fcntl
import html
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes
from orchestration.lib.training import metrics
from orchestration.settings import FEATURE_CATALOG_DIR

REPORT_KINDS = ("data_drift", "prediction_drift", "performance")
"""The kinds of daily report, in the order the index shows them."""
SCORE = "score"
"""Column of the model's score (the probability of the positive class) in the reports' data."""
LABEL = "label"
"""Column of the true label (1: positive)."""
ALERT = "alert"

INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
INDEX_TITLE = "Blueprint monitoring reports"
_LOCK_FILE = ".index.lock"

_METRIC_NAMES = {"average_precision": "AP", "auc_roc": "AUC ROC"}
"""Short names of the usual metrics in the index; any other shows its declared name."""

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
    """Evidently drift of the fraud score, ``current_scores`` against ``reference_scores``.

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


def _jsonable(value: object) -> object:
    """``value`` with numpy scalars as Python numbers and NaN or infinity as ``None``."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: float) -> float | None:
    """A JSON-able float, ``None`` for NaN (an undefined metric)."""
    value = float(value)
    return None if math.isnan(value) else value


# --- the index ------------------------------------------------------------------------------


@dataclass
class ReportEntry:
    """One report in the index: its day, kind, HTML file and headline numbers."""

    day: date
    kind: str
    html: str | None
    """Path of the HTML relative to the reports folder; ``None`` once pruned."""
    numbers: dict = field(default_factory=dict)
    created_at: str = ""
    """When the report was written (ISO 8601)."""

    def to_json(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "kind": self.kind,
            "html": self.html,
            "numbers": _jsonable(self.numbers),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> ReportEntry:
        return cls(
            day=date.fromisoformat(data["day"]),
            kind=data["kind"],
            html=data["html"],
            numbers=data.get("numbers", {}),
            created_at=data.get("created_at", ""),
        )


def report_path(reports_dir: Path, day: date, kind: str) -> Path:
    """Where the HTML report of ``kind`` for ``day`` lives."""
    _check_kind(kind)
    return Path(reports_dir) / day.isoformat() / f"{kind}.html"


def record_report(reports_dir: Path, entry: ReportEntry) -> None:
    """Add ``entry`` to the index, replacing the one of the same day and kind; redraw the page."""
    _check_kind(entry.kind)
    reports_dir = Path(reports_dir)
    with _index_lock(reports_dir):
        entries = {(e.day, e.kind): e for e in read_index(reports_dir)}
        entries[(entry.day, entry.kind)] = entry
        _write_index(reports_dir, entries.values())
        write_index_html(reports_dir)


def read_index(reports_dir: Path) -> list[ReportEntry]:
    """Every entry of the index, newest day first, then by kind; empty without an index."""
    path = Path(reports_dir) / INDEX_JSON
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return _sorted(ReportEntry.from_json(item) for item in data["reports"])


def prune_reports(reports_dir: Path, keep_days: int) -> list[Path]:
    """Delete the HTML of reports older than the newest ``keep_days`` days; return what went.

    The days kept are the newest day in the index and the ``keep_days - 1`` before it. Older
    entries stay in the index with their numbers and ``html=None`` (shown as "pruned"); a day
    folder left empty is removed. The index page is redrawn.
    """
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    reports_dir = Path(reports_dir)
    deleted: list[Path] = []
    with _index_lock(reports_dir):
        entries = read_index(reports_dir)
        if not entries:
            return deleted
        first_kept = max(e.day for e in entries) - timedelta(days=keep_days - 1)
        for entry in entries:
            if entry.day >= first_kept or entry.html is None:
                continue
            path = reports_dir / entry.html
            if path.exists():
                path.unlink()
                deleted.append(path)
            if path.parent != reports_dir and path.parent.is_dir():
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()
            entry.html = None
        _write_index(reports_dir, entries)
        write_index_html(reports_dir)
    return deleted


def write_index_html(reports_dir: Path) -> Path:
    """Write ``index.html``: one row per day, one column per kind, links and headline numbers.

    The page is self-contained (inline style, no script) and every value is HTML-escaped.
    """
    reports_dir = Path(reports_dir)
    entries = read_index(reports_dir)
    by_day: dict[date, dict[str, ReportEntry]] = {}
    for entry in entries:
        by_day.setdefault(entry.day, {})[entry.kind] = entry
    header = "".join(f"<th>{_esc(_kind_title(kind))}</th>" for kind in REPORT_KINDS)
    rows = []
    for day in sorted(by_day, reverse=True):
        cells = "".join(_index_cell(by_day[day].get(kind), reports_dir) for kind in REPORT_KINDS)
        rows.append(f'<tr><th scope="row">{_esc(day.isoformat())}</th>{cells}</tr>')
    body = (
        f"<table><thead><tr><th>Day</th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No report yet.</p>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(INDEX_TITLE)}</title>
<style>{_INDEX_STYLE}</style>
</head>
<body>
<h1>{_esc(INDEX_TITLE)}</h1>
<p>One row per day, newest first. Each cell links to the day's Evidently report and shows its
headline numbers; reports older than the days kept are pruned and keep their numbers only.</p>
{body}
</body>
</html>
"""
    path = reports_dir / INDEX_HTML
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


def write_root_index(reports_root: Path, usecases: Sequence[str]) -> Path:
    """Write the reports server's front page: a link to each use case's own index."""
    reports_root = Path(reports_root)
    def catalog(name: str) -> str:
        page = f"{name}/{FEATURE_CATALOG_DIR}/{INDEX_HTML}"
        if not (reports_root / page).exists():
            return ""
        return f' · <a href="{_esc(page)}">feature catalog</a> (dbt docs)'

    items = "".join(
        f'<li><a href="{_esc(name)}/{INDEX_HTML}">{_esc(name)}</a>'
        f"{'' if (reports_root / name / INDEX_HTML).exists() else ' (no report yet)'}"
        f"{catalog(name)}</li>"
        for name in usecases
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_esc(INDEX_TITLE)}</title>
<style>{_INDEX_STYLE}</style>
</head>
<body>
<h1>{_esc(INDEX_TITLE)}</h1>
<p>One index of daily reports per use case, and its feature catalog.</p>
<ul>{items}</ul>
</body>
</html>
"""
    reports_root.mkdir(parents=True, exist_ok=True)
    path = reports_root / INDEX_HTML
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


_INDEX_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
h1 { font-size: 1.5rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid #cbd2d9; padding: 0.5rem 0.75rem; vertical-align: top;
         text-align: left; }
thead th { background: #e4e7eb; }
td.breach { background: #fde8e8; }
td.missing, span.pruned { color: #7b8794; }
ul { margin: 0.25rem 0 0; padding-left: 1.1rem; }
"""


def _index_cell(entry: ReportEntry | None, reports_dir: Path) -> str:
    if entry is None:
        return '<td class="missing">no report</td>'
    if entry.html is None:
        head = '<span class="pruned">pruned</span>'
    elif (reports_dir / entry.html).exists():
        head = (
            f'<a class="report" data-kind="{_esc(entry.kind)}" '
            f'href="{_esc(quote(entry.html))}">{_esc(_kind_title(entry.kind))} report</a>'
        )
    else:
        head = '<span class="pruned">missing file</span>'
    lines = "".join(f"<li>{_esc(line)}</li>" for line in _headline(entry.kind, entry.numbers))
    css = ' class="breach"' if _breach(entry.kind, entry.numbers) else ""
    return f"<td{css}>{head}<ul>{lines}</ul></td>"


def _headline(kind: str, numbers: dict) -> list[str]:
    """The few numbers an operator looks at first, as text lines."""
    get = numbers.get
    if kind == "data_drift":
        return [
            f"drifted share {_fmt(get('drifted_share'))}",
            f"{get('drifted_features', '?')} of {get('features', '?')} features drifted",
        ]
    if kind == "prediction_drift":
        verdict = {True: "yes", False: "no"}.get(get("score_drift"), "n/a")
        return [
            f"score drift {verdict} ({get('score_drift_method', '?')} "
            f"{_fmt(get('score_drift_statistic'))})",
            f"mean score {_fmt(get('mean_score_current'))} "
            f"(reference {_fmt(get('mean_score_reference'))})",
        ]
    measured = get("metrics") or ["average_precision"]
    lines = [
        ", ".join(f"{_METRIC_NAMES.get(key, key)} {_fmt(get(key))}" for key in measured),
        f"alert precision {_fmt(get('alert_precision'))} ({get('alerts', '?')} alerts)",
    ]
    if get("note"):
        lines.append(str(get("note")))
    return lines


def _breach(kind: str, numbers: dict) -> bool:
    """Whether Evidently flagged drift in the report (the cell is highlighted)."""
    if kind == "data_drift":
        return bool(numbers.get("drifted_features"))
    if kind == "prediction_drift":
        return bool(numbers.get("score_drift"))
    return False


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return str(value)


def _kind_title(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _check_kind(kind: str) -> None:
    if kind not in REPORT_KINDS:
        raise ValueError(f"unknown report kind {kind!r}; expected one of {REPORT_KINDS}")


def _sorted(entries) -> list[ReportEntry]:
    by_kind = sorted(entries, key=lambda e: e.kind)
    return sorted(by_kind, key=lambda e: e.day, reverse=True)


def _write_index(reports_dir: Path, entries) -> None:
    data = {"reports": [entry.to_json() for entry in _sorted(entries)]}
    atomic_write_bytes(
        reports_dir / INDEX_JSON, json.dumps(data, indent=1, allow_nan=False).encode("utf-8")
    )


@contextmanager
def _index_lock(reports_dir: Path) -> Iterator[None]:
    """Serialize index updates: the three report assets of a day may run in parallel."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    with open(reports_dir / _LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
