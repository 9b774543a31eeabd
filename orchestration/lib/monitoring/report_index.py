"""The index of the daily monitoring reports: ``reports/index.json`` (each report's day, kind,
HTML file and headline numbers), the ``index.html`` page drawn from it, pruning old reports, and
the reports server's front page over every use case."""

from __future__ import annotations

import fcntl
import html
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import numpy as np

from orchestration.lib.core.atomic import atomic_write_bytes
from orchestration.settings import FEATURE_CATALOG_DIR

REPORT_KINDS = ("data_drift", "prediction_drift", "performance")
"""The kinds of daily report, in the order the index shows them."""
INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
INDEX_TITLE = "Blueprint monitoring reports"
_LOCK_FILE = ".index.lock"

_METRIC_NAMES = {"average_precision": "AP", "auc_roc": "AUC ROC"}
"""Short names of the usual metrics in the index; any other shows its declared name."""


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
