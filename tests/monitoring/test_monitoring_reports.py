"""Monitoring reports: sampling, Evidently drift and performance numbers, the report index."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently.core.report import Snapshot
from sklearn.metrics import average_precision_score, roc_auc_score

from orchestration.lib.monitoring.report_index import (
    INDEX_HTML,
    INDEX_JSON,
    INDEX_TITLE,
    ReportEntry,
    prune_reports,
    read_index,
    record_report,
    report_path,
    write_index_html,
)
from orchestration.lib.monitoring.reports import (
    data_drift_report,
    performance_report,
    prediction_drift_report,
    sample_for_report,
)
from orchestration.lib.training.metrics import card_precision_top_k
from tests.training.families import SCORECARD

ONE_DAY = SCORECARD  # the fraud metrics; a frame without the day column is one day

FEATURES = [f"feature_{i}" for i in range(6)]
SHIFTED = ["feature_1", "feature_4"]
DAY = date(2024, 5, 1)


def _features(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    frame[SHIFTED] += shift
    return frame


def _scored_day(rows: int, seed: int, fraud_rate: float = 0.03) -> pd.DataFrame:
    """Synthetic payments of one day: frauds score higher; alerts at 0.3."""
    rng = np.random.default_rng(seed)
    label = (rng.random(rows) < fraud_rate).astype(int)
    score = np.clip(rng.beta(1, 20, rows) + 0.6 * label * rng.random(rows), 0.0, 1.0)
    return pd.DataFrame(
        {
            "card_key": rng.integers(0, rows // 4, rows),
            "score": score,
            "alert": score >= 0.3,
            "label": label,
        }
    )


def _no_temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- sampling -------------------------------------------------------------------------------


def test_sampling_is_a_no_op_up_to_max_rows():
    frame = _scored_day(500, seed=1)
    assert sample_for_report(frame, max_rows=500, seed=0, label="label") is frame
    assert sample_for_report(frame, max_rows=10_000, seed=0) is frame


def test_sampling_keeps_every_positive_and_fills_up_to_max_rows_in_order():
    frame = _scored_day(20_000, seed=2, fraud_rate=0.05).set_index(
        pd.RangeIndex(100, 20_100, name="row")
    )
    positives = set(frame.index[frame["label"] == 1])
    sample = sample_for_report(frame, max_rows=3_000, seed=7, label="label")

    assert len(sample) == 3_000
    assert positives <= set(sample.index)
    assert sample.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(sample, frame.loc[sample.index])
    again = sample_for_report(frame, max_rows=3_000, seed=7, label="label")
    pd.testing.assert_frame_equal(sample, again)
    other_seed = sample_for_report(frame, max_rows=3_000, seed=8, label="label")
    assert not sample.index.equals(other_seed.index)


def test_sampling_without_label_is_uniform_and_never_exceeds_max_rows():
    frame = _scored_day(10_000, seed=3, fraud_rate=0.5)
    sample = sample_for_report(frame, max_rows=1_000, seed=0)
    assert len(sample) == 1_000
    # uniform: the fraud share stays near the frame's, it is not enriched
    assert abs(sample["label"].mean() - frame["label"].mean()) < 0.06

    too_many_positives = sample_for_report(frame, max_rows=1_000, seed=0, label="label")
    assert len(too_many_positives) == 1_000
    assert too_many_positives["label"].eq(1).all()


# --- data drift -----------------------------------------------------------------------------


def test_data_drift_detects_the_shifted_features(tmp_path):
    html_path = report_path(tmp_path, DAY, "data_drift")
    numbers = data_drift_report(
        _features(3_000, seed=10),
        _features(2_500, seed=11, shift=0.8),
        FEATURES,
        html_path,
        max_rows=50_000,
        seed=0,
    )

    assert numbers["drifted"] == sorted(SHIFTED)
    assert numbers["drifted_features"] == len(SHIFTED)
    assert numbers["features"] == len(FEATURES)
    assert numbers["drifted_share"] == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert (numbers["rows_current"], numbers["rows_reference"]) == (2_500, 3_000)
    assert numbers["sampled"] is False
    assert html_path.stat().st_size > 100_000
    assert "<html" in html_path.read_text(encoding="utf-8")[:500].lower()
    assert json.loads(json.dumps(numbers)) == numbers
    assert _no_temp_files(tmp_path) == []


def test_data_drift_is_not_detected_on_the_same_distribution(tmp_path):
    numbers = data_drift_report(
        _features(3_000, seed=20),
        _features(3_000, seed=21),
        FEATURES,
        report_path(tmp_path, DAY, "data_drift"),
        max_rows=50_000,
        seed=0,
    )
    assert numbers["drifted"] == []
    assert numbers["drifted_features"] == 0
    assert numbers["drifted_share"] == 0.0


def test_data_drift_on_a_large_day_reports_all_rows_but_draws_a_sample(tmp_path):
    numbers = data_drift_report(
        _features(4_000, seed=30),
        _features(5_000, seed=31, shift=0.8),
        FEATURES,
        report_path(tmp_path, DAY, "data_drift"),
        max_rows=2_000,
        seed=0,
    )
    assert numbers["sampled"] is True
    assert (numbers["rows_current"], numbers["rows_reference"]) == (5_000, 4_000)
    assert numbers["drifted"] == sorted(SHIFTED)


# --- prediction drift -----------------------------------------------------------------------


def test_prediction_drift_detects_shifted_scores(tmp_path):
    rng = np.random.default_rng(40)
    reference, current = rng.beta(1, 20, 4_000), rng.beta(1, 8, 3_000)
    html_path = report_path(tmp_path, DAY, "prediction_drift")
    numbers = prediction_drift_report(
        pd.Series(reference), current, html_path, max_rows=50_000, seed=0
    )

    assert numbers["score_drift"] is True
    assert numbers["score_drift_method"]  # Evidently's own choice, e.g. a Wasserstein distance
    assert numbers["score_drift_statistic"] > numbers["score_drift_threshold"]
    assert numbers["mean_score_reference"] == pytest.approx(reference.mean())
    assert numbers["mean_score_current"] == pytest.approx(current.mean())
    assert (numbers["rows_current"], numbers["rows_reference"]) == (3_000, 4_000)
    assert html_path.stat().st_size > 100_000
    assert json.loads(json.dumps(numbers)) == numbers


def test_prediction_drift_is_not_detected_on_the_same_distribution(tmp_path):
    rng = np.random.default_rng(41)
    numbers = prediction_drift_report(
        rng.beta(1, 20, 4_000),
        rng.beta(1, 20, 4_000),
        report_path(tmp_path, DAY, "prediction_drift"),
        max_rows=50_000,
        seed=0,
    )
    assert numbers["score_drift"] is False
    assert numbers["score_drift_statistic"] < numbers["score_drift_threshold"]


# --- performance ----------------------------------------------------------------------------


def test_performance_numbers_are_the_handbook_metrics_on_every_row(tmp_path):
    frame = _scored_day(6_000, seed=50)
    html_path = report_path(tmp_path, DAY, "performance")
    numbers = performance_report(
        frame, html_path, alert_threshold=0.3, scorecard=ONE_DAY, max_rows=1_000, seed=0
    )

    y, score, alert = frame["label"], frame["score"], frame["alert"]
    assert numbers["average_precision"] == pytest.approx(average_precision_score(y, score))
    assert numbers["auc_roc"] == pytest.approx(roc_auc_score(y, score))
    expected_cp = card_precision_top_k(np.zeros(len(frame)), frame["card_key"], y, score, 100)
    assert numbers["card_precision_top_k"] == pytest.approx(expected_cp.mean)
    assert numbers["alert_precision"] == pytest.approx(y[alert].sum() / alert.sum())
    assert numbers["alerts"] == int(alert.sum())
    assert numbers["positives"] == int(y.sum())
    assert numbers["metrics"] == ["auc_roc", "average_precision", "card_precision_top_k"]
    assert numbers["rows"] == 6_000
    assert numbers["sampled"] is True
    assert "note" not in numbers
    assert html_path.stat().st_size > 100_000
    assert json.loads(json.dumps(numbers)) == numbers


def test_performance_without_alerts_has_no_alert_precision(tmp_path):
    frame = _scored_day(2_000, seed=51).assign(alert=False)
    numbers = performance_report(
        frame,
        report_path(tmp_path, DAY, "performance"),
        alert_threshold=0.99,
        scorecard=ONE_DAY,
        max_rows=50_000,
        seed=0,
    )
    assert numbers["alerts"] == 0
    assert numbers["alert_precision"] is None
    assert numbers["average_precision"] is not None


@pytest.mark.parametrize("label", [0, 1], ids=["no_fraud", "only_fraud"])
def test_a_day_with_one_class_still_gets_a_report_and_a_note(tmp_path, label):
    frame = _scored_day(3_000, seed=52).assign(label=label)
    html_path = report_path(tmp_path, DAY, "performance")
    numbers = performance_report(
        frame, html_path, alert_threshold=0.3, scorecard=ONE_DAY, max_rows=1_000, seed=0
    )

    assert numbers["average_precision"] is None
    assert numbers["auc_roc"] is None
    assert numbers["positives"] == label * 3_000
    assert numbers["card_precision_top_k"] == pytest.approx(
        card_precision_top_k(
            np.zeros(3_000), frame["card_key"], frame["label"], frame["score"], 100
        ).mean
    )
    assert "undefined" in numbers["note"]
    assert html_path.stat().st_size > 100_000
    json.dumps(numbers, allow_nan=False)


def test_a_sample_of_frauds_only_draws_the_one_class_report_but_keeps_the_numbers(tmp_path):
    frame = _scored_day(3_000, seed=53, fraud_rate=0.6)
    numbers = performance_report(
        frame,
        report_path(tmp_path, DAY, "performance"),
        alert_threshold=0.3,
        scorecard=ONE_DAY,
        max_rows=1_000,
        seed=0,
    )
    assert numbers["average_precision"] == pytest.approx(
        average_precision_score(frame["label"], frame["score"])
    )
    assert numbers["note"].startswith("only positive rows in the report's rows")
    assert "undefined" not in numbers["note"]


def test_a_failed_report_keeps_the_previous_html_and_leaves_no_temp_file(tmp_path, monkeypatch):
    html_path = report_path(tmp_path, DAY, "prediction_drift")
    html_path.parent.mkdir(parents=True)
    html_path.write_text("previous report")

    def crash_midway(self, filename):
        Path(filename).write_text("half a report")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Snapshot, "save_html", crash_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        prediction_drift_report(
            np.linspace(0, 1, 200), np.linspace(0, 1, 200), html_path, max_rows=50_000, seed=0
        )
    assert html_path.read_text() == "previous report"
    assert os.listdir(html_path.parent) == [html_path.name]


# --- the index ------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.title = ""
        self.text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)


def _parse_index(reports_dir: Path) -> _Links:
    parser = _Links()
    parser.feed((reports_dir / INDEX_HTML).read_text(encoding="utf-8"))
    return parser


def _record(reports_dir: Path, day: date, kind: str, numbers: dict, *, write: bool = True):
    path = report_path(reports_dir, day, kind)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html>{kind} of {day}</html>")
    record_report(
        reports_dir,
        ReportEntry(
            day=day,
            kind=kind,
            html=path.relative_to(reports_dir).as_posix(),
            numbers=numbers,
            created_at=f"{day.isoformat()}T06:00:00+00:00",
        ),
    )


DRIFT_NUMBERS = {"drifted_share": 0.25, "drifted_features": 1, "features": 4, "drifted": ["a"]}
SCORE_NUMBERS = {
    "score_drift": False,
    "score_drift_statistic": 0.02,
    "score_drift_method": "Wasserstein distance (normed)",
    "score_drift_threshold": 0.1,
    "mean_score_reference": 0.05,
    "mean_score_current": 0.051,
}
PERFORMANCE_NUMBERS = {
    "average_precision": 0.62,
    "auc_roc": 0.9,
    "card_precision_top_k": 0.27,
    "alert_precision": 0.5,
    "alerts": 40,
    "positives": 30,
    "rows": 9_000,
    "sampled": False,
    "metrics": ["average_precision", "card_precision_top_k"],
}


def test_report_path_is_per_day_and_kind(tmp_path):
    assert report_path(tmp_path, DAY, "performance") == tmp_path / "2024-05-01/performance.html"
    with pytest.raises(ValueError, match="unknown report kind"):
        report_path(tmp_path, DAY, "latency")


def test_recording_the_same_day_and_kind_again_replaces_the_entry(tmp_path):
    _record(tmp_path, DAY, "data_drift", DRIFT_NUMBERS)
    _record(tmp_path, DAY, "performance", PERFORMANCE_NUMBERS)
    _record(tmp_path, DAY, "data_drift", {**DRIFT_NUMBERS, "drifted_share": 0.5})

    entries = read_index(tmp_path)
    assert [(e.day, e.kind) for e in entries] == [(DAY, "data_drift"), (DAY, "performance")]
    assert entries[0].numbers["drifted_share"] == 0.5
    stored = json.loads((tmp_path / INDEX_JSON).read_text())
    assert len(stored["reports"]) == 2


def test_the_index_is_sorted_newest_day_first_then_by_kind(tmp_path):
    days = [DAY, DAY + timedelta(days=2), DAY + timedelta(days=1)]
    for day in days:
        for kind in ("prediction_drift", "data_drift"):
            _record(tmp_path, day, kind, SCORE_NUMBERS if kind == "prediction_drift" else {})
    keys = [(e.day, e.kind) for e in read_index(tmp_path)]
    assert keys == sorted(keys, key=lambda k: (-k[0].toordinal(), k[1]))


def test_index_page_lists_every_entry_and_links_existing_reports(tmp_path):
    _record(tmp_path, DAY, "data_drift", DRIFT_NUMBERS)
    _record(tmp_path, DAY, "prediction_drift", SCORE_NUMBERS)
    _record(tmp_path, DAY, "performance", PERFORMANCE_NUMBERS)
    _record(tmp_path, DAY - timedelta(days=1), "performance", PERFORMANCE_NUMBERS)

    page = _parse_index(tmp_path)
    assert page.title == INDEX_TITLE
    entries = read_index(tmp_path)
    assert sorted(page.hrefs) == sorted(e.html for e in entries)
    assert all((tmp_path / href).is_file() for href in page.hrefs)
    text = " ".join(page.text)
    for day in {e.day for e in entries}:
        assert day.isoformat() in text
    assert "drifted share 0.250" in text
    assert "score drift no" in text
    assert "AP 0.620, card_precision_top_k 0.270" in text and "alert precision 0.500" in text
    assert "no report" in text  # the day before has a performance report only
    raw = (tmp_path / INDEX_HTML).read_text()
    assert "<script" not in raw and "<link" not in raw  # self-contained


def test_index_page_escapes_what_it_shows(tmp_path):
    _record(tmp_path, DAY, "performance", {**PERFORMANCE_NUMBERS, "note": "<script>x()</script>"})
    raw = (tmp_path / INDEX_HTML).read_text()
    assert "<script>" not in raw
    assert "&lt;script&gt;x()&lt;/script&gt;" in raw


def test_index_page_without_reports(tmp_path):
    write_index_html(tmp_path)
    assert "No report yet." in (tmp_path / INDEX_HTML).read_text()


def test_pruning_deletes_old_html_only_and_keeps_the_numbers(tmp_path):
    days = [DAY + timedelta(days=i) for i in range(5)]
    for day in days:
        _record(tmp_path, day, "data_drift", DRIFT_NUMBERS)
        _record(tmp_path, day, "performance", PERFORMANCE_NUMBERS)

    deleted = prune_reports(tmp_path, keep_days=2)

    old, kept = days[:3], days[3:]
    assert sorted(deleted) == sorted(
        report_path(tmp_path, day, kind) for day in old for kind in ("data_drift", "performance")
    )
    assert not any((tmp_path / day.isoformat()).exists() for day in old)
    assert all(report_path(tmp_path, day, "performance").is_file() for day in kept)
    entries = {(e.day, e.kind): e for e in read_index(tmp_path)}
    assert len(entries) == 10
    for (day, _kind), entry in entries.items():
        assert (entry.html is None) == (day in old)
        assert entry.numbers  # the numbers stay
    page = _parse_index(tmp_path)
    assert len(page.hrefs) == 4
    assert (tmp_path / INDEX_HTML).read_text().count('<span class="pruned">pruned</span>') == 6
    assert prune_reports(tmp_path, keep_days=2) == []  # nothing left to delete
    assert _no_temp_files(tmp_path) == []


def test_index_writes_are_atomic_and_leave_no_temp_file(tmp_path):
    for i in range(3):
        _record(tmp_path, DAY + timedelta(days=i), "performance", PERFORMANCE_NUMBERS)
    prune_reports(tmp_path, keep_days=1)
    assert _no_temp_files(tmp_path) == []
    newest = (DAY + timedelta(days=2)).isoformat()
    visible = {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert visible == {INDEX_HTML, INDEX_JSON, newest}


def test_numbers_are_stored_as_strict_json(tmp_path):
    _record(
        tmp_path,
        DAY,
        "performance",
        {**PERFORMANCE_NUMBERS, "average_precision": float("nan"), "alerts": np.int64(3)},
    )
    text = (tmp_path / INDEX_JSON).read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in index.json"))
    (entry,) = read_index(tmp_path)
    assert entry.numbers["average_precision"] is None
    assert entry.numbers["alerts"] == 3
